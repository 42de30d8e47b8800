"""Resolve what model a command works on: a name or file spec, optionally pruned.

Used by ``compile``, ``tune`` and ``compare`` so that they all understand ``--model``,
``--pruned DIR`` and ``--prune PATTERN`` the same way; :func:`torch_reference` rebuilds the
PyTorch model of a compiled module directory for ``bench --vs-torch``.
``--model`` is a torchvision name, ``path/to/file.py:function`` (runs that file), or a model
file: ``model.onnx`` / ``program.pt2`` (compiled as they are, see :mod:`.frontend.model_file`).
"""

from __future__ import annotations

import os
from .console import progress_enabled
from dataclasses import dataclass
from typing import Any

from .errors import NoTorchReferenceError, PruneConfigError, TvmpruneError
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
        pruned_dir: the ``--pruned`` directory (absolute), if any.
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
        return ModelRequest(net.eval(), spec, shape, pruned_pattern_label(config),
                            pruned_dir=os.path.abspath(pruned))
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
                             progress=progress_enabled())
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
    # absolute, like pruned_dir: bench --vs-torch finds the file from any directory
    return ModelRequest(loaded, os.path.abspath(spec), shape, MODEL_FILE_PATTERN)


def program_module(ep: Any) -> Any:
    """``ep.module()`` of a loaded ``.pt2`` as an ``nn.Module`` that accepts ``.eval()``.

    The unlifted module refuses ``train()`` / ``eval()``; it is already an inference graph
    (exported in eval mode), so the wrapper makes both no-ops.
    """
    import torch

    class ProgramModule(torch.nn.Module):
        def __init__(self, module: Any) -> None:
            super().__init__()
            self.program = module

        def train(self, mode: bool = True) -> "ProgramModule":
            return self

        def forward(self, x: Any) -> Any:
            return self.program(x)

    return ProgramModule(ep.module())


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


def torch_reference(meta: dict[str, Any]) -> ModelRequest:
    """The PyTorch model a compiled module directory (its ``meta.json`` dict) was built from.

    * compiled with ``--pruned DIR`` (``meta["pruned_dir"]``): the saved pruned model, loaded
      from ``DIR`` (:func:`tvmprune.prune.load_pruned`);
    * compiled dense (``pattern`` ``dense``): the model spec, built again (seeded as compile did);
    * compiled with ``--prune PATTERN``: pruned again from the spec, for methods that prune from
      the weights alone (neither training data nor a target), which gives the same model.

    Raises:
        NoTorchReferenceError: no model spec, a pruned directory that is gone, or a pattern
            that learnt from data / planned for a target (prune with ``tvmprune prune -o DIR``
            and compile with ``--pruned DIR`` to make such a model benchable against PyTorch).
    """
    shape = "x".join(str(d) for d in meta.get("input_shape") or [])
    pruned, spec, pattern = meta.get("pruned_dir"), meta.get("model"), meta.get("pattern")
    if pruned:
        if not os.path.isfile(os.path.join(pruned, "pruning.json")):
            raise NoTorchReferenceError(
                f"no PyTorch reference: this module was compiled from the pruned directory {pruned} "
                "(`compile --pruned`), which no longer holds a pruned model (pruning.json); restore it, "
                "or run bench without --vs-torch")
        return resolve_model(None, shape or None, pruned)
    if not spec:
        raise NoTorchReferenceError(
            "no PyTorch reference: meta.json names no model (compiled from Python without model_spec); "
            "run bench without --vs-torch")
    kind = model_file_kind(spec)
    if kind == "onnx":
        raise NoTorchReferenceError(
            f"no PyTorch reference: this module was compiled from the ONNX file {spec}, which has no PyTorch "
            "form; compare against the PyTorch model it was exported from, or run bench without --vs-torch")
    if kind == "pt2":
        req = resolve_model(spec, shape or None)
        req.model = program_module(req.model)
        return req
    if pattern in (None, "dense"):
        return resolve_model(spec, shape or None)
    _check_reprunable(str(pattern))
    return resolve_model(spec, shape or None, prune=str(pattern))


def _check_reprunable(label: str) -> None:
    """Raise unless pruning again with ``label`` gives the model that was compiled."""
    from .prune.pattern import parse_pattern
    from .prune.registry import resolve_method

    how = ("prune with `tvmprune prune ... -o DIR`, compile with `--pruned DIR`, then bench that "
           "module directory with --vs-torch")
    try:
        method = resolve_method(parse_pattern(label))
    except TvmpruneError as e:
        raise NoTorchReferenceError(f"no PyTorch reference: the pattern {label!r} in meta.json cannot be "
                                    f"pruned again ({e}); {how}") from None
    if method.needs_data or method.needs_target:
        what = "learns from training data" if method.needs_data else "plans for a compile target"
        raise NoTorchReferenceError(
            f"no PyTorch reference: pattern {label} {what}, so pruning it again would not give the compiled "
            f"model; {how}")
