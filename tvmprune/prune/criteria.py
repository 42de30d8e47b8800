"""Importance criteria: how important each prunable *unit* of a layer is (lower = pruned first).

A criterion turns a weight into one score per unit and turns a per-unit keep decision back
into a weight-shaped keep-mask; :mod:`.selection` decides which units go.  All built-in
criteria are L1 magnitudes over a different unit:

* :class:`WeightL1` -- one weight (``|w|``; unstructured pruning);
* :class:`BlockL1` -- a 1xN block: N consecutive output channels at one column
  ``(cin, kh, kw)`` of the ``[Cout, K]`` weight matrix, scored by its mean-per-row L1
  (L1 / rows, so a shorter tail block when N does not divide ``Cout`` competes fairly);
* :class:`FilterL1` -- an output channel of a channel group: the summed L1 of the group's
  producer filters (optionally divided by each producer's fan-in, i.e. mean |w|, so that
  channels of different layers can be ranked against each other).

A new criterion (e.g. a Taylor or learned-gate score) is one more class with the same
``scores`` / ``keep_mask`` methods.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import PruneConfigError

__all__ = ["BLOCK_SIZES", "check_block_size", "weight_matrix", "WeightL1", "BlockL1", "FilterL1",
           "expand_block_mask"]

BLOCK_SIZES: tuple[int, ...] = (2, 4, 8, 16, 32)


def check_block_size(n, what: str = "block size N") -> int:
    """``n`` as an int in :data:`BLOCK_SIZES`; :class:`PruneConfigError` naming ``what`` otherwise."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or int(n) not in BLOCK_SIZES:
        raise PruneConfigError(f"{what} must be one of {list(BLOCK_SIZES)}, got {n!r}")
    return int(n)


def weight_matrix(weight: torch.Tensor, name: str = "", what: str = "1xN pruning") -> torch.Tensor:
    """``[Cout, K]`` view of a Linear ``[Cout, Cin]`` or Conv2d ``[Cout, Cin, KH, KW]`` weight."""
    if weight.dim() not in (2, 4):
        raise PruneConfigError(
            f"layer {name or '?'}: {what} needs a 2-D (Linear) or 4-D (Conv2d) weight, got shape {tuple(weight.shape)}"
        )
    return weight.detach().reshape(weight.shape[0], -1)


def filter_l1(weight: torch.Tensor) -> torch.Tensor:
    """``[Cout]`` float64: L1 norm of each output channel's filter."""
    return weight.detach().abs().double().reshape(weight.shape[0], -1).sum(dim=1)


def expand_block_mask(bmask: torch.Tensor, weight_shape: tuple[int, ...], n: int) -> torch.Tensor:
    """``[G, K]`` block keep-mask -> weight-shaped keep-mask."""
    full = bmask.repeat_interleave(n, dim=0)[: weight_shape[0]]
    return full.reshape(weight_shape)


class WeightL1:
    """Unit = one weight; score ``|w|`` (raw, not normalised per layer)."""

    name = "weight-l1"

    def scores(self, weight: torch.Tensor, name: str = "") -> torch.Tensor:
        return weight.detach().abs()

    def keep_mask(self, keep_units: torch.Tensor, weight_shape: tuple[int, ...]) -> torch.Tensor:
        return keep_units.reshape(weight_shape)


class BlockL1:
    """Unit = a 1xN block; scores ``[ceil(Cout/N), K]`` float64 (mean-per-row L1)."""

    name = "block-l1"

    def __init__(self, n: int) -> None:
        self.n = check_block_size(n)

    def scores(self, weight: torch.Tensor, name: str = "") -> torch.Tensor:
        w = weight_matrix(weight, name)
        n = self.n
        cout, k = w.shape
        full = cout // n
        parts = []
        if full:
            parts.append(w[: full * n].abs().reshape(full, n, k).sum(dim=1, dtype=torch.float64) / n)
        if cout % n:
            parts.append(w[full * n:].abs().sum(dim=0, keepdim=True, dtype=torch.float64) / (cout % n))
        return torch.cat(parts)

    def keep_mask(self, keep_units: torch.Tensor, weight_shape: tuple[int, ...]) -> torch.Tensor:
        return expand_block_mask(keep_units, tuple(weight_shape), self.n)


class FilterL1:
    """Unit = a channel of a channel group; score = summed filter L1 of the group's producers.

    ``normalize`` divides each producer's norms by its fan-in (mean |w|) first.
    """

    name = "filter-l1"

    def __init__(self, normalize: bool = False) -> None:
        self.normalize = normalize

    def scores(self, model: nn.Module, group) -> torch.Tensor:
        """``[group.size]`` float64 for a :class:`~tvmprune.prune.graph.ChannelGroup`."""
        mods = dict(model.named_modules())
        total = torch.zeros(group.size, dtype=torch.float64)
        for name in group.producers:
            w = mods[name].weight
            s = filter_l1(w)
            if self.normalize:
                s = s / max(1, w[0].numel())
            total += s
        return total
