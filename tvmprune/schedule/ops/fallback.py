"""Last-resort rule for anything the specific rules decline (several reductions that do not share
an axis, gathers, odd shapes): each remaining loop nest gets its leading spatial loops fused and
run in parallel, and its innermost loop vectorised when it is spatial."""

from __future__ import annotations

from typing import Any

from .loops import MIN_PARALLEL_WORK, const_extent, vector_factor
from .rule import ScheduleContext, spatial_blocks


def _schedule_nest(sch: Any, info: Any, ctx: ScheduleContext) -> None:
    kinds = info.dom_kind()
    loops = sch.get_loops(info.block_rv)
    if not loops or len(loops) != len(kinds):
        return
    n_s = len(kinds) - len(kinds.lstrip("S"))
    work = 1
    for lp in loops:
        work *= max(const_extent(sch, lp), 1)
    lead = list(loops[:n_s])
    if kinds.endswith("S") and n_s == len(kinds) and len(lead) > 1:
        vec = vector_factor(const_extent(sch, lead[-1]), ctx.lanes)
        if vec:
            o, i = sch.split(lead[-1], factors=[None, vec]) if vec < const_extent(sch, lead[-1]) else (None, lead[-1])
            sch.vectorize(i)
            lead = lead[:-1] + ([o] if o is not None else [])
    if lead and work >= MIN_PARALLEL_WORK:
        fused = sch.fuse(*lead) if len(lead) > 1 else lead[0]
        if const_extent(sch, fused) >= 2:
            sch.parallel(fused)


def fallback_rule(sch: Any, ctx: ScheduleContext) -> bool:
    """Parallel outer / vectorised inner loops on every remaining block, whatever the function is."""
    injective, reductions = spatial_blocks(sch)
    for info in injective + reductions:  # separate loop nests: scheduling one leaves the others' loops
        _schedule_nest(sch, info, ctx)
    return True
