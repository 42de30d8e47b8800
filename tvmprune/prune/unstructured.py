"""``unstructured@RATE``: magnitude pruning of single weights, layer-wise or global.

Layer-wise: the ``round(rate * numel)`` smallest-|w| weights of each layer are zeroed (ties:
the first by position).  Global (``+global``): one ranking of |w| over all prunable layers,
removing ``round(rate * total)`` weights, but at most ``max_layer_rate`` (default 0.95) of
any one layer.  Magnitudes are compared raw (no per-layer normalisation), as in the usual
global magnitude pruning baseline.
"""

from __future__ import annotations

import torch
from torch import nn

from .bits import encode_bits
from .context import PruneContext
from .criteria import WeightL1
from .graph import DependencyGraph
from .layer_policy import sparse_targets
from .masks import apply_masks
from .pattern import PrunePattern
from .registry import GLOBAL, PruningMethod
from .result import PruneResult, layer_reports
from .selection import MAX_LAYER_RATE, weight_keep_masks

__all__ = ["magnitude_mask", "global_magnitude_masks", "UnstructuredMethod"]


def magnitude_mask(weight: torch.Tensor, rate: float, name: str = "") -> torch.Tensor:
    """Weight-shaped boolean keep-mask removing the ``round(rate * numel)`` smallest |w|."""
    return weight_keep_masks(WeightL1(), {name: weight}, rate)[name]


def global_magnitude_masks(weights: dict[str, torch.Tensor], rate: float,
                           max_layer_rate: float = MAX_LAYER_RATE) -> dict[str, torch.Tensor]:
    """One |w| ranking over all ``weights``, at most ``max_layer_rate`` of each removed."""
    return weight_keep_masks(WeightL1(), weights, rate, global_=True, max_layer_rate=max_layer_rate)


class UnstructuredMethod(PruningMethod):
    kind = "unstructured"
    syntax = "unstructured@RATE"
    options = (GLOBAL,)

    def apply(self, model: nn.Module, pattern: PrunePattern, graph: DependencyGraph,
              ctx: PruneContext) -> PruneResult:
        targets, skipped = sparse_targets(model, graph)
        mods = dict(model.named_modules())
        weights = {n: mods[n].weight for n in targets}
        masks = weight_keep_masks(WeightL1(), weights, pattern.rate, global_=pattern.global_,
                                  max_layer_rate=ctx.max_layer_rate, layer_rates=ctx.layer_rates)
        apply_masks(model, masks)
        config = {"masks": {n: {"shape": list(k.shape), "mask": encode_bits(k)} for n, k in masks.items()}}
        return PruneResult(model, layer_reports(model, graph.layers, pattern.label, skipped), config, masks)
