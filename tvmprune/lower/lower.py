"""The lower stage: import a PyTorch model into Relax and find its layers, once per model.

Its record, :class:`LoweredModel`, is what every later stage starts from: planning with any
planner, for any target, as often as a command needs (compile, tune, compare, benchmarks).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from ..kernels.registry import accepts_layer
from .chains import LayerMatch, match_layers
from .importer import import_model


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
    """Import ``model`` (``torch.nn.Module``) for an NCHW ``input_shape`` and find its layers."""
    say = log or (lambda s: None)
    t0 = time.time()
    # interspace-pruned layers are imported as their reconstructed dense filters; their
    # factors (coefficients, basis) travel on the LayerInfo for the interspace kernel family
    from ..frontend.interspace import attach_interspace_factors, interspace_factors, reconstruct_for_import

    factors = interspace_factors(model)
    imported = import_model(reconstruct_for_import(model), input_shape)
    layers = match_layers(imported.mod["main"], imported.layer_names, accepts_layer)
    if factors:
        say(f"interspace factors on {attach_interspace_factors(layers, factors)} of {len(factors)} interspace layers")
    say(f"imported model into Relax ({time.time() - t0:.1f} s, BN folded: {imported.bn_folded})")
    return LoweredModel(mod=imported.mod, layers=layers, input_shape=tuple(input_shape), bn_folded=imported.bn_folded)
