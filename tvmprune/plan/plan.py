"""The plan stage: a format per layer (by a planner) and its kernel (from the family registry)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from ..kernels.format import Format
from ..kernels.registry import build_kernel
from ..lower.chains import LayerMatch
from ..lower.lower import LoweredModel
from ..target import NamedTarget, get_target
from .layer import LayerPlan, Planner

ScheduleSource = Callable[..., Any]  # (kernel, target) -> tuned PrimFunc | None, as schedule() takes


@dataclass
class PlannedModel:
    """A lowered model with a plan (and, unless it stays a Relax op, a kernel) per layer.

    ``plans[i]`` belongs to ``lowered.layers[i]``.
    """

    lowered: LoweredModel
    target: NamedTarget
    plans: list[LayerPlan]

    def planned_layers(self) -> list[tuple[LayerMatch, LayerPlan]]:
        """The (layer, plan) pairs whose plan has a kernel."""
        return [(m, p) for m, p in zip(self.lowered.layers, self.plans) if p.kernel is not None]


def plan_layer(match: LayerMatch, target: NamedTarget, planner: Planner,
               schedule_source: ScheduleSource | None = None) -> LayerPlan:
    """The plan of one layer, with its kernel built (``Format.RELAX`` with the reason when it gets none).

    Planners marked ``uses_schedule_source`` (the measuring ones, :mod:`.measured`) also get the
    build's ``schedule_source``, so they time each candidate with the schedule it will run with.
    """
    if match.unsupported:
        return LayerPlan(match.info, Format.RELAX, reason=match.unsupported)
    if getattr(planner, "uses_schedule_source", False):
        p = planner(match.info, target, schedule_source=schedule_source)
    else:
        p = planner(match.info, target)
    if p.fmt == Format.RELAX:
        return p
    p.kernel = build_kernel(p, target)
    if p.kernel is None:
        p.fmt, p.reason = Format.RELAX, p.reason or "no kernel"
    return p


def plan(lowered: LoweredModel, target: "NamedTarget | str", planner: Planner | None = None,
         log: Callable[[str], None] | None = None, schedule_source: ScheduleSource | None = None) -> PlannedModel:
    """Plan every layer of ``lowered`` for ``target`` (default planner: :func:`.planners.choose_format`,
    the roofline prediction alone; ``schedule_source``: the schedules the build will apply, for
    planners that measure)."""
    from .planners import choose_format

    t = get_target(target)
    t0 = time.time()
    from ..console import progress

    plans = [plan_layer(m, t, planner or choose_format, schedule_source)
             for m in progress(lowered.layers, desc="planning layers", unit="layer")]
    if log:
        log(f"planned {len(plans)} conv/linear layers, {sum(p.kernel is not None for p in plans)} kernels "
            f"({time.time() - t0:.1f} s)")
    return PlannedModel(lowered=lowered, target=t, plans=plans)
