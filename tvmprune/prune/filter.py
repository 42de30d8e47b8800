"""``filter@RATE``: L1-norm filter pruning (Li et al. 2016, "Pruning Filters for Efficient ConvNets").

Whole output channels (filters) with the smallest L1 norm are removed.  Channels are
pruned per *channel group* of the dependency graph (:mod:`tvmprune.prune.graph`):

* a plain conv's output channels form a group alone; its BatchNorm, any depthwise conv
  (+ BatchNorm) passing them through, and the input channels of every consumer (convs,
  a Linear after ``flatten``) are sliced consistently;
* channels coupled through residual adds form one group and are pruned *together*,
  ranked by the summed L1 norm of all producers in the group (``skip_coupled=True``
  leaves them dense instead, as the paper does for the last conv of residual blocks);
* frozen groups (model output, ops the graph does not understand) are never pruned;
* the input and output channels of a grouped conv lose the same number of channels in
  each of its groups (``groups`` is kept); ConvNeXt's channels-last LayerNorm / Linear
  blocks and layer scale follow their channels;
* channels through a channel shuffle (ShuffleNet's trunk, :mod:`.shuffle_region`) are kept per
  producer at the layer-wise rate, chosen so that the smaller model routes them as the original
  does (not in global mode, with ``skip_coupled`` or a ``groups`` subset: there they stay dense).

``rate`` is the fraction of channels removed per group: ``round(rate * C)`` but at least
one channel is kept.  Global mode (``+global``) ranks channels of all groups by their
filter L1 divided by the fan-in (mean |w|, so layers of different sizes are comparable)
and removes ``round(rate * total)`` of them, at most ``max_layer_rate`` (0.95) of any group.
``+params`` (:mod:`.param_budget`) reads the rate as a parameter budget instead: keep at most
``(1 - rate)**2`` of the parameters (what the rate keeps of a layer pruned on both sides), at the
smallest layer-wise (or global) channel rate that does -- for models whose classifier, fixed at
1000 outputs, holds much of the parameters.

Two outputs: :func:`filter_prune` builds a physically smaller dense model (new weight
tensors, ``in_channels`` / ``out_channels`` / ``num_features`` updated) and
:func:`filter_mask` zeroes the same filters in the original architecture; both compute
the same function, except where a LayerNorm normalises removed channels (their zeros
still count in its mean / variance).  ``pruning.json`` stores the kept channels per group
(:func:`kept_channels_config`); :func:`restore_kept_channels` shrinks a rebuilt dense model
the same way -- reusable by any method that removes channels.
"""

from __future__ import annotations

import copy
from typing import Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from ..errors import PruneConfigError
from .context import LoadContext, PruneContext
from .criteria import FilterL1
from .graph import DependencyGraph, build_graph
from .param_budget import PARAMS, kept_param_fraction, params_budget, rate_for_budget
from .pattern import PrunePattern
from .registry import GLOBAL, PruningMethod
from .result import PruneResult, layer_reports
from .selection import MAX_LAYER_RATE, check_rate, even_over_blocks, select_pruned

__all__ = ["filter_keep_indices", "filter_prune", "filter_mask", "sensitivity_scan", "kept_channels_config",
           "restore_kept_channels", "FilterMethod"]


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
                        max_layer_rate: float = MAX_LAYER_RATE,
                        layer_rates: Mapping[str, float] | None = None) -> dict[int, torch.Tensor]:
    """Sorted kept channel indices per pruned group id (groups with nothing removed are omitted).

    ``layer_rates`` (keyed by group name) override ``rate`` per group in layer-wise mode.
    """
    rate = check_rate(rate, "filter pruning rate")
    cands = _candidate_groups(graph, skip_coupled, groups)
    criterion = FilterL1(normalize=global_)
    scores = {g.name: criterion.scores(model, g) for g in cands}
    pruned = select_pruned(scores, rate, global_=global_, max_layer_rate=max_layer_rate, min_keep=1,
                           layer_rates=layer_rates, what="filter pruning rate")
    for g in cands:
        if g.strata > 1:  # grouped convs: the same number of channels from each of their groups
            pruned[g.name] = even_over_blocks(scores[g.name], int(pruned[g.name].sum()), g.strata)
    keep = {g.gid: torch.nonzero(~pruned[g.name]).reshape(-1) for g in cands if pruned[g.name].any()}
    if not global_ and not skip_coupled and groups is None:
        keep.update(_region_keep(model, graph, rate, layer_rates or {}))
    return keep


