"""``+guided``: the pattern modifier that lets the target's perf model choose per-layer rates.

:class:`GuidedModifier` (registered as the ``+guided`` option of ``unstructured`` and
``1xN``) traces the layer shapes, plans per-layer counts for the compile target (``ctx.target``,
default the host ``x86``) and runs the pattern's own method with those per-layer rates
(magnitude / block L1 selection, 1xN filter rearrangement as usual). Layers the plan leaves
at density 1 keep their weights exactly and get no mask. The plan is stored in the pruning
config under ``guided`` (target name + per-layer counts and densities);
:func:`plan_from_config` reads it back and ``guided_prune(..., plan=...)`` applies it again.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from ...errors import PruneConfigError
from ...target import NamedTarget, get_target
from ..bits import encode_bits
from ..block import block_map
from ..context import PruneContext
from ..graph import DependencyGraph, build_graph, default_example_input
from ..layer_policy import sparse_targets
from ..pattern import Option, PrunePattern
from ..pruner import check_request, prune_model
from ..rearrange import rearrange_filters
from ..registry import PatternModifier, PruningMethod, get_method
from ..result import LayerReport, PruneResult
from .bounds import layer_geometries
from .planner import DEFAULT_OBJECTIVE, GuidedPlan, layer_elements, plan_guided
from .training import GuidedTraining, guided_train

__all__ = ["GUIDED", "GuidedModifier", "GuidedPruneResult", "guided_prune", "guided_finetune", "plan_from_config"]

GUIDED = Option("guided", "per-layer rates from the target's performance model (Park et al. 2017)")


@dataclass
class GuidedPruneResult(PruneResult):
    """A :class:`PruneResult` with the plan and the planned layers' dense weights.

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


class GuidedModifier(PatternModifier):
    option = GUIDED
    applies_to = ("unstructured", "1xN")

    def apply(self, method: PruningMethod, model: nn.Module, pattern: PrunePattern, graph: DependencyGraph,
              ctx: PruneContext) -> PruneResult:
        return apply_guided(method, model, pattern, graph, ctx)


def _check_plan(plan: GuidedPlan, pattern: PrunePattern, elements: dict[str, int]) -> None:
    if plan.kind != pattern.kind or (pattern.kind == "1xN" and plan.n != pattern.n):
        raise PruneConfigError(f"the guided plan is for {plan.kind} (n={plan.n}), not for {pattern.label}")
    for gl in plan.layers:
        if elements.get(gl.name) != gl.elements:
            raise PruneConfigError(f"the guided plan's layer {gl.name!r} ({gl.elements} elements) does not match "
                                   "this model; re-plan without a saved plan")


def _dense_weights(model: nn.Module, pattern: PrunePattern, graph: DependencyGraph, names) -> dict:
    """The planned layers' weights as the method will see them before masking (1xN: after rearrangement)."""
    src = model
    if pattern.kind == "1xN" and pattern.rearrange:
        src = copy.deepcopy(model)
        rearrange_filters(src, graph)  # deterministic: the same permutation the method applies
    mods = dict(src.named_modules())
    return {n: mods[n].weight.detach().clone() for n in names}


def apply_guided(method: PruningMethod, model: nn.Module, pattern: PrunePattern, graph: DependencyGraph,
                 ctx: PruneContext, plan: GuidedPlan | None = None,
                 objective: str = DEFAULT_OBJECTIVE) -> GuidedPruneResult:
    """Plan (unless ``plan`` is given) and run ``method`` with the plan's per-layer rates on ``model``."""
    if pattern.global_:
        raise PruneConfigError("+guided already distributes the budget across layers; drop +global")
    target: NamedTarget = get_target(ctx.target or "x86")
    names, skipped = sparse_targets(model, graph)
    geoms = layer_geometries(model, ctx.example_input, names)
    bn = pattern.n if pattern.kind == "1xN" else 0
    if plan is None:
        plan = plan_guided(geoms, pattern.kind, pattern.rate, target, pattern.n, max_layer_rate=ctx.max_layer_rate,
                           objective=objective)
    _check_plan(plan, pattern, {n: layer_elements(g.weight_shape, bn) for n, g in geoms.items()})
    dense = _dense_weights(model, pattern, graph, [gl.name for gl in plan.layers])
    rates = {gl.name: gl.pruned / gl.elements for gl in plan.layers}
    base = method.apply(model, pattern, graph, ctx.with_layer_rates(rates))
    masks = {k: v for k, v in base.masks.items() if rates.get(k, 0.0) > 0.0}  # planned dense: no mask at all
    result = GuidedPruneResult(base.model, [], dict(base.config), masks, graph, plan=plan, dense_weights=dense)
    result.config["masks"] = _encode_masks(masks, bn)
    result.config["guided"] = plan.to_json()
    result.layers = _layer_reports(result, pattern.label, skipped)
    return result


