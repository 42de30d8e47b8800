"""Rule for reductions whose innermost output axis is contiguous in what they read: pooling
(max / avg, padding inlined), global / spatial means over NHWC maps, and matmul-like ops left to
Relax (``[.., K] x [K, N]``, vector along N).

Loops of the reduction block ``S.. S_last R..`` become::

    parallel fuse(S.., [w_o], c_o)          # w: the axis before c, tiled when the reduction is long
      for R..:                               # the reduction, over a register tile
        unroll w_i: vectorize c_i            # acc[w_i, c_i] in a local buffer (registers)
      epilogue (write-back or the fused consumer, e.g. mean's divide), vectorised

The accumulator tile lives in a ``local`` cache (``cache_write``), so each output vector is loaded
and stored once instead of once per reduction step.
"""

from __future__ import annotations

from typing import Any

from .loops import MIN_PARALLEL_WORK, const_extent, vector_factor
from .rule import ScheduleContext, single_reduction

# Register budget for the accumulator tile (fp32 vectors); the rest holds loads and broadcasts.
ACC_VECTORS = 12
MIN_TILED_REDUCTION = 32  # below this reduction length a register tile does not pay


def _uses(expr: Any, var: Any) -> bool:
    from tvm.s_tir.dlight.analysis.common_analysis import collect_vars_used_in_prim_expr

    return any(v.same_as(var) for v in collect_vars_used_in_prim_expr(expr))


def vector_axis_is_contiguous(block: Any, var: Any) -> bool:
    """True when every read that depends on ``var`` has ``var`` in its innermost index (so a vector
    along ``var`` is a contiguous load, or a broadcast for reads that do not depend on it)."""
    for region in block.reads:
        idx = [r.min for r in region.region]
        if not idx:
            continue
        if any(_uses(e, var) for e in idx) and not _uses(idx[-1], var):
            return False
    last_write = block.writes[0].region[-1].min
    return _uses(last_write, var)


def _tile_rows(sch: Any, s_loops: list[Any], red_len: int, vec: int, ctx: ScheduleContext) -> int:
    """Rows of the register tile along the second-innermost spatial axis (1: no tile)."""
    if red_len < MIN_TILED_REDUCTION or len(s_loops) < 2:
        return 1
    per_row = max(vec // ctx.lanes, 1)
    ext = const_extent(sch, s_loops[-2])
    for t in range(min(ACC_VECTORS // per_row, ext), 1, -1):
        if ext % t == 0:
            return t
    return 1


def channel_reduction_rule(sch: Any, ctx: ScheduleContext) -> bool:
    """Schedule one reduction block (+ at most one fused consumer) vectorised along its innermost
    spatial axis; decline when the shape does not fit that pattern."""
    found = single_reduction(sch)
    if found is None:
        return False
    red, n_s, s_loops, r_loops = found.red, found.n_spatial, found.s_loops, found.r_loops
    block = sch.get(red.block_rv)
    if not vector_axis_is_contiguous(block, block.iter_vars[n_s - 1].var):
        return False
    c_ext = const_extent(sch, s_loops[-1])
    vec = vector_factor(c_ext, ctx.lanes)
    if vec == 0:
        return False
    red_len = 1
    for lp in r_loops:
        red_len *= const_extent(sch, lp)
    work = red_len
    for lp in s_loops:
        work *= const_extent(sch, lp)

    wb = sch.cache_write(red.block_rv, 0, "local")
    out_block = wb
    if found.consumer is not None:
        sch.compute_inline(wb)  # the consumer (e.g. mean's divide) reads the accumulators
        out_block = found.consumer.block_rv
    rows = _tile_rows(sch, s_loops, red_len, vec, ctx)
    c_o, c_i = sch.split(s_loops[-1], factors=[None, vec])
    outer = s_loops[:-1]
    tile = []
    if rows > 1:
        w_o, w_i = sch.split(s_loops[-2], factors=[None, rows])
        outer = s_loops[:-2] + [w_o]
        tile = [w_i]
    sch.reorder(*outer, c_o, *r_loops, *tile, c_i)
    fused = sch.fuse(*outer, c_o) if outer else c_o
    sch.reverse_compute_at(out_block, fused)
    if work >= MIN_PARALLEL_WORK and const_extent(sch, fused) >= 2:
        sch.parallel(fused)
    for t in tile:
        sch.unroll(t)
    sch.vectorize(c_i)
    init = sch.decompose_reduction(red.block_rv, r_loops[0])
    sch.vectorize(sch.get_loops(init)[-1])
    out_loops = sch.get_loops(out_block)
    sch.vectorize(out_loops[-1])
    return True
