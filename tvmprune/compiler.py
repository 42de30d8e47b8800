"""Compile a (pruned) PyTorch model into a deployable TVM module: the stages, wired.

    lower (import + find layers, once)  ->  plan (format + kernel per layer)
    ->  schedule (tuned record or default)  ->  build (Relax rewrite + tvm.compile)  ->  export

Each stage returns a typed record (:class:`LoweredModel`, :class:`PlannedModel`,
:class:`ScheduledModel`, :class:`CompiledModel`); commands that need a model several ways
(tune: default vs tuned; compare: tasks, then the build) lower it once and reuse the record.
"""

from __future__ import annotations

from typing import Any, Callable

from .build.build import CompiledModel, build
from .build.module_dir import LoadedModule, ensure_writable_dir, load_compiled, read_meta
from .lower.lower import LoweredModel, lower
from .plan.layer import Planner
from .plan.plan import PlannedModel, plan
from .schedule.schedule import ScheduledModel, ScheduleSource, schedule
from .target import NamedTarget

__all__ = ["CompiledModel", "LoadedModule", "LoweredModel", "PlannedModel", "ScheduledModel", "ScheduleSource",
           "build", "compile_model", "ensure_writable_dir", "load_compiled", "lower", "plan",
           "read_meta", "schedule"]


def compile_model(
    model: Any,
    input_shape: tuple[int, ...],
    target: "NamedTarget | str",
    planner: Planner | None = None,
    schedule_source: ScheduleSource | None = None,
    model_spec: str = "",
    pattern: str = "dense",
    extra_meta: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> CompiledModel:
    """Compile a PyTorch model (pruned or not) for ``target``.

    Args:
        model: ``torch.nn.Module`` (eval mode is set).
        input_shape: NCHW input shape.
        target: named target or :class:`NamedTarget`.
        planner: per-layer format choice (default: the roofline model,
            :func:`tvmprune.plan.planners.choose_format`).
        schedule_source: gives a tuned schedule for a kernel (from a tuning database), or
            None for the default schedule.
        model_spec, pattern, extra_meta: recorded in ``meta.json``.
        log: progress messages (e.g. ``print``).
    """
    planned = plan(lower(model, input_shape, log=log), target, planner, schedule_source=schedule_source)
    scheduled = schedule(planned, schedule_source)
    if log:
        log(f"lowered {len(planned.plans)} conv/linear layers to kernels ({scheduled.tuned} tuned schedules)")
    return build(scheduled, model_spec=model_spec, pattern=pattern, extra_meta=extra_meta, log=log)
