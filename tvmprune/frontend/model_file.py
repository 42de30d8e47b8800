"""Models given as files that hold their own graph and weights: ONNX (``.onnx``) and saved
``torch.export`` programs (``.pt2``).

Both compile (``compile`` / ``tune`` / ``bench --model``) but cannot be pruned: pruning
rewrites ``nn.Module`` layers, which such a file no longer has. Prune the original model, or
prune elsewhere and export the result (its zeros are found in the weights).

A ``.pt2`` is read with ``torch.export.load``, which unpickles the weights: load only files
you trust, as you would run a ``file.py:function`` spec.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import UnknownModelError

ONNX_SUFFIX = ".onnx"
PROGRAM_SUFFIX = ".pt2"


def model_file_kind(spec: Any) -> str | None:
    """``onnx`` / ``pt2`` when ``spec`` is a path to such a file (by its suffix), else None."""
    s = str(spec).strip().lower()
    if s.endswith(ONNX_SUFFIX):
        return "onnx"
    if s.endswith(PROGRAM_SUFFIX):
        return "pt2"
    return None


def load_model_file(spec: str) -> Any:
    """Read an ``.onnx`` (-> ``onnx.ModelProto``) or ``.pt2`` (-> ``torch.export.ExportedProgram``).

    Raises:
        UnknownModelError: not such a file, missing, or unreadable.
        MissingDependencyError: an ``.onnx`` file without the ``onnx`` package installed.
    """
    kind = model_file_kind(spec)
    if kind == "onnx":
        from ..lower.onnx_import import load_onnx

        return load_onnx(spec)
    if kind != "pt2":
        raise UnknownModelError(f"{spec!r} is neither an .onnx nor a .pt2 file")
    if not os.path.isfile(spec):
        raise UnknownModelError(f"exported program file {spec!r} does not exist")
    import torch

    try:
        return torch.export.load(spec)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise UnknownModelError(
            f"cannot load {spec!r} with torch.export.load (write it with torch.export.save): "
            f"{type(e).__name__}: {first}") from None


def model_file_input_shape(model: Any, requested: tuple[int, ...] | None) -> tuple[int, ...]:
    """The NCHW shape to compile a loaded model file for: ``requested`` when it fits, else the file's own.

    Raises:
        InvalidInputShapeError: ``requested`` does not fit the file's input, or its shape is dynamic.
    """
    import torch

    from ..errors import InvalidInputShapeError

    if isinstance(model, torch.export.ExportedProgram):
        from ..lower.importer import program_input_shape

        own = program_input_shape(model)
        if requested is not None and tuple(requested) != own:
            raise InvalidInputShapeError(
                f"input shape {'x'.join(map(str, requested))} does not fit the exported program, traced for "
                f"{'x'.join(map(str, own))}: export it again with an example input of the shape you need")
        return own
    from ..lower.onnx_import import resolve_onnx_shape

    return resolve_onnx_shape(model, requested)


def not_prunable_message(spec: str) -> str:
    """Why a model file cannot be pruned, and what to do instead."""
    what = "an ONNX file" if model_file_kind(spec) == "onnx" else "a saved torch.export program"
    return (f"{spec} is {what}: it compiles as it is (its zeros pick sparse kernels), but pruning needs the "
            "PyTorch model (a torchvision name or path/to/file.py:function); prune that, or prune elsewhere "
            "and export the pruned model")
