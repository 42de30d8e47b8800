"""Gator (Passov et al. 2022): learned channel gates trained against a measured cost.

``gator@RATIO[+latency|+flops|+memory]``: gates on the hyper-edges of tvmprune's channel
dependency graph (:mod:`.hyper_edges`) are trained with the task until the model's cost is
at most ``RATIO`` of the dense model's (:mod:`.train`; lambda is steered automatically).
The cost is the latency of tvmprune's own kernels measured on the compile target
(:mod:`.latency_table`, default), FLOPs, or weight memory (:mod:`.cost`).  The gated model
is then sliced into a physically smaller dense model, removing whole residual blocks whose
inner channels all closed (:mod:`.slicing`), and fine-tuned.  Edges through grouped convs
(ResNeXt, RegNet) keep the same number of open channels in every group
(:meth:`.gates.ChannelGates.even_strata`, applied after training), so the slices are valid.

Entry point: :func:`gator_prune`.  Saved models are rebuilt by :func:`rebuild_gator`.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, replace
from typing import Any, Iterable

import torch
from torch import nn

from ...errors import PruneConfigError
from ..graph import DependencyGraph, build_graph
from .cost import COSTS, CostModel, flops_cost, layer_geometries, memory_cost
from .gates import INIT_KEEP_PROB, ChannelGates, attach_gates
from .hyper_edges import HyperEdge, find_hyper_edges, ungated_reasons
from .closed_loop import MeasureFn, ShippedGates, gate_rounds, measured_ratio_fn
from .slicing import gate_keep_indices, slice_by_gates
from .train import GateTrainConfig

__all__ = ["GatorOptions", "gator_prune", "gate_keep_indices", "parse_gator_options", "rebuild_gator", "check_ratio",
           "COSTS"]


class MissingDataError(PruneConfigError):
    """``gator@`` was asked for without training data."""


@dataclass(frozen=True)
class GatorOptions:
    """``gator@RATIO+COST[+epochs=N][+finetune=N]``: what to reach and how long to train."""

    ratio: float
    cost: str = "latency"
    max_epochs: int = 40
    finetune_epochs: int = 8
    gate_lr: float = 0.1
    lr: float = 1e-3
    lambda0: float = 1.0
    lambda_growth: float = 1.02
    seed: int = 0
    rounds: int = 2  # closed-loop rounds against the measured latency (+latency with a host target)
    tolerance: float = 0.02  # measured ratio accepted up to ratio + tolerance

    @property
    def label(self) -> str:
        s = f"gator@{self.ratio:g}" + ("" if self.cost == "latency" else f"+{self.cost}")
        if self.max_epochs != GatorOptions.max_epochs:
            s += f"+epochs{self.max_epochs}"
        if self.finetune_epochs != GatorOptions.finetune_epochs:
            s += f"+finetune{self.finetune_epochs}"
        if self.rounds != GatorOptions.rounds:
            s += f"+rounds{self.rounds}"
        return s


def check_ratio(ratio: Any) -> float:
    try:
        r = float(ratio)
    except (TypeError, ValueError):
        raise PruneConfigError(f"gator cost ratio must be a number in (0, 1), got {ratio!r}") from None
    if not (0.0 < r < 1.0):
        raise PruneConfigError(f"gator cost ratio must be in (0, 1) (the cost of the pruned model over the "
                               f"dense one, e.g. gator@0.5), got {r:g}")
    return r


def parse_gator_options(ratio: Any, options: Iterable[str] = ()) -> GatorOptions:
    """Options after the ratio (pattern ``+`` tokens): a cost name, ``epochsN`` (at most N gate
    epochs), ``finetuneN`` (N fine-tuning epochs of the sliced model), ``roundsN`` (at most N more
    rounds of gate training when the compiled latency misses the ratio; 0: no measurement)."""
    o = GatorOptions(check_ratio(ratio))
    for opt in options:
        text = str(opt).strip().lower()
        m = re.fullmatch(r"(epochs|finetune|rounds)(\d+)", text)
        if text in COSTS:
            o = replace(o, cost=text)
        elif m and m.group(1) == "epochs":
            o = replace(o, max_epochs=int(m.group(2)))
        elif m and m.group(1) == "rounds":
            o = replace(o, rounds=int(m.group(2)))
        elif m:
            o = replace(o, finetune_epochs=int(m.group(2)))
        else:
            raise PruneConfigError(f"unknown gator option {opt!r}: the cost is one of {', '.join(COSTS)} "
                                   "(e.g. gator@0.5+flops); other options: +epochsN, +finetuneN, +roundsN")
    return o


def train_loader_of(data: Any) -> Iterable:
    """The training batches in ``data`` (a Dataset, a (train, val) pair, or a loader); error when None."""
    if data is None:
        raise MissingDataError(
            "gator@ trains channel gates and needs training data: pass data= (a tvmprune.dataset.Dataset or a "
            "(train_loader, val_loader) pair); on the command line give --dataset builtin (the bundled digits), "
            "an ImageFolder directory, or path/to/file.py:factory")
    if hasattr(data, "train"):
        return data.train
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0]
    return data


def _cost_model(model: nn.Module, graph: DependencyGraph, edges: list[HyperEdge], cost: str,
                example_input: torch.Tensor, target: Any, progress: bool) -> CostModel:
    layers = layer_geometries(model, graph, edges, example_input)
    sizes = [e.size for e in edges]
    if cost == "flops":
        return CostModel(layers, sizes, flops_cost, cost)
    if cost == "memory":
        return CostModel(layers, sizes, memory_cost, cost)
    from .latency_table import latency_cost_fn, latency_fits

    fits = latency_fits(layers, target if target is not None else "x86", int(example_input.shape[0]), progress,
                        channel_quantum(cost, target))
    return CostModel(layers, sizes, latency_cost_fn(fits), cost)


def channel_quantum(cost: str, target: Any) -> int:
    """Open channel counts are rounded to multiples of this (``+latency`` only): half the target's
    fp32 SIMD lanes (8 on AVX-512), the widths the dense conv kernel vectorises without a tail."""
    if cost != "latency":
        return 1
    from ...target import get_target

    return max(1, get_target(target if target is not None else "x86").vector_lanes // 2)


def gator_prune(model: nn.Module, ratio: float, cost: str = "latency", example_input: torch.Tensor | None = None,
                data: Any = None, target: Any = None, progress: bool = False,
                options: GatorOptions | None = None) -> "PruneResult":
    """Gator-prune a copy of ``model`` to ``ratio`` of its dense cost; the input model is unchanged.

    Args:
        ratio: target cost of the pruned model over the dense model's, in (0, 1).
        cost: ``latency`` (tvmprune kernels timed on ``target``), ``flops`` or ``memory``.
        example_input: ``N x C x H x W`` tensor for tracing and layer sizes (default 1x3x224x224 zeros).
        data: training data: a :class:`tvmprune.dataset.Dataset`, ``(train, val)`` loaders, or a loader
            yielding ``(inputs, labels)``.
        target: compile target for the latency table (name, dict or NamedTarget; default ``x86``).
        options: all knobs at once (overrides ``ratio`` / ``cost``).

    Returns:
        PruneResult whose ``.model`` is physically smaller (a ``torch.fx.GraphModule`` when blocks were
        removed), in eval mode; ``config`` holds the kept channels, removed groups and the cost trajectory.

    Raises:
        PruneConfigError: ratio outside (0, 1), unknown cost, no data (:class:`MissingDataError`).
    """
    opts = options or parse_gator_options(ratio, [cost] if cost else [])
    loader = train_loader_of(data)
    m = copy.deepcopy(model).eval()
    if example_input is None:
        from ..graph import default_example_input

        example_input = default_example_input(m)
    return apply_gator(m, build_graph(m, example_input), opts, example_input, loader, target, progress)


def apply_gator(model: nn.Module, graph: DependencyGraph, opts: GatorOptions, example_input: torch.Tensor,
                loader: Iterable, target: Any, progress: bool) -> "PruneResult":
    """Gate, train, slice and fine-tune ``model`` (a private copy, changed in place); see :func:`gator_prune`.

    The shipped (rounded, sliced) model's predicted cost is at most the ratio (:mod:`.enforce`); with
    ``+latency`` and a ``target`` that runs here, it is also compiled and timed against dense, and
    a measured miss trains on to a lower internal target (:mod:`.closed_loop`, ``opts.rounds``).
    """
    from ..result import LayerReport, PruneResult

    mods = dict(model.named_modules())
    original = {n: (mods[n].weight.numel(), isinstance(mods[n], nn.Linear)) for n in graph.layers}
    edges = find_hyper_edges(model, graph)
    if not edges:
        raise PruneConfigError(f"{type(model).__name__} has no channel group that gator can gate "
                               "(every group is frozen or feeds no layer)")
    cm = _cost_model(model, graph, edges, opts.cost, example_input, target, progress)
    gates = ChannelGates(edges, INIT_KEEP_PROB)
    cfg = GateTrainConfig(opts.ratio, opts.max_epochs, opts.lr, opts.gate_lr, opts.lambda0, opts.lambda_growth,
                          opts.seed, progress)
    quantum = channel_quantum(opts.cost, target)
    measure = _measurement(model, opts, example_input, target)
    shipped = gate_rounds(model, graph, gates, cm, loader, cfg, quantum, measure, opts.rounds, opts.tolerance)
    small = shipped.model
    if opts.finetune_epochs:
        from ...dataset import train

        train(small, loader, opts.finetune_epochs, lr=opts.lr, seed=opts.seed)
    config = _config(opts, graph, edges, gates, shipped.keep, shipped.dead, cm, shipped)
    config["gator_channel_quantum"] = quantum
    layers = _layer_reports(original, small, graph, edges, shipped.keep, shipped.dead, LayerReport)
    return PruneResult(small.eval(), layers, config, {}, graph)


def _measurement(model: nn.Module, opts: GatorOptions, example_input: torch.Tensor, target: Any) -> MeasureFn | None:
    """The compiled-latency measurement of the closed loop, or None (not ``+latency``, no target given,
    a target that cannot run here, or ``+rounds0``)."""
    if opts.cost != "latency" or target is None or opts.rounds <= 0:
        return None
    from ...target import get_target

    t = get_target(target)
    if not t.runs_on_host:
        return None
    return measured_ratio_fn(model, tuple(example_input.shape), t)


def _config(opts, graph, edges, gates, keep, dead, cm, shipped: ShippedGates) -> dict:
    counts = gates.open_counts()
    last = shipped.reports[-1]
    trajectory = [t for r in shipped.reports for t in r.trajectory]
    trajectory += [dict(r, kind="shipped", cost_ratio=r["predicted_ratio"]) for r in shipped.rounds]
    return {
        "pattern": opts.label, "kind": "gator", "rate": opts.ratio, "cost": opts.cost,
        "n": 1, "rearrange": False, "global": False,
        "coupled_groups": [g.producers for g in graph.coupled_groups()],
        "gator_keep": {graph.groups[g].name: {"size": graph.groups[g].size, "keep": k.tolist()}
                       for g, k in keep.items() if g not in dead},
        "gator_removed": sorted(graph.groups[g].name for g in dead),
        "gator_edges": [{"name": e.name, "size": e.size, "open": c, "highway": e.is_highway,
                         "removable": e.removable, "why_not_removable": e.why_not_removable}
                        for e, c in zip(edges, counts)],
        "gator_cost_ratio": cm.ratio_of_counts(counts), "gator_cost_dense": cm.dense,
        "gator_reached": cm.ratio_of_counts(counts) <= opts.ratio,
        "gator_steps": sum(r.steps for r in shipped.reports),
        "gator_epochs": round(sum(r.epochs for r in shipped.reports), 2),
        "gator_lambda": last.final_lambda, "gator_trajectory": trajectory, "gator_rounds": shipped.rounds,
        "gator_measured_ratio": shipped.rounds[-1]["measured_ratio"],
        "finetune_epochs": opts.finetune_epochs,
    }


def _layer_reports(original: dict, small, graph, edges, keep, dead, LayerReport) -> list:
    mods = dict(small.named_modules())
    reasons = ungated_reasons(graph, edges)
    touched = {mem.module for g in keep for mem in graph.groups[g].members}
    out = []
    for n in graph.layers:
        full, linear = original[n]
        kind = "linear" if linear else "conv"
        if n not in mods:
            out.append(LayerReport(n, kind, (0,), 0.0, "removed (all channels of its edge closed)"))
            continue
        w = mods[n].weight
        why = None if n in touched else reasons.get(n, "all gates open")
        out.append(LayerReport(n, kind, tuple(w.shape), w.numel() / full, "gator" if why is None else "dense", why))
    return out


def rebuild_gator(model: nn.Module, example_input: torch.Tensor, config: dict) -> nn.Module:
    """Re-apply a saved gator config (kept channels, removed groups) to a freshly built ``model``.

    Raises:
        PruneConfigError: the config does not match the model.
    """
    from ..filter import kept_indices_of

    graph = build_graph(model, example_input)
    keep = kept_indices_of(graph, config.get("gator_keep") or {},
                           mismatch=lambda name: f"gator channel group {name!r} does not match the model",
                           bad_indices=lambda name: f"bad kept channel indices for gator group {name!r}")
    dead: set[int] = set()
    for name in config.get("gator_removed") or []:
        g = graph.group_by_name(name)
        if g is None or not g.prunable:
            raise PruneConfigError(f"removed gator channel group {name!r} does not match the model")
        dead.add(g.gid)
        keep[g.gid] = torch.zeros(0, dtype=torch.long)
    return slice_by_gates(model, graph, keep, dead)
