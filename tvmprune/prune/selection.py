"""Which units to remove, given their importance scores: layer-wise or global with a per-layer cap.

Every pruning method reduces to the same choice: each layer ``i`` has a tensor of scores
(one per *unit*: a weight, a 1xN block, a filter / channel), lower is less important, and
some of the lowest-scoring units are removed.  :func:`select_pruned` makes that choice:

* layer-wise: ``round(rate_i * units_i)`` lowest units of each layer, where ``rate_i`` is
  ``layer_rates[i]`` when given (e.g. chosen by a performance model) and ``rate`` otherwise;
* global: one ranking over all layers' units, removing ``round(rate * total)`` of them but
  at most ``floor(max_layer_rate * units_i)`` of layer ``i`` (default cap
  :data:`MAX_LAYER_RATE` = 0.95);
* ``min_keep`` units of every layer always survive (filter pruning keeps one channel);
* :func:`even_over_blocks` turns a count into the same number per equal block.

Ties are broken by position (the first of equal scores is removed first), so the result is
deterministic.  :func:`check_rate` is the one place a pruning rate is validated.
"""

from __future__ import annotations

from typing import Hashable, Mapping

import numpy as np
import torch

from ..errors import PruneConfigError

__all__ = ["MAX_LAYER_RATE", "check_rate", "select_lowest", "lowest_k", "select_pruned", "weight_keep_masks",
           "even_over_blocks"]

MAX_LAYER_RATE = 0.95


def check_rate(rate, what: str = "rate") -> float:
    """``rate`` as a float in [0, 1); :class:`PruneConfigError` naming ``what`` otherwise."""
    if isinstance(rate, bool):
        raise PruneConfigError(f"{what} must be a number in [0, 1), got {rate!r}")
    try:
        r = float(rate)
    except (TypeError, ValueError):
        raise PruneConfigError(f"{what} must be a number in [0, 1), got {rate!r}") from None
    if not (0.0 <= r < 1.0) or r != r:
        raise PruneConfigError(f"{what} must be in [0, 1), got {rate!r}")
    return r


def lowest_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask (shaped like ``scores``) of its ``k`` lowest entries, ties by position.

    Linear time: the k-th value by partition, then everything below it plus the first
    entries equal to it.  Same result as a stable sort.
    """
    a = scores.detach().reshape(-1).double().cpu().numpy()
    out = np.zeros(a.size, dtype=bool)
    k = max(0, min(int(k), a.size))
    if k == a.size:
        out[:] = True
    elif k > 0:
        thr = np.partition(a, k - 1)[k - 1]
        below = a < thr
        out[below] = True
        out[np.flatnonzero(a == thr)[: k - int(below.sum())]] = True
    return torch.from_numpy(out).reshape(scores.shape)


def even_over_blocks(scores: torch.Tensor, n_removed: int, blocks: int, min_keep: int = 1) -> torch.Tensor:
    """Prune mask removing ``round(n_removed / blocks)`` lowest units from each of ``blocks`` equal blocks.

    For units that must be removed evenly (the groups of a grouped conv): ``scores`` is 1-D
    with a length divisible by ``blocks``; at least ``min_keep`` units of each block survive.
    """
    per_block = scores.reshape(blocks, -1)
    k = max(0, min(int(round(n_removed / blocks)), per_block.shape[1] - min_keep))
    return torch.stack([lowest_k(row, k) for row in per_block]).reshape(scores.shape)


def select_lowest(scores: list[torch.Tensor], k: int, caps: list[int]) -> list[torch.Tensor]:
    """Pick the ``k`` lowest scores across all tensors, at most ``caps[i]`` from tensor ``i``.

    Returns a boolean *prune* mask per tensor (True = removed).  Ties are broken by position
    (stable sort), so the result is deterministic.
    """
    if not scores:
        return []
    sizes = [s.numel() for s in scores]
    flat = torch.cat([s.reshape(-1).double().cpu() for s in scores]).numpy()
    lid = np.repeat(np.arange(len(scores)), sizes)
    order = np.argsort(flat, kind="stable")
    lid_sorted = lid[order]
    # rank of each sorted element within its own tensor
    counts = np.bincount(lid_sorted, minlength=len(scores))
    by_layer = np.argsort(lid_sorted, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty_like(by_layer)
    rank[by_layer] = np.arange(len(by_layer)) - np.repeat(starts, counts)
    allowed = rank < np.asarray(caps)[lid_sorted]
    chosen_pos = np.nonzero(allowed)[0][: max(0, int(k))]
    pruned = np.zeros(len(flat), dtype=bool)
    pruned[order[chosen_pos]] = True
    out, pos = [], 0
    for s, n in zip(scores, sizes):
        out.append(torch.from_numpy(pruned[pos:pos + n].copy()).reshape(s.shape))
        pos += n
    return out


def select_pruned(scores: Mapping[Hashable, torch.Tensor], rate: float, *, global_: bool = False,
                  max_layer_rate: float = MAX_LAYER_RATE, min_keep: int = 0,
                  layer_rates: Mapping[Hashable, float] | None = None,
                  what: str = "pruning rate") -> dict[Hashable, torch.Tensor]:
    """Boolean *prune* mask (True = removed) per layer, shaped like that layer's scores.

    Args:
        scores: per layer (any key: module name, group id) its unit scores, lower = pruned first.
        rate: fraction of units removed (per layer, or of all units when ``global_``).
        global_: one ranking over all layers, capped at ``max_layer_rate`` of each layer.
        min_keep: units of every layer that always survive.
        layer_rates: per-layer rates overriding ``rate`` (layer-wise only).
        what: how the rate is named in error messages.

    Raises:
        PruneConfigError: a rate outside [0, 1), or ``layer_rates`` combined with ``global_``.
    """
    if global_:
        if layer_rates:
            raise PruneConfigError("per-layer rates cannot be combined with global selection (+global)")
        rate = check_rate(rate, f"global {what}")
        max_layer_rate = check_rate(max_layer_rate, "max_layer_rate")
        keys = list(scores)
        sizes = [scores[key].numel() for key in keys]
        caps = [max(0, min(int(np.floor(max_layer_rate * n)), n - min_keep)) for n in sizes]
        k = min(int(round(rate * sum(sizes))), sum(caps))
        return dict(zip(keys, select_lowest([scores[key] for key in keys], k, caps)))
    out = {}
    for key, s in scores.items():
        r = (layer_rates or {}).get(key, rate)
        r = check_rate(r, f"{what} for layer {key}" if key not in ("", None) else what)
        k = max(0, min(int(round(r * s.numel())), s.numel() - min_keep))
        out[key] = lowest_k(s, k)
    return out


def weight_keep_masks(criterion, weights: Mapping[str, torch.Tensor], rate: float, *, global_: bool = False,
                      max_layer_rate: float = MAX_LAYER_RATE, layer_rates: Mapping[str, float] | None = None,
                      what: str = "pruning rate") -> dict[str, torch.Tensor]:
    """Weight-shaped bool keep-masks: score each weight's units with ``criterion``
    (:mod:`.criteria`), select with :func:`select_pruned`, expand back to the weight."""
    scores = {n: criterion.scores(w, n) for n, w in weights.items()}
    pruned = select_pruned(scores, rate, global_=global_, max_layer_rate=max_layer_rate,
                           layer_rates=layer_rates, what=what)
    return {n: criterion.keep_mask(~pruned[n], tuple(weights[n].shape)) for n in weights}