def _region_keep(model: nn.Module, graph: DependencyGraph, rate: float,
                 layer_rates: Mapping[str, float]) -> dict[int, torch.Tensor]:
    """Kept rows of the producers of channel-shuffle regions (layer-wise rates; a region that cannot
    take them exactly stays dense)."""
    from .shuffle_region import RegionInfeasible

    mods = dict(model.named_modules())
    keep = {}
    for region in graph.regions:
        scores = {p: mods[p].weight.detach().abs().flatten(1).sum(1) for p in region.producers}
        kept = {}
        for p, gid in region.producers.items():
            n = scores[p].numel()
            r = check_rate(layer_rates.get(graph.groups[gid].name, rate), f"filter pruning rate for layer {p}")
            kept[p] = n - max(0, min(int(round(r * n)), n - 1))
        try:
            rows = region.select_nearest(scores, kept)
        except RegionInfeasible:
            continue
        keep.update({region.producers[p]: r for p, r in rows.items() if r.numel() < scores[p].numel()})
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
                mod = mods.get(mem.module)
                if mem.mult == 1:
                    idx = mem.offset + ridx
                else:
                    idx = (mem.offset + ridx[:, None] * mem.mult + torch.arange(mem.mult)[None, :]).reshape(-1)
                if mem.role == "param":
                    owner, _, attr = mem.module.rpartition(".")
                    getattr(m.get_submodule(owner), attr).index_fill_(mem.dim, idx, 0)
                elif mem.role == "in":
                    _zero_input_channels(mod, idx)
                else:
                    if getattr(mod, "weight", None) is not None:
                        mod.weight[idx] = 0
                    if getattr(mod, "bias", None) is not None:
                        mod.bias[idx] = 0
        _mask_region_readers(mods, graph, keep)
    return m


def _mask_region_readers(mods: dict, graph: DependencyGraph, keep: dict[int, torch.Tensor]) -> None:
    """Zero what the readers of channel-shuffle regions index by removed producer channels."""
    for region in graph.regions:
        rows = {p: keep[gid] for p, gid in region.producers.items() if gid in keep}
        if not rows:
            continue
        for name, idx in region.removed_positions(rows).items():
            mod = mods[name]
            if region.readers[name] == "in":
                _zero_input_channels(mod, idx)
                continue
            for attr in ("weight", "bias"):
                if getattr(mod, attr, None) is not None:
                    getattr(mod, attr)[idx] = 0


def _zero_input_channels(mod: nn.Module, idx: torch.Tensor) -> None:
    """Zero the weight columns of input channels ``idx``; a grouped conv's columns are per group."""
    groups = getattr(mod, "groups", 1)
    if groups == 1:
        mod.weight[:, idx] = 0
        return
    per_in, per_out = mod.in_channels // groups, mod.out_channels // groups
    for c in idx.tolist():
        g = c // per_in
        mod.weight[g * per_out:(g + 1) * per_out, c % per_in] = 0


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


def kept_channels_config(graph: DependencyGraph, keep: dict[int, torch.Tensor]) -> dict:
    """``{group name: {"size": C, "keep": [indices]}}`` for ``pruning.json``."""
    return {graph.groups[g].name: {"size": graph.groups[g].size, "keep": k.tolist()} for g, k in keep.items()}


def restore_kept_channels(model: nn.Module, entries: dict, ctx: LoadContext) -> nn.Module:
    """Shrink a rebuilt dense ``model`` in place to the kept channels of :func:`kept_channels_config`.

    Raises:
        PruneConfigError: a group that does not exist in (or does not fit) the model, or bad indices.
    """
    if not entries:
        return model
    graph = build_graph(model, ctx.example_input())
    keep = kept_indices_of(
        graph, entries,
        mismatch=lambda name: f"{ctx.source}: filter group {name!r} does not match model {ctx.model_spec!r}",
        bad_indices=lambda name: f"{ctx.source}: bad kept channel indices for group {name!r}")
    return graph.apply_channel_index(model, keep)


