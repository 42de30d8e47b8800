"""Where models come from: torchvision names, ``file.py:factory`` specs, input shapes.

No weights are downloaded: torchvision models are built with random initialisation
(``weights=None``); a user's factory may load its own weights.
"""

from __future__ import annotations


import torch

from ..errors import InvalidInputShapeError, UnknownModelError
from ..user_code import call_factory, is_factory_spec
from .model_file import model_file_kind, not_prunable_message

TORCHVISION_MODELS: tuple[str, ...] = (
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v2",
    "vgg11",
    "vgg16",
    "alexnet",
)
# built-in models for the 1x1x16x16 digits data (tvmprune/data.py): name -> class
BUILTIN_DIGITS_MODELS: dict[str, str] = {"digits_cnn": "DigitsCNN", "digits_resnet": "DigitsResNet"}
DEFAULT_INPUT_SHAPE: tuple[int, int, int, int] = (1, 3, 224, 224)


def load_model(spec: str, seed: int = 0) -> torch.nn.Module:
    """Build a model in eval mode from a torchvision name or ``path/to/file.py:factory``.

    Args:
        spec: ``resnet18`` etc. (see ``TORCHVISION_MODELS``, or any torchvision classification
            model name), ``tiny_cnn`` (the built-in small CNN), ``digits_cnn`` / ``digits_resnet``
            (built-in models for the 1x1x16x16 digits data), or ``file.py:function`` where
            ``function()`` returns an ``nn.Module`` (this runs ``file.py``).
        seed: torch seed for the random initialisation of torchvision models.

    Raises:
        UnknownModelError: unknown name, missing file or function, or a factory that does not
            return an ``nn.Module``.
    """
    spec = str(spec).strip()
    if model_file_kind(spec):  # .onnx / .pt2 have no nn.Module: model_request compiles them directly
        raise UnknownModelError(not_prunable_message(spec))
    if is_factory_spec(spec):
        model = _load_factory(spec)
    elif spec == "tiny_cnn":
        from ..data import TinyCNN

        torch.manual_seed(seed)
        model = TinyCNN()
    elif spec in BUILTIN_DIGITS_MODELS:
        from .. import data

        torch.manual_seed(seed)
        model = getattr(data, BUILTIN_DIGITS_MODELS[spec])()
    else:
        import torchvision.models as tvm_models

        names = set(tvm_models.list_models(module=tvm_models))
        if spec not in names:
            raise UnknownModelError(
                f"unknown model {spec!r}; use a torchvision classification model "
                f"({', '.join(TORCHVISION_MODELS)}, ...), tiny_cnn, digits_cnn, digits_resnet, or path/to/file.py:factory_function"
            )
        torch.manual_seed(seed)
        model = tvm_models.get_model(spec, weights=None)
    return model.eval()


def _load_factory(spec: str) -> torch.nn.Module:
    model = call_factory(spec, UnknownModelError, "model")
    if not isinstance(model, torch.nn.Module):
        raise UnknownModelError(f"{spec}() returned {type(model).__name__}, expected a torch.nn.Module")
    return model


def parse_input_shape(text: "str | tuple[int, ...] | list[int] | None") -> tuple[int, ...]:
    """Parse ``1x3x224x224`` (or ``1,3,224,224``) into a 4-D NCHW shape tuple.

    Raises:
        InvalidInputShapeError: not four positive integers.
    """
    if text is None:
        return DEFAULT_INPUT_SHAPE
    if isinstance(text, (tuple, list)):
        parts = [str(p) for p in text]
    else:
        parts = str(text).lower().replace(",", "x").replace(" ", "").split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise InvalidInputShapeError(
            f"bad input shape {text!r}: expected four positive integers N x C x H x W, e.g. 1x3x224x224"
        ) from None
    if len(shape) != 4 or any(d <= 0 for d in shape):
        raise InvalidInputShapeError(
            f"bad input shape {text!r}: expected four positive integers N x C x H x W, e.g. 1x3x224x224"
        )
    return shape


def check_input_shape(model: torch.nn.Module, shape: tuple[int, ...]) -> None:
    """Run the model once on zeros of ``shape``; raise if the shape does not fit it."""
    try:
        with torch.no_grad():
            model(torch.zeros(shape))
    except Exception as e:
        raise InvalidInputShapeError(
            f"input shape {'x'.join(map(str, shape))} does not fit the model: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}"
        ) from None


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm2d random statistics and affine parameters (in place; eval mode).

    torchvision models built without weights have identity BN (mean 0, var 1): their
    outputs shrink layer by layer (mobilenet_v2 ends near 1e-9), so an error in BN folding
    or in a kernel would hide below any tolerance. With these statistics outputs stay O(1).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()
