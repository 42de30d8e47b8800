"""Gate training closed around measurement: the compiled model's latency, not the table's, meets RATIO.

The latency table (:mod:`.latency_table`) times each conv alone; the compiled model also
spends time the gates cannot remove (pooling, adds, the classifier, the VM), so a model
whose *predicted* cost is ``RATIO`` runs slower than ``RATIO`` of dense.  Each round here
trains the gates to an internal target, rounds them so the shipped model's predicted cost
meets it (:func:`.enforce.round_to_target`), slices, and (when a measurement is given)
compiles and times the slice side by side with the dense model.  A miss lowers the
internal target along the line through dense ``(1, 1)`` and this round's (predicted,
measured) point (one round lowers it by at most 0.1), and training continues from the
same gates; at most ``rounds`` more rounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

import torch
from torch import nn

from ..graph import DependencyGraph
from .cost import CostModel
from .enforce import round_to_target
from .gates import ChannelGates
from .slicing import gate_keep_indices, slice_by_gates
from .train import GateTrainConfig, GateTrainReport, train_gates

__all__ = ["ShippedGates", "gate_rounds", "next_internal_target", "MeasureFn", "measured_ratio_fn"]

MeasureFn = Callable[[nn.Module], float]  # sliced model -> compiled latency / dense compiled latency


@dataclass
class ShippedGates:
    """What :func:`gate_rounds` ends with: the sliced model, its channels, and how it got there."""

    model: nn.Module
    keep: dict[int, torch.Tensor]
    dead: set[int]
    reports: list[GateTrainReport]
    rounds: list[dict] = field(default_factory=list)  # internal target, predicted / measured ratio per round

    @property
    def reached(self) -> bool:
        return all(r.reached for r in self.reports)


def next_internal_target(ratio: float, predicted: float, measured: float, floor: float,
                         max_step: float = 0.1) -> float:
    """The predicted cost to aim at next so that the measured one lands on ``ratio``.

    Measured ratio is taken as linear in the predicted one through dense ``(1, 1)`` and this
    round's ``(predicted, measured)``.  The answer is at least the miss ``measured - ratio``
    below ``predicted``, at most ``max_step`` below it (one noisy timing must not collapse the
    gates), and never under ``floor``.
    """
    miss = measured - ratio
    aim = predicted - miss
    if measured < 1.0 and predicted < 1.0:
        slope = (1.0 - measured) / (1.0 - predicted)
        aim = min(aim, 1.0 - (1.0 - ratio) / slope)
    return max(floor, predicted - max_step, aim)


def _ship(model: nn.Module, graph: DependencyGraph, gates: ChannelGates, cost: CostModel, target: float,
          quantum: int) -> tuple[nn.Module, dict, set, list[dict]]:
    closing = round_to_target(gates, cost, target, quantum)
    keep, dead = gate_keep_indices(gates)
    return slice_by_gates(model, graph, keep, dead), keep, dead, closing


def gate_rounds(model: nn.Module, graph: DependencyGraph, gates: ChannelGates, cost: CostModel,
                loader: Iterable, cfg: GateTrainConfig, quantum: int, measure: MeasureFn | None = None,
                rounds: int = 2, tolerance: float = 0.02, floor: float | None = None) -> ShippedGates:
    """Train, round to the target, slice; with ``measure``, repeat against the measured ratio.

    ``cfg.ratio`` is the requested ratio; a round's measured ratio above ``cfg.ratio + tolerance``
    lowers the internal target (:func:`next_internal_target`, not under ``floor``, default 0.6 x the
    ratio) and trains on, at most ``rounds`` times; each round's lambda starts again at
    ``cfg.lambda0`` (the last round's, grown large, closed most gates in a few steps).
    ``model`` and ``gates`` change in place.
    """
    ratio, internal = cfg.ratio, cfg.ratio
    floor = 0.6 * ratio if floor is None else floor
    reports: list[GateTrainReport] = []
    log: list[dict] = []
    for r in range(rounds + 1):
        report = train_gates(model, gates, cost, loader, replace(cfg, ratio=internal))
        for t in report.trajectory:
            t["round"] = r
        reports.append(report)
        small, keep, dead, closing = _ship(model, graph, gates, cost, internal, quantum)
        predicted = cost.ratio_of_counts(gates.open_counts())
        measured = float(measure(small)) if measure is not None else None
        log.append({"round": r, "internal_target": internal, "trained_ratio": report.final_ratio,
                    "predicted_ratio": predicted, "measured_ratio": measured,
                    "closed_after_rounding": sum(c["closed"] for c in closing),  # < 0: reopened
                    "open_channels": sum(gates.open_counts())})
        if measured is None or measured <= ratio + tolerance or r == rounds or internal <= floor:
            break
        internal = next_internal_target(ratio, predicted, measured, floor)
    return ShippedGates(small, keep, dead, reports, log)


def measured_ratio_fn(dense: nn.Module, input_shape: tuple[int, ...], target: Any, repeat: int = 80,
                      rounds: int = 16) -> MeasureFn:
    """A :data:`MeasureFn`: compile the candidate for ``target`` as ``compare`` would (shipped schedules
    where they apply) and time it in interleaved rounds with ``dense`` (compiled once, on first use).

    The ratio is of the two 25th percentiles (load from other processes only adds time, so the
    lower quartile is the steadier figure on a shared machine).  ``target`` must run on this machine.
    """
    from ...compiler import compile_model
    from ...measure.runners import TvmRunner, time_interleaved
    from ...tune.apply import schedule_source_for

    source = schedule_source_for(None, target, use_shipped=True, log=None)
    cache: dict[str, TvmRunner] = {}

    def runner(m: nn.Module, tag: str) -> TvmRunner:
        cm = compile_model(m.eval(), input_shape, target, schedule_source=source, pattern=tag)
        return TvmRunner(cm, tag, input_shape, warmup=5)

    def measure(small: nn.Module) -> float:
        if "dense" not in cache:
            cache["dense"] = runner(dense, "dense")
        cand = runner(small, "gator candidate")
        try:
            d, c = time_interleaved([cache["dense"], cand], repeat, rounds)
        finally:
            cand.close()
        return c["p25_ms"] / d["p25_ms"]

    return measure
