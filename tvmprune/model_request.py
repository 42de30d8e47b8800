"""Resolve what model a command works on: a name or file spec, optionally pruned.

Used by ``compile``, ``tune``, ``compare`` and ``bench --vs-torch`` so that they all
understand ``--model``, ``--pruned DIR`` and ``--prune PATTERN`` the same way.
``--model`` is a torchvision name, ``path/to/file.py:function`` (runs that file), or a model
file: ``model.onnx`` / ``program.pt2`` (compiled as they are, see :mod:`.frontend.model_file`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from .errors import PruneConfigError, TvmpruneError
from .frontend.model_file import load_model_file, model_file_input_shape, model_file_kind, not_prunable_message
from .frontend.model_source import check_input_shape, load_model, parse_input_shape


# the pattern label of an .onnx / .pt2 model: pruned or not, its zeros are in its weights
MODEL_FILE_PATTERN = "as-is"


@dataclass
class ModelRequest:
    """A model ready to compile.

    Attributes:
        model: the (pruned) ``torch.nn.Module`` in eval mode, or for a model file the loaded
            ``onnx.ModelProto`` / ``torch.export.ExportedProgram`` (what :func:`~.compiler.lower` takes).
        spec: the model spec it was built from (``resnet18``, ``file.py:fn``, ``m.onnx``).
        input_shape: NCHW input shape.
        pattern: pruning pattern label (``dense`` when not pruned).
        pruned_dir: the ``--pruned`` directory, if any.
    """

    model: Any
    spec: str
    input_shape: tuple[int, ...]
    pattern: str = "dense"
    pruned_dir: str | None = None


def pruned_pattern_label(pruning_json: dict[str, Any]) -> str:
    """The pattern label (``1x8@0.8``) of a ``pruning.json`` dict: it sits under ``config``."""
    return str((pruning_json.get("config") or {}).get("pattern") or "pruned")


def resolve_model(
    model: str | None = None,
    input_shape: "str | tuple[int, ...] | None" = None,
    pruned: str | None = None,
    prune: str | None = None,
    dataset: str | None = None,
    target: Any = None,
) -> ModelRequest:
    """Build the model a command asked for.

    Exactly one source: ``pruned`` (a ``tvmprune prune -o`` directory, which names its own
    model and input shape) or ``model`` (optionally pruned on the fly with ``prune``,
    a pattern string such as ``1x8@0.8``).  ``dataset`` (``--dataset``) gives training data
    to patterns that learn (``gator@``); ``target`` is the compile target they may optimise for (``+guided`` plans for it).
    """
    if pruned and prune:
        raise TvmpruneError("give either --pruned DIR or --prune PATTERN, not both")
    if pruned:
        from .prune import load_pruned

        net, config = load_pruned(pruned)
        spec = config.get("model_spec", "")
        if model and spec and model != spec:
            raise TvmpruneError(f"--model {model} does not match the pruned directory's model {spec}")
        shape = parse_input_shape(input_shape) if input_shape else tuple(config.get("input_shape") or parse_input_shape(None))
        return ModelRequest(net.eval(), spec, shape, pruned_pattern_label(config), pruned_dir=str(pruned))
    if not model:
        raise TvmpruneError("no model given: use --model NAME (e.g. resnet18) or --pruned DIR")
    if model_file_kind(model):
        return _model_file_request(model, input_shape, prune)
    shape = parse_input_shape(input_shape) if input_shape else default_input_shape(model, dataset)
    net = load_model(model)
    check_input_shape(net, shape)
    if prune:
        import torch

        from .prune import prune_model
        from .prune.pattern import parse_pattern

        pat = parse_pattern(prune)
        if pat.kind == "dense":
            return ModelRequest(net, model, shape, "dense")
        result = prune_model(net, pat, torch.zeros(shape), data=training_data(dataset, shape), target=target,
                             progress=sys.stderr.isatty())
        return ModelRequest(result.model.eval(), model, shape, pat.label)
    return ModelRequest(net, model, shape, "dense")


def _model_file_request(spec: str, input_shape: "str | tuple[int, ...] | None", prune: str | None) -> ModelRequest:
    """An ``.onnx`` / ``.pt2`` model: loaded as it is, for its own input shape unless one is given."""
    if prune:
        from .prune.pattern import parse_pattern

        if parse_pattern(prune).kind != "dense":
            raise PruneConfigError(f"--prune {prune}: {not_prunable_message(spec)}")
    loaded = load_model_file(spec)
    shape = model_file_input_shape(loaded, parse_input_shape(input_shape) if input_shape else None)
    return ModelRequest(loaded, spec, shape, MODEL_FILE_PATTERN)


def torch_reference(req: ModelRequest) -> Any:
    """A callable PyTorch module computing ``req``'s model (for ``bench --vs-torch``, checks).

    Raises:
        TvmpruneError: an ONNX model, which has no PyTorch form here.
    """
    import torch

    if isinstance(req.model, torch.export.ExportedProgram):
        return _ProgramModule(req.model.module())
    if isinstance(req.model, torch.nn.Module):
        return req.model
    raise TvmpruneError(f"{req.spec} is an ONNX model: there is no PyTorch model to time or compare it with")


class _ProgramModule:
    """``ExportedProgram.module()`` refuses ``.eval()``; it is already an inference graph."""

    def __init__(self, module: Any) -> None:
        self.module = module

    def eval(self) -> "_ProgramModule":
        return self

    def __call__(self, x: Any) -> Any:
        return self.module(x)


def default_input_shape(model: str | None, dataset: str | None) -> tuple[int, ...]:
    """1x1x16x16 for the built-in digits models / data, else the default 1x3x224x224."""
    from .dataset import BUILTIN_NAMES, DIGITS_INPUT_SHAPE
    from .frontend.model_source import BUILTIN_DIGITS_MODELS

    if (model in BUILTIN_DIGITS_MODELS) or (dataset is not None and str(dataset).lower() in BUILTIN_NAMES):
        return DIGITS_INPUT_SHAPE
    return parse_input_shape(None)


def training_data(dataset: str | None, shape: tuple[int, ...]) -> Any:
    """The training loader of ``--dataset`` (None without one) for patterns that learn."""
    if not dataset:
        return None
    from .dataset import load_dataset

    return load_dataset(dataset, shape).train
