"""Rule for one reduction along the innermost, contiguous axis (a mean / sum over the last axes, e.g.
a global average pool over an NCHW map): the reduction is split into ``vec`` lanes and ``rfactor``-ed,
so the long part runs as vector adds into ``vec`` partial sums and only the last ``vec`` are added
serially::

    parallel fuse(S..):
      for r_o: vectorize r_i: partial[r_i] += x[.., r_o * vec + r_i]
      for r_i: out += partial[r_i]
      consumer (e.g. mean's divide)
"""

from __future__ import annotations

from typing import Any

from .loops import MIN_PARALLEL_WORK, const_extent, vector_factor
from .rule import ScheduleContext, single_reduction


def lane_reduction_rule(sch: Any, ctx: ScheduleContext) -> bool:
    """Vectorised (rfactor) schedule of a single ``S..R..`` reduction reading its reduced axis contiguously."""
    found = single_reduction(sch)
    if found is None:
        return False
    red, n_s, s_loops, r_loops = found.red, found.n_spatial, found.s_loops, found.r_loops
    r = sch.fuse(*r_loops) if len(r_loops) > 1 else r_loops[0]
    red_len = const_extent(sch, r)
    vec = vector_factor(red_len, ctx.lanes)
    if vec < 2 or vec == red_len:
        return False
    work = red_len
    for lp in s_loops:
        work *= const_extent(sch, lp)
    r_o, r_i = sch.split(r, factors=[None, vec])
    rf = sch.rfactor(r_i, factor_axis=n_s)  # partial[.., r_i]: r_i becomes a spatial axis of the rf block
    final_s = sch.get_loops(red.block_rv)[:n_s]
    fused = sch.fuse(*final_s) if len(final_s) > 1 else final_s[0]
    sch.compute_at(rf, fused)
    if found.consumer is not None:
        sch.reverse_compute_at(found.consumer.block_rv, fused)
    if work >= MIN_PARALLEL_WORK and const_extent(sch, fused) >= 2:
        sch.parallel(fused)
    inner = sch.get_loops(rf)[-2:]
    if const_extent(sch, inner[-1]) != vec or const_extent(sch, inner[0]) == vec:
        sch.reorder(inner[1], inner[0])  # lanes innermost (ambiguous extents: rfactor keeps r_o outer)
    rf_loops = sch.get_loops(rf)
    sch.vectorize(rf_loops[-1])
    init = sch.decompose_reduction(rf, rf_loops[-2])
    sch.vectorize(sch.get_loops(init)[-1])
    return True
