"""Rule for elementwise, broadcast and layout ops (and fused chains of them): one loop nest per output.

Schedule (per remaining block, producers inlined first): the innermost output axis is split into
``vec`` lanes and vectorised; every outer loop (plus the split's outer part) is fused into one
parallel loop. When the innermost axis has no usable vector factor (e.g. an odd ``7`` of a 7x7 map
in NCHW), all loops are fused first and the factor is taken on the flat, contiguous output.
"""

from __future__ import annotations

from typing import Any

from .loops import MIN_PARALLEL_WORK, const_extent, vector_factor
from .rule import ScheduleContext, spatial_blocks


def schedule_injective_block(sch: Any, block: Any, ctx: ScheduleContext) -> None:
    """Parallel outer / vectorised inner schedule of one injective block whose loops are its own."""
    loops = sch.get_loops(block)
    if not loops:
        return
    total = 1
    for lp in loops:
        total *= max(const_extent(sch, lp), 1)
    inner = loops[-1]
    vec = vector_factor(const_extent(sch, inner), ctx.lanes)
    if vec < min(4, ctx.lanes) and len(loops) > 1:
        inner = sch.fuse(*loops)
        loops = [inner]
        vec = vector_factor(total, ctx.lanes)
    outer = list(loops[:-1])
    if vec and vec < const_extent(sch, inner):
        o, inner = sch.split(inner, factors=[None, vec])
        outer.append(o)
    if vec:
        sch.vectorize(inner)
    if outer:
        fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
        if total >= MIN_PARALLEL_WORK and const_extent(sch, fused) >= 2:
            sch.parallel(fused)


def injective_rule(sch: Any, ctx: ScheduleContext) -> bool:
    """Schedule a PrimFunc made only of injective blocks; decline (False) when it has a reduction."""
    injective, reductions = spatial_blocks(sch)
    if reductions:
        return False
    for b in injective:
        schedule_injective_block(sch, b.block_rv, ctx)
    return True