def kept_indices_of(graph: DependencyGraph, entries: dict, mismatch: Callable[[str], str],
                    bad_indices: Callable[[str], str]) -> dict[int, torch.Tensor]:
    """The inverse of :func:`kept_channels_config`: ``{group id: kept indices}``, checked against ``graph``.

    Raises:
        PruneConfigError: ``mismatch(name)`` for a group the graph lacks (or of another size, or frozen),
            ``bad_indices(name)`` for empty or out-of-range indices.
    """
    keep = {}
    for name, ent in entries.items():
        g = graph.group_by_name(name)
        if g is None or g.size != ent.get("size") or not graph.reindexable(g.gid):
            raise PruneConfigError(mismatch(name))
        idx = torch.tensor(ent["keep"], dtype=torch.long)
        if idx.numel() == 0 or int(idx.min()) < 0 or int(idx.max()) >= g.size:
            raise PruneConfigError(bad_indices(name))
        keep[g.gid] = idx
    return keep


def _filter_skip_reason(graph: DependencyGraph, name: str, touched: set[str], skip_coupled: bool) -> str | None:
    if name in touched:
        return None
    g = graph.out_group(name)
    if g is not None and g.frozen:
        return f"frozen channels ({g.reason})"
    if g is not None and skip_coupled and g.coupled:
        return "coupled residual group"
    return "no filter removed"


def _budget_rate(model: nn.Module, graph: DependencyGraph, pattern: PrunePattern, ctx: PruneContext,
                 keep_at: Callable[[float], dict[int, torch.Tensor]]) -> tuple[float, dict]:
    """``+params``: the smallest channel rate keeping at most ``(1 - rate)**2`` of the parameters, and its
    config entries (:mod:`.param_budget`).

    Raises:
        PruneConfigError: per-layer rates from a modifier (they fix the rates themselves), or a budget that
            no rate up to ``max_layer_rate`` meets.
    """
    if ctx.layer_rates:
        raise PruneConfigError(f"{pattern.label}: +params chooses the rate itself; it cannot take per-layer rates")
    kept_of = kept_param_fraction(model, graph)
    budget = params_budget(pattern.rate)
    rate, kept = rate_for_budget(lambda r: kept_of(keep_at(r)), budget, ctx.max_layer_rate, pattern.label)
    return rate, {"params_budget": budget, "channel_rate": rate, "params_kept": kept}


class FilterMethod(PruningMethod):
    kind = "filter"
    syntax = "filter@RATE"
    options = (GLOBAL, PARAMS)
    default_rate = 0.5
    sparse = False

    def apply(self, model: nn.Module, pattern: PrunePattern, graph: DependencyGraph,
              ctx: PruneContext) -> PruneResult:
        mods = dict(model.named_modules())
        numel = {n: mods[n].weight.numel() for n in graph.layers}

        def keep_at(rate: float) -> dict[int, torch.Tensor]:
            return filter_keep_indices(model, graph, rate, pattern.global_, skip_coupled=ctx.skip_coupled,
                                       max_layer_rate=ctx.max_layer_rate, layer_rates=ctx.layer_rates)

        rate, budget_config = pattern.rate, {}
        if pattern.has(PARAMS.name):
            rate, budget_config = _budget_rate(model, graph, pattern, ctx, keep_at)
        keep = keep_at(rate)
        config = {"filter_keep": kept_channels_config(graph, keep), "skip_coupled": ctx.skip_coupled,
                  **budget_config}
        graph.apply_channel_index(model, keep)
        mods = dict(model.named_modules())
        touched = {mem.module for g in keep for mem in graph.groups[g].members}
        touched |= {name for r in graph.regions if set(r.producers.values()) & set(keep) for name in r.readers}
        skipped = {n: _filter_skip_reason(graph, n, touched, ctx.skip_coupled) for n in graph.layers}
        density = {n: mods[n].weight.numel() / max(1, numel[n]) for n in graph.layers}
        layers = layer_reports(model, graph.layers, "filter", skipped, density)
        return PruneResult(model, layers, config)

    def restore(self, model: nn.Module, config: dict, ctx: LoadContext) -> nn.Module:
        return restore_kept_channels(model, config.get("filter_keep") or {}, ctx)
