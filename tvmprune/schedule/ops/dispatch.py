"""Give every PrimFunc that is not one of tvmprune's kernels a CPU schedule, and say how.

Rules are tried in order on a fresh schedule each; the first that accepts wins:

1. ``injective``: elementwise / broadcast / layout ops and fused chains of them;
2. ``channel-reduction``: pooling, spatial means, matmul-like ops (vector along the output's
   innermost axis, register tile);
3. ``lane-reduction``: one reduction along the innermost axis (rfactor into vector partial sums);
4. ``row-norm``: LayerNorm / softmax: several reductions along the innermost axis and the
   normalisation of the same row, all under one parallel row loop, vectorised (rfactor);
5. ``row-reduction``: other reductions along the innermost axis (dlight CPU);
6. ``fallback``: parallel leading spatial loops, vectorised innermost spatial loop.

Functions already scheduled (our kernels, marked with :data:`KERNEL_ATTR`, or anything carrying
``tirx.is_scheduled``) are left as they are.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

from .fallback import fallback_rule
from .injective import injective_rule
from .lane_reduction import lane_reduction_rule
from .loops import loop_facts
from .reduction import channel_reduction_rule
from .row_norm import row_norm_rule
from .row_reduction import row_reduction_rule
from .rule import ScheduleContext

KERNEL_ATTR = "tvmprune.kernel"  # set on our kernels' PrimFuncs: the scheduler skips them


@dataclass(frozen=True)
class ScheduleRecord:
    """How one non-kernel PrimFunc was scheduled (for ``compile --explain``).

    ``parallel`` / ``vector``: extent of its largest parallel / vectorised loop (0: none).
    """

    func: str
    rule: str
    parallel: int
    vector: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _is_scheduled(func: Any) -> bool:
    attrs = func.attrs or {}
    return KERNEL_ATTR in attrs or bool(attrs.get("tirx.is_scheduled", 0))


def schedule_func(func: Any, ctx: ScheduleContext, target: Any) -> tuple[Any, str]:
    """Schedule one PrimFunc; returns (scheduled func, rule name). ``none`` when every rule failed."""
    from tvm import s_tir

    simple = (("injective", injective_rule), ("channel-reduction", channel_reduction_rule),
              ("lane-reduction", lane_reduction_rule), ("row-norm", row_norm_rule))
    for name, rule in simple:
        sch = s_tir.Schedule(func)
        try:
            if rule(sch, ctx):
                return sch.mod["main"], name
        except Exception:  # the rule does not fit this function: try the next one
            continue
    try:
        sch = row_reduction_rule(s_tir.Schedule(func), ctx, target)
        if sch is not None:
            return sch.mod["main"], "row-reduction"
    except Exception:
        pass
    sch = s_tir.Schedule(func)
    try:
        fallback_rule(sch, ctx)
        return sch.mod["main"], "fallback"
    except Exception as e:
        warnings.warn(f"no CPU schedule for a PrimFunc ({type(e).__name__}: {e}); it runs serial")
        return func, "none"


def schedule_remaining(mod: Any, target: Any, lanes: int, cores: int) -> tuple[Any, list[ScheduleRecord]]:
    """Schedule every unscheduled PrimFunc of a legalised (and fused) module.

    Args:
        mod: IRModule after ``LegalizeOps`` (+ ``FuseOps``/``FuseTIR``).
        target: the ``tvm.target.Target`` (dlight's rule reads it).
        lanes: fp32 vector lanes of the target; cores: threads to feed.

    Returns:
        The module with every such PrimFunc scheduled and marked ``tirx.is_scheduled``, and one
        :class:`ScheduleRecord` per PrimFunc it scheduled, sorted by name.
    """
    from tvm import tirx

    ctx = ScheduleContext(lanes=lanes, cores=cores)
    records = []
    updates = {}
    for gv, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc) or _is_scheduled(func):
            continue
        new, rule = schedule_func(func, ctx, target)
        facts = loop_facts(new)
        records.append(ScheduleRecord(gv.name_hint, rule, facts.parallel, facts.vector))
        updates[gv] = new.with_attr("tirx.is_scheduled", True)
    for gv, func in updates.items():
        mod[gv] = func
    return mod, sorted(records, key=lambda r: r.func)
