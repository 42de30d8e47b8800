"""The lower stage: import a model into Relax and find its layers, once per model.

A model is a ``torch.nn.Module``, a ``torch.export.ExportedProgram`` (a loaded ``.pt2``) or
an ``onnx.ModelProto`` (a loaded ``.onnx``); all three end in the same Relax conventions.

Its record, :class:`LoweredModel`, is what every later stage starts from: planning with any
planner, for any target, as often as a command needs (compile, tune, compare, benchmarks).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from ..kernels.registry import accepts_layer
from .chains import LayerMatch, match_layers
from .importer import ImportedModel, import_exported_program, import_model
from .layout_sinking import sink_layout_ops
from .linear_as_conv import linear_as_conv


@dataclass
class LoweredModel:
    """A model in Relax (NHWC, BN folded) and its conv / linear layers.

    mod: the imported Relax IRModule (unchanged by later stages).
    layers: every conv / linear layer in graph order (:class:`~.chains.LayerMatch`).
    input_shape: NCHW input shape; bn_folded: whether BatchNorm was folded into convs.
    """

    mod: Any
    layers: list[LayerMatch]
    input_shape: tuple[int, ...]
    bn_folded: bool


def lower(model: Any, input_shape: tuple[int, ...], log: Callable[[str], None] | None = None) -> LoweredModel:
    """Import ``model`` for an NCHW ``input_shape`` and find its layers.

    ``model``: ``torch.nn.Module``, ``torch.export.ExportedProgram`` or ``onnx.ModelProto``
    (the latter two are traced for one shape: ``input_shape`` must fit theirs).
    """
    say = log or (lambda s: None)
    t0 = time.time()
    imported = import_any(model, input_shape)
    # per-pixel Linear layers become 1x1 convs; transposes / reshapes around elementwise ops cancel out
    mod = sink_layout_ops(linear_as_conv(imported.mod))
    layers = match_layers(mod["main"], imported.layer_names, accepts_layer)
    # interspace-pruned layers were imported as their reconstructed dense filters; their factors
    # (coefficients, basis) travel on the LayerInfo for the interspace kernel family
    from ..frontend.interspace import attach_interspace_factors, interspace_factors

    factors = interspace_factors(model) if _is_module(model) else {}
    if factors:
        say(f"interspace factors on {attach_interspace_factors(layers, factors)} of {len(factors)} interspace layers")
    say(f"imported model into Relax ({time.time() - t0:.1f} s, BN folded: {imported.bn_folded})")
    return LoweredModel(mod=mod, layers=layers, input_shape=tuple(imported.input_shape),
                        bn_folded=imported.bn_folded)


def _is_module(model: Any) -> bool:
    import torch

    return isinstance(model, torch.nn.Module)


def import_any(model: Any, input_shape: tuple[int, ...]) -> ImportedModel:
    """The importer for ``model``'s kind (see :func:`lower`)."""
    import torch

    if isinstance(model, torch.export.ExportedProgram):
        return import_exported_program(model, input_shape)
    if type(model).__name__ == "ModelProto" and hasattr(model, "graph"):  # onnx.ModelProto; onnx is optional
        from .onnx_import import import_onnx

        return import_onnx(model, input_shape)
    # interspace-pruned layers are imported as their reconstructed dense filters
    from ..frontend.interspace import reconstruct_for_import

    return import_model(reconstruct_for_import(model), input_shape)
