"""Unstructured magnitude pruning, layer-wise or global.

Layer-wise: the ``round(rate * numel)`` smallest-|w| weights of each layer are zeroed (ties
broken arbitrarily but deterministically).  Global: one ranking of |w| over all prunable layers, removing
``round(rate * total)`` weights, but at most ``max_layer_rate`` (default 0.95) of any one
layer.  Magnitudes are compared raw (no per-layer normalisation), as in the usual global
magnitude pruning baseline.
"""

from __future__ import annotations

import numpy as np
import torch

from .block import MAX_LAYER_RATE, check_rate, select_lowest

__all__ = ["magnitude_mask", "global_magnitude_masks"]


def magnitude_mask(weight: torch.Tensor, rate: float, name: str = "") -> torch.Tensor:
    """Weight-shaped boolean keep-mask removing the ``round(rate * numel)`` smallest |w|."""
    rate = check_rate(rate, f"pruning rate for layer {name}" if name else "pruning rate")
    w = weight.detach().abs().reshape(-1)
    k = int(round(rate * w.numel()))
    keep = torch.ones(w.numel(), dtype=torch.bool)
    if k > 0:
        a = w.float().cpu().numpy()
        idx = torch.from_numpy(np.argpartition(a, k - 1)[:k] if k < a.size else np.arange(a.size))
        keep[idx] = False
    return keep.reshape(weight.shape)


def global_magnitude_masks(weights: dict[str, torch.Tensor], rate: float,
                           max_layer_rate: float = MAX_LAYER_RATE) -> dict[str, torch.Tensor]:
    rate = check_rate(rate, "global pruning rate")
    max_layer_rate = check_rate(max_layer_rate, "max_layer_rate")
    names = list(weights)
    scores = [weights[n].detach().abs() for n in names]
    total = sum(s.numel() for s in scores)
    caps = [int(np.floor(max_layer_rate * s.numel())) for s in scores]
    k = min(int(round(rate * total)), sum(caps))
    pruned = select_lowest(scores, k, caps)
    return {n: ~p for n, p in zip(names, pruned)}
