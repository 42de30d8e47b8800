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
from .planner import DEFAULT_OBJECTIVE, GuidedPlan, plan_guided
from .training import GuidedTraining, guided_train

__all__ = ["GuidedPruneResult", "guided_prune", "guided_finetune", "plan_from_config", "guided_label"]


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
                 params: PerfParams | None = None, max_layer_rate: float = MAX_LAYER_RATE,
                 objective: str = DEFAULT_OBJECTIVE) -> GuidedPruneResult:
    """Prune a copy of ``model`` with ``pattern`` (``unstructured`` or ``1xN``) guided by ``target``'s perf model.

    ``target`` defaults to the host (``x86``); ``example_input`` (NCHW, default 1x3x224x224
    zeros) gives the layer shapes the model predicts for; ``plan`` reuses a saved plan instead
    of planning; ``objective`` picks the planner's water-filling (:mod:`.planner`). Raises :class:`PruneConfigError` for other pattern kinds or a plan that does
    not fit the model.
    """
    from .. import _skip_reason, _validate
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
        plan = plan_guided(geoms, pattern.kind, pattern.rate, target, pattern.n, params, max_layer_rate, objective)
    _check_plan(plan, pattern, {n: layer_elements(g.weight_shape, bn) for n, g in geoms.items()})
    dense = {gl.name: mods[gl.name].weight.detach().clone() for gl in plan.layers}
    masks = {}
    for gl in plan.layers:
        if gl.pruned:
            w = mods[gl.name].weight
            rate = gl.pruned / gl.elements
            masks[gl.name] = (block_mask(w, pattern.n, rate, gl.name) if bn else magnitude_mask(w, rate, gl.name))
    apply_masks(m, masks)
    config["masks"] = _encode_masks(masks, bn)
    config["guided"] = plan.to_json()
    result = GuidedPruneResult(m.eval(), [], config, masks, graph, plan=plan, dense_weights=dense)
    result.layers = _layer_reports(result, skipped)
    return result


def _encode_masks(masks: dict[str, torch.Tensor], bn: int) -> dict:
    if bn:
        return {k: {"shape": list(v.shape), "blockmap": encode_bits(block_map(v, bn))} for k, v in masks.items()}
    return {k: {"shape": list(v.shape), "mask": encode_bits(v)} for k, v in masks.items()}


def _layer_reports(result: "GuidedPruneResult", skipped: dict[str, str | None]) -> list:
    """One LayerReport per conv / linear; layers left dense by the plan (or rule 4) say why."""
    from .. import LayerReport

    mods = dict(result.model.named_modules())
    reasons = {gl.name: gl.reason for gl in result.plan.layers}
    restored = set((result.config.get("guided_training") or {}).get("restored_dense", []))
    out = []
    for n in result.graph.layers:
        w = mods[n].weight
        kind = "linear" if isinstance(mods[n], nn.Linear) else "conv"
        if skipped.get(n):
            why = skipped[n]
        elif n in result.masks:
            why = None
        elif n in restored:
            why = "guided rule 4: not sparse enough to pay, dense weights restored"
        else:
            why = f"guided: {reasons.get(n, 'not reached by the example input')}"
        out.append(LayerReport(n, kind, tuple(w.shape), float((w != 0).sum()) / w.numel(),
                               result.config["pattern"] if why is None else "dense", why))
    return out


def guided_finetune(result: GuidedPruneResult, loader, *, epochs: int = 1, lr: float = 1e-3,
                    settings: GuidedTraining | None = None, progress: bool = True) -> GuidedPruneResult:
    """The training-time form: GESL / GDNS with GSL rules 3 and 4 on ``result`` (in place; see :mod:`.training`).

    Updates the model, masks, per-layer report and the config (``masks``, ``guided_training``).
    """
    if not isinstance(result, GuidedPruneResult) or result.plan is None:
        raise PruneConfigError("guided_finetune needs the result of guided_prune")
    bn = result.plan.n if result.plan.kind == "1xN" else 0
    report = guided_train(result.model, result.masks, result.plan, result.dense_weights, loader, epochs=epochs,
                          lr=lr, settings=settings, progress=progress)
    result.config["masks"] = _encode_masks(result.masks, bn)
    result.config["guided_training"] = report.to_json()
    skipped = {r.name: r.skipped_reason for r in result.layers
               if r.skipped_reason and not r.skipped_reason.startswith("guided")}
    result.layers = _layer_reports(result, skipped)
    result.model.eval()
    return result
