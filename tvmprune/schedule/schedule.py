"""The schedule stage: a scheduled PrimFunc per kernel of a planned model.

A :data:`ScheduleSource` (``tvmprune.tune.apply.schedule_source_for``: tuning log and shipped
schedules) gives a tuned schedule for a kernel, or None; kernels without one get their
default schedule. The same planned model can be scheduled several times (default vs tuned).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..kernels.base import KernelInstance
from ..plan.plan import PlannedModel
from ..target import NamedTarget

# Returns a scheduled PrimFunc for a kernel, or None to use its default schedule.
ScheduleSource = Callable[[KernelInstance, NamedTarget], Any]


@dataclass
class ScheduledModel:
    """A planned model and a scheduled PrimFunc per kernel name; ``tuned``: layers whose kernel's
    schedule came from the source."""

    planned: PlannedModel
    funcs: dict[str, Any]
    tuned: int = 0


def schedule(planned: PlannedModel, source: ScheduleSource | None = None) -> ScheduledModel:
    """Schedule every kernel of ``planned`` (tuned by ``source`` where it has a record, else default)."""
    funcs: dict[str, Any] = {}
    tuned_names: set[str] = set()
    tuned = 0
    for _, p in planned.planned_layers():
        k = p.kernel
        if k.name not in funcs:
            func = source(k, planned.target) if source else None
            if func is not None:
                tuned_names.add(k.name)
            else:
                func = k.scheduled()
            funcs[k.name] = func.with_attr("global_symbol", k.name)
        tuned += k.name in tuned_names
    return ScheduledModel(planned=planned, funcs=funcs, tuned=tuned)
