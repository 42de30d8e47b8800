"""``+guided`` pruning: magnitude pruning at the per-layer densities of a :class:`GuidedPlan`.

:func:`guided_prune` traces the model, plans (or reuses a saved plan) for the target and
prunes each layer by magnitude (unstructured) or block L1 (1xN, after the usual filter
rearrangement) at its planned count. Layers the plan leaves at density 1 keep their weights
exactly and get no mask. The plan is stored in the pruning config under ``guided``
(target name + per-layer counts and densities); :func:`plan_from_config` reads it back.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from ...errors import PruneConfigError
from ...perf_model import PerfParams
from ...target import NamedTarget, get_target
from ..block import MAX_LAYER_RATE, block_map, block_mask, encode_bits
from ..graph import build_graph
from ..masks import apply_masks
from ..pattern import PrunePattern, parse_pattern
from ..rearrange import rearrange_filters
from ..unstructured import magnitude_mask
from .bounds import layer_geometries
from .planner import GuidedPlan, plan_guided

__all__ = ["GuidedPruneResult", "guided_prune", "plan_from_config", "guided_label"]


def guided_label(pattern: PrunePattern) -> str:
    """The pattern label with the ``+guided`` modifier, e.g. ``unstructured@0.8+guided``."""
    return f"{pattern.label}+guided"


def _prune_result_type():
    from .. import PruneResult  # the package's result type (import here: the package imports this module)

    return PruneResult


@dataclass
class GuidedPruneResult(_prune_result_type()):  # type: ignore[misc]
    """A :class:`~tvmprune.prune.PruneResult` with the plan and the pruned layers' dense weights.

    ``dense_weights``: weight of every planned layer before masking (after 1xN rearrangement),
    for GSL rule (4) during training.
    """

    plan: GuidedPlan | None = None
    dense_weights: dict[str, torch.Tensor] = field(default_factory=dict)


def plan_from_config(config: dict) -> GuidedPlan:
    """The :class:`GuidedPlan` stored in a pruning config (``pruning.json``'s ``config``)."""
    if not isinstance(config.get("guided"), dict):
        raise PruneConfigError("this pruning config has no guided plan (it was not pruned with +guided)")
    return GuidedPlan.from_json(config["guided"])


def _check_plan(plan: GuidedPlan, pattern: PrunePattern, elements: dict[str, int]) -> None:
    if plan.kind != pattern.kind or (pattern.kind == "1xN" and plan.n != pattern.n):
        raise PruneConfigError(f"the guided plan is for {plan.kind} (n={plan.n}), not for {pattern.label}")
    for gl in plan.layers:
        if elements.get(gl.name) != gl.elements:
            raise PruneConfigError(f"the guided plan's layer {gl.name!r} ({gl.elements} elements) does not match "
                                   "this model; re-plan without a saved plan")


def guided_prune(model: nn.Module, pattern: PrunePattern | str, target: NamedTarget | str | None = None,
                 example_input: torch.Tensor | None = None, *, plan: GuidedPlan | None = None,
                 params: PerfParams | None = None, max_layer_rate: float = MAX_LAYER_RATE) -> GuidedPruneResult:
    """Prune a copy of ``model`` with ``pattern`` (``unstructured`` or ``1xN``) guided by ``target``'s perf model.

    ``target`` defaults to the host (``x86``); ``example_input`` (NCHW, default 1x3x224x224
    zeros) gives the layer shapes the model predicts for; ``plan`` reuses a saved plan instead
    of planning. Raises :class:`PruneConfigError` for other pattern kinds or a plan that does
    not fit the model.
    """
    from .. import LayerReport, _skip_reason, _validate
    from .planner import layer_elements

    pattern = _validate(model, pattern, example_input)
    if pattern.kind not in ("unstructured", "1xN"):
        raise PruneConfigError(f"+guided applies to unstructured@RATE and 1xN@RATE, not {pattern.label}")
    if pattern.global_:
        raise PruneConfigError("+guided already distributes the budget across layers; drop +global")
    target = get_target(target or "x86")
    example = example_input if example_input is not None else torch.zeros(1, 3, 224, 224)
    m = copy.deepcopy(model).eval()
    graph = build_graph(m, example)
    mods = dict(m.named_modules())
    skipped = {n: _skip_reason(graph, n, mods[n]) for n in graph.layers}
    names = [n for n in graph.layers if skipped[n] is None]
    config: dict = {"pattern": guided_label(pattern), "kind": pattern.kind, "n": pattern.n, "rate": pattern.rate,
                    "rearrange": pattern.rearrange if pattern.kind == "1xN" else False, "global": False,
                    "max_layer_rate": max_layer_rate,
                    "coupled_groups": [g.producers for g in graph.coupled_groups()]}
    if pattern.kind == "1xN" and pattern.rearrange:
        perms = rearrange_filters(m, graph)
        config["permutations"] = {graph.groups[g].name: p.tolist() for g, p in perms.items()}
    geoms = layer_geometries(m, example, names)
    bn = pattern.n if pattern.kind == "1xN" else 0
    if plan is None:
        plan = plan_guided(geoms, pattern.kind, pattern.rate, target, pattern.n, params, max_layer_rate)
    _check_plan(plan, pattern, {n: layer_elements(g.weight_shape, bn) for n, g in geoms.items()})
    dense = {gl.name: mods[gl.name].weight.detach().clone() for gl in plan.layers}
    masks = {}
    for gl in plan.layers:
        if gl.pruned:
            w = mods[gl.name].weight
            rate = gl.pruned / gl.elements
            masks[gl.name] = (block_mask(w, pattern.n, rate, gl.name) if bn else magnitude_mask(w, rate, gl.name))
    apply_masks(m, masks)
    if bn:
        config["masks"] = {k: {"shape": list(v.shape), "blockmap": encode_bits(block_map(v, bn))}
                           for k, v in masks.items()}
    else:
        config["masks"] = {k: {"shape": list(v.shape), "mask": encode_bits(v)} for k, v in masks.items()}
    config["guided"] = plan.to_json()
    reasons = {gl.name: gl.reason for gl in plan.layers}
    layers = []
    for n in graph.layers:
        w = mods[n].weight
        kind = "linear" if isinstance(mods[n], nn.Linear) else "conv"
        why = skipped[n] or (None if n in masks else f"guided: {reasons.get(n, 'not reached by the example input')}")
        layers.append(LayerReport(n, kind, tuple(w.shape), float((w != 0).sum()) / w.numel(),
                                  config["pattern"] if why is None else "dense", why))
    return GuidedPruneResult(m.eval(), layers, config, masks, graph, plan=plan, dense_weights=dense)