def _encode_masks(masks: dict[str, torch.Tensor], bn: int) -> dict:
    if bn:
        return {k: {"shape": list(v.shape), "blockmap": encode_bits(block_map(v, bn))} for k, v in masks.items()}
    return {k: {"shape": list(v.shape), "mask": encode_bits(v)} for k, v in masks.items()}


def _layer_reports(result: GuidedPruneResult, label: str, skipped: dict[str, str | None]) -> list[LayerReport]:
    """One LayerReport per conv / linear; layers left dense by the plan (or rule 4) say why."""
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
                               label if why is None else "dense", why))
    return out


def guided_prune(model: nn.Module, pattern: PrunePattern | str, target: NamedTarget | str | None = None,
                 example_input: torch.Tensor | None = None, *, plan: GuidedPlan | None = None,
                 objective: str = DEFAULT_OBJECTIVE, max_layer_rate: float = 0.95) -> GuidedPruneResult:
    """Prune a copy of ``model`` with ``pattern`` (``unstructured`` / ``1xN``, ``+guided`` implied) for ``target``.

    ``target`` defaults to the host (``x86``); ``example_input`` (NCHW, default 1xCx224x224
    zeros) gives the layer shapes the model predicts for; ``plan`` reuses a saved plan instead
    of planning; ``objective`` picks the planner's water-filling (:mod:`.planner`). Raises
    :class:`PruneConfigError` for other pattern kinds or a plan that does not fit the model.
    """
    pattern = check_request(model, pattern, example_input)
    if pattern.kind not in GuidedModifier.applies_to:
        raise PruneConfigError(f"+guided applies to unstructured@RATE and 1xN@RATE, not {pattern.label}")
    if not pattern.has("guided"):
        pattern = pattern.with_options("guided")
    if plan is None and objective == DEFAULT_OBJECTIVE:
        return prune_model(model, pattern, example_input, target=target or "x86", max_layer_rate=max_layer_rate)
    m = copy.deepcopy(model).eval()
    x = example_input if example_input is not None else default_example_input(m)
    graph = build_graph(m, x)
    ctx = PruneContext(x, target=target or "x86", max_layer_rate=max_layer_rate)
    result = apply_guided(get_method(pattern.kind), m, pattern, graph, ctx, plan=plan, objective=objective)
    result.config = {"pattern": pattern.label, "kind": pattern.kind, "n": pattern.n, "rate": pattern.rate,
                     "options": list(pattern.options), "global": False, "max_layer_rate": max_layer_rate,
                     "coupled_groups": [g.producers for g in graph.coupled_groups()], **result.config}
    result.model = result.model.eval()
    return result


def guided_finetune(result: GuidedPruneResult, loader, *, epochs: int = 1, lr: float = 1e-3,
                    settings: GuidedTraining | None = None, progress: bool = True) -> GuidedPruneResult:
    """The training-time form: GESL / GDNS with GSL rules 3 and 4 on ``result`` (in place; see :mod:`.training`).

    Updates the model, masks, per-layer report and the config (``masks``, ``guided_training``).
    """
    if not isinstance(result, GuidedPruneResult) or result.plan is None:
        raise PruneConfigError("guided_finetune needs the result of a +guided pattern")
    bn = result.plan.n if result.plan.kind == "1xN" else 0
    report = guided_train(result.model, result.masks, result.plan, result.dense_weights, loader, epochs=epochs,
                          lr=lr, settings=settings, progress=progress)
    result.config["masks"] = _encode_masks(result.masks, bn)
    result.config["guided_training"] = report.to_json()
    skipped = {r.name: r.skipped_reason for r in result.layers
               if r.skipped_reason and not r.skipped_reason.startswith("guided")}
    result.layers = _layer_reports(result, result.config["pattern"], skipped)
    result.model.eval()
    return result
