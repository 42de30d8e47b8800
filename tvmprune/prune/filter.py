"""L1-norm filter pruning (Li et al. 2016, "Pruning Filters for Efficient ConvNets").

Whole output channels (filters) with the smallest L1 norm are removed.  Channels are
pruned per *channel group* of the dependency graph (:mod:`tvmprune.prune.graph`):

* a plain conv's output channels form a group alone; its BatchNorm, any depthwise conv
  (+ BatchNorm) passing them through, and the input channels of every consumer (convs,
  a Linear after ``flatten``) are sliced consistently;
* channels coupled through residual adds form one group and are pruned *together*,
  ranked by the summed L1 norm of all producers in the group (``skip_coupled=True``
  leaves them dense instead, as the paper does for the last conv of residual blocks);
* frozen groups (model output, ops the graph does not understand) are never pruned.

``rate`` is the fraction of channels removed per group: ``round(rate * C)`` but at least
one channel is kept.  Global mode ranks channels of all groups by their filter L1 divided
by the fan-in (mean |w|, so layers of different sizes are comparable) and removes
``round(rate * total)`` of them, at most ``max_layer_rate`` (0.95) of any group.

Two outputs: :func:`filter_prune` builds a physically smaller dense model (new weight
tensors, ``in_channels`` / ``out_channels`` / ``num_features`` updated) and
:func:`filter_mask` zeroes the same filters in the original architecture; both compute
the same function.
"""

from __future__ import annotations

import copy
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from ..errors import PruneConfigError
from .block import MAX_LAYER_RATE, check_rate, select_lowest
from .graph import DependencyGraph, build_graph
from .rearrange import group_channel_scores

__all__ = ["filter_keep_indices", "filter_prune", "filter_mask", "sensitivity_scan"]


def _candidate_groups(graph: DependencyGraph, skip_coupled: bool, groups: Iterable[str] | None):
    cands = [g for g in graph.prunable_groups() if not (skip_coupled and g.coupled)]
    if groups is not None:
        wanted = list(groups)
        names = {g.name: g for g in graph.prunable_groups()}
        for w in wanted:
            if w not in names:
                known = ", ".join(sorted(names)) or "none"
                raise PruneConfigError(f"layer {w!r} is not a prunable filter group; prunable: {known}")
        cands = [names[w] for w in wanted]
    return cands


def filter_keep_indices(model: nn.Module, graph: DependencyGraph, rate: float, global_: bool = False,
                        skip_coupled: bool = False, groups: Iterable[str] | None = None,
                        max_layer_rate: float = MAX_LAYER_RATE) -> dict[int, torch.Tensor]:
    """Sorted kept channel indices per pruned group id (groups with nothing removed are omitted)."""
    rate = check_rate(rate, "filter pruning rate")
    cands = _candidate_groups(graph, skip_coupled, groups)
    keep: dict[int, torch.Tensor] = {}
    if global_:
        max_layer_rate = check_rate(max_layer_rate, "max_layer_rate")
        scores = [group_channel_scores(model, g, normalize=True) for g in cands]
        caps = [min(int(np.floor(max_layer_rate * g.size)), g.size - 1) for g in cands]
        total = sum(g.size for g in cands)
        k = min(int(round(rate * total)), sum(caps))
        pruned = select_lowest(scores, k, caps)
        for g, p in zip(cands, pruned):
            if p.any():
                keep[g.gid] = torch.nonzero(~p).reshape(-1)
        return keep
    for g in cands:
        k = min(int(round(rate * g.size)), g.size - 1)
        if k <= 0:
            continue
        scores = group_channel_scores(model, g)
        p = select_lowest([scores], k, [k])[0]
        keep[g.gid] = torch.nonzero(~p).reshape(-1)
    return keep


def filter_prune(model: nn.Module, graph: DependencyGraph, keep: dict[int, torch.Tensor]) -> nn.Module:
    """A physically smaller copy of ``model`` keeping only ``keep[gid]`` channels of each group."""
    small = copy.deepcopy(model)
    return graph.apply_channel_index(small, keep)


def filter_mask(model: nn.Module, graph: DependencyGraph, keep: dict[int, torch.Tensor],
                inplace: bool = False) -> nn.Module:
    """Zero the removed filters (and everything indexed by them) in the original architecture."""
    m = model if inplace else copy.deepcopy(model)
    mods = dict(m.named_modules())
    with torch.no_grad():
        for gid, kept in keep.items():
            g = graph.groups[gid]
            removed = torch.ones(g.size, dtype=torch.bool)
            removed[kept] = False
            ridx = torch.nonzero(removed).reshape(-1)
            for mem in g.members:
                mod = mods[mem.module]
                if mem.mult == 1:
                    idx = mem.offset + ridx
                else:
                    idx = (mem.offset + ridx[:, None] * mem.mult + torch.arange(mem.mult)[None, :]).reshape(-1)
                if mem.role == "in":
                    mod.weight[:, idx] = 0
                else:
                    if getattr(mod, "weight", None) is not None:
                        mod.weight[idx] = 0
                    if getattr(mod, "bias", None) is not None:
                        mod.bias[idx] = 0
    return m


def sensitivity_scan(model: nn.Module, eval_fn: Callable[[nn.Module], float],
                     rates: Iterable[float] = (0.1, 0.3, 0.5, 0.7, 0.9), layers: Iterable[str] | None = None,
                     example_input: torch.Tensor | None = None, graph: DependencyGraph | None = None,
                     progress: bool = False) -> dict[str, dict[float, float]]:
    """Prune each layer (channel group, named by its first producer) alone and evaluate.

    For every layer and rate, the layer's filters are masked (zeroed, L1 criterion) in a
    copy of the model and ``eval_fn(copy)`` is recorded.  Returns
    ``{layer: {rate: metric}}``.  ``layers`` restricts the scan (names as in
    ``DependencyGraph.prunable_groups()``, e.g. ``features.0``, ``layer1.0.conv1``).
    """
    rates = [check_rate(r, "sensitivity rate") for r in rates]
    if graph is None:
        graph = build_graph(model, example_input)
    cands = _candidate_groups(graph, False, layers)
    out: dict[str, dict[float, float]] = {}
    for i, g in enumerate(cands):
        out[g.name] = {}
        for r in rates:
            keep = filter_keep_indices(model, graph, r, groups=[g.name])
            masked = filter_mask(model, graph, keep).eval()
            out[g.name][r] = eval_fn(masked)
        if progress:
            print(f"sensitivity {i + 1}/{len(cands)} {g.name}: " +
                  " ".join(f"{r:g}:{v:.4g}" for r, v in out[g.name].items()), flush=True)
    return out
