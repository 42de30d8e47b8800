"""Honest planners: a pruned layer gets a sparse kernel only where it is faster than dense on the target.

Two planners share one decision (:func:`decide`):

* ``auto`` (:func:`auto_format`): the roofline model (:func:`.planners.predict_ms`) proposes; where it
  predicts a sparse format, dense and the ``MEASURE_TOP`` sparse formats it predicts fastest are
  timed on this machine, each with the schedule the build will give it (the tuned / shipped record
  from the schedule source, else the default schedule), and sparse is kept only when it is measured
  at most ``MEASURED_MARGIN`` x the dense time. Where dense is predicted, nothing is timed.
* ``measured`` (:func:`measured_format`): the same measurement for every pruned layer, also where
  the model predicts dense.

Targets whose code cannot run here (cross-compiling) are decided by the prediction with the
calibrated (`tvmprune calibrate`) or built-in roofline parameters and a conservative margin: sparse
only when predicted at most ``PREDICTED_MARGIN`` x dense. ``LayerPlan.basis`` says which was used.

Times are cached per target and kernel workload (computation + sparsity structure + the scheduled
function) under ``$TVMPRUNE_CACHE_DIR/kernel_times/``, so recompiling (or another model with the
same layer) measures nothing. The timer is injectable (``timer=``) for tests of the decision.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

from ..cache_dir import cache_dir, target_key
from ..kernels.base import KernelInstance
from ..kernels.format import Format
from ..kernels.identity import structural_hash
from ..kernels.registry import family
from ..target import NamedTarget
from .layer import LayerInfo, LayerPlan, Planner
from .planners import choose_format, predict_ms
from .roofline import params_for

MEASURE_TOP = 2  # sparse formats timed besides dense: the ones predicted fastest
# Sparse is kept only when its measured time is at most this fraction of dense: kernel-alone times
# read 5-10% apart from run to run on a shared machine, and a layer alone hides the model's cache effects.
MEASURED_MARGIN = 0.9
# Cross-compiled targets (no measurement): the roofline call is right in ~95% of cases on x86, with
# errors up to ~2x on 1x1 layers (mobilenet_v2 1x4@0.5): only a clear predicted win goes sparse.
PREDICTED_MARGIN = 0.7

#: ``timer(kernel, scheduled PrimFunc, layer, target) -> ms`` of one kernel call on this machine
Timer = Callable[[KernelInstance, Any, LayerInfo, NamedTarget], float]
#: ``source(kernel, target) -> PrimFunc | None``: the tuned schedule the build applies (schedule stage)
ScheduleSource = Callable[[KernelInstance, NamedTarget], Any]


def kernel_times_dir(target: NamedTarget) -> Path:
    return cache_dir("kernel_times", f"{target_key(target)}-{target.cores}c")


def _cache_key(inst: KernelInstance, func: Any, target: NamedTarget) -> str:
    tgt = json.dumps(target.to_json(), sort_keys=True, default=str)
    sched = structural_hash(func) if func is not None else "default"
    return hashlib.sha1(f"{inst.workload_key}|{sched}|{tgt}".encode()).hexdigest()[:20]


def measured_kernel_ms(inst: KernelInstance, info: LayerInfo, target: NamedTarget, func: Any = None) -> float:
    """Median ms of ``inst`` scheduled as ``func`` (default: its default schedule) on this machine,
    from the cache when measured before. Host targets only."""
    from ..measure.kernel import time_kernel

    f = kernel_times_dir(target) / f"{_cache_key(inst, func, target)}.json"
    try:
        return float(json.loads(f.read_text())["ms"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    residual = bool(info.op == "conv2d" and info.spec.residual)
    ms = time_kernel(inst, info.data_shape, target, residual=residual, func=func, repeat=5)
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps({"ms": ms, "kernel": inst.name, "format": str(inst.format),
                                 "schedule": "default" if func is None else "tuned"}))
    except OSError:
        pass  # an unwritable cache only costs time
    return ms


def cached_timer(inst: KernelInstance, func: Any, info: LayerInfo, target: NamedTarget) -> float:
    """The default :data:`Timer`: :func:`measured_kernel_ms` (cached per workload and schedule)."""
    return measured_kernel_ms(inst, info, target, func)


def _candidates(pred: dict[Format, float]) -> list[Format]:
    sparse = sorted((f for f in pred if f != Format.DENSE), key=pred.get)[:MEASURE_TOP]
    return [Format.DENSE] + sparse


def _label(info: LayerInfo, fmt: Format) -> str:
    return fmt.label(info.block_n if fmt.blocked else 0)


def time_candidates(info: LayerInfo, target: NamedTarget, formats: list[Format],
                    source: ScheduleSource | None, timer: Timer) -> dict[Format, float]:
    """ms per format of ``info``'s kernels, each with the schedule the build gives it
    (``source``'s tuned PrimFunc, else the default schedule)."""
    times: dict[Format, float] = {}
    for fmt in formats:
        inst = family(fmt, info.op).build(info, info.block_n if fmt.blocked else 0, target)
        func = source(inst, target) if source is not None else None
        times[fmt] = timer(inst, func, info, target)
    return times


def decide(info: LayerInfo, costs: dict[Format, float], margin: float) -> tuple[Format, str]:
    """The format to use from per-format ``costs`` (measured or predicted ms, dense included): the
    cheapest sparse one when it costs at most ``margin`` x dense, else dense; and why, in words."""
    dense = costs[Format.DENSE]
    sparse = {f: ms for f, ms in costs.items() if f != Format.DENSE}
    listed = ", ".join(f"{_label(info, f)} {ms:.3f}" for f, ms in sorted(costs.items(), key=lambda kv: kv[1]))
    if sparse:
        best = min(sparse, key=sparse.get)
        if sparse[best] <= margin * dense:
            return best, f"{_label(info, best)} {dense / sparse[best]:.2f}x faster than dense ({listed} ms)"
        return Format.DENSE, f"sparse not {1 / margin:.2f}x faster than dense ({listed} ms)"
    return Format.DENSE, f"no sparse candidate ({listed} ms)"


def _predicted_plan(info: LayerInfo, target: NamedTarget) -> LayerPlan:
    """Cross-compiled layer: the prediction decides, with :data:`PREDICTED_MARGIN`."""
    pred = predict_ms(info, target)
    fmt, why = decide(info, pred, PREDICTED_MARGIN)
    basis = f"predicted ({params_for(target).source}, margin {PREDICTED_MARGIN})"
    return LayerPlan(info, fmt, n=info.block_n if fmt.blocked else 0, predicted_ms=pred, basis=basis,
                     reason=f"{why}; {target.name} code cannot be timed on this machine")


def _honest_format(info: LayerInfo, target: NamedTarget, always: bool, source: ScheduleSource | None,
                   timer: Timer | None) -> LayerPlan:
    if info.groups > 1 or (info.density >= 1.0 and info.interspace is None):  # interspace: zeros in c
        p = choose_format(info, target)
        p.basis = "shape"
        return p
    if not target.runs_on_host:
        return _predicted_plan(info, target)
    pred = predict_ms(info, target)
    if not always and min(pred, key=pred.get) == Format.DENSE:
        p = choose_format(info, target)
        p.basis = f"predicted ({params_for(target).source})"
        return p
    times = time_candidates(info, target, _candidates(pred), source, timer or cached_timer)
    fmt, why = decide(info, times, MEASURED_MARGIN)
    sched = "tuned/shipped or default" if source is not None else "default"
    return LayerPlan(info, fmt, n=info.block_n if fmt.blocked else 0, reason=f"measured: {why}",
                     predicted_ms=pred, measured_ms=times,
                     basis=f"measured here ({sched} schedules, margin {MEASURED_MARGIN})")


def honest_planner(always: bool, timer: Timer | None = None) -> Planner:
    """A planner (``auto`` with ``always`` False, ``measured`` with True) that takes the build's
    ``schedule_source`` keyword (see :func:`.plan.plan_layer`); ``timer`` replaces the kernel timing."""

    def planner(info: LayerInfo, target: NamedTarget, schedule_source: ScheduleSource | None = None) -> LayerPlan:
        return _honest_format(info, target, always, schedule_source, timer)

    planner.uses_schedule_source = True  # type: ignore[attr-defined]
    planner.__doc__ = (measured_format if always else auto_format).__doc__
    return planner


def auto_format(info: LayerInfo, target: NamedTarget, schedule_source: ScheduleSource | None = None) -> LayerPlan:
    """Roofline proposes; a predicted sparse format is kept only where measured faster than dense here."""
    return _honest_format(info, target, False, schedule_source, None)


def measured_format(info: LayerInfo, target: NamedTarget, schedule_source: ScheduleSource | None = None) -> LayerPlan:
    """Time dense and the best predicted sparse kernels of every pruned layer; sparse only where faster."""
    return _honest_format(info, target, True, schedule_source, None)


auto_format.uses_schedule_source = True  # type: ignore[attr-defined]
measured_format.uses_schedule_source = True  # type: ignore[attr-defined]
