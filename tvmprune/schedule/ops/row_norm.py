"""Rule for normalisations along the innermost axis: LayerNorm over channels-last C, softmax, RMS
norm (several reductions over the last axis, then an elementwise pass over the same row)::

    parallel for row in fuse(leading axes):
      for each reduction (sum x, sum (x - mean)^2 / max, sum exp):
        for k_o: vectorize k_i: partial[k_i] (+)= f(x[row, k_o * vec + k_i])    # rfactor
        for k_i: red[row] (+)= partial[k_i]
      for c_o: vectorize c_i: out[row, c] = g(x[row, c], red[row], ...)         # normalise

Every block is computed under the row loop, so a row's statistics stay in registers / L1.
"""

from __future__ import annotations

from typing import Any

from .loops import MIN_PARALLEL_WORK, const_extent, vector_factor
from .rule import ScheduleContext, spatial_blocks


def _rfactor_lanes(sch: Any, block: Any, ctx: ScheduleContext, rank: int) -> Any | None:
    """Split the innermost (reduction) loop of ``block`` into ``vec`` lanes and rfactor them out;
    returns the rf block (None for a row too short to pay)."""
    k = sch.get_loops(block)[-1]
    ext = const_extent(sch, k)
    vec = vector_factor(ext, ctx.lanes)
    if vec < 2 or vec == ext:
        return None
    _, k_i = sch.split(k, factors=[None, vec])
    return sch.rfactor(k_i, factor_axis=rank - 1)


def _vectorise_rf(sch: Any, rf: Any, lanes: int) -> None:
    """Lanes innermost and vectorised, init split off (the loops under the row loop are k_o, k_i)."""
    loops = sch.get_loops(rf)
    if const_extent(sch, loops[-1]) != lanes or const_extent(sch, loops[-2]) == lanes:
        sch.reorder(loops[-1], loops[-2])
        loops = sch.get_loops(rf)
    sch.vectorize(loops[-1])
    init = sch.decompose_reduction(rf, loops[-2])
    sch.vectorize(sch.get_loops(init)[-1])


def _vectorise_row(sch: Any, block: Any, ctx: ScheduleContext) -> None:
    c = sch.get_loops(block)[-1]
    ext = const_extent(sch, c)
    vec = vector_factor(ext, ctx.lanes)
    if vec < 2:
        return
    if vec < ext:
        _, c = sch.split(c, factors=[None, vec])
    sch.vectorize(c)


def row_norm_rule(sch: Any, ctx: ScheduleContext) -> bool:
    """Schedule a PrimFunc whose reductions all reduce the output's innermost axis; decline otherwise."""
    from tvm.s_tir.dlight.analysis import normalize_prim_func

    _, reductions = spatial_blocks(sch)
    if not reductions:
        return False
    infos = normalize_prim_func(sch)
    out = infos[-1]
    rank = len(out.dom_kind())  # unit axes are not counted: a lone row has rank 1
    if not out.is_injective() or rank < 1 or out.dom_kind() != "S" * rank:
        return False
    for b in infos[:-1]:  # row statistics (S..S R; unit axes may show as S) and row-wise stages
        kinds = b.dom_kind()
        body = kinds[:-1] if kinds.endswith("R") else kinds
        if set(body) - {"S"} or len(kinds) > rank + 1 or (not kinds.endswith("R") and len(kinds) > rank):
            return False
    rf_blocks = []
    for b in infos[:-1]:
        if b.dom_kind().endswith("R"):
            rf = _rfactor_lanes(sch, b.block_rv, ctx, rank)
            if rf is not None:
                rf_blocks.append(rf)
    loops = sch.get_loops(out.block_rv)
    width = const_extent(sch, loops[-1])
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    if rank > 1:
        row = sch.fuse(*loops[:-1])
        rows = const_extent(sch, row)
        for b in reversed(blocks[:-1]):
            sch.compute_at(b, row, preserve_unit_loops=False)
        if rows >= 2 and rows * width >= MIN_PARALLEL_WORK:
            sch.parallel(row)  # before the init blocks are split off: parallel() rejects them after
    rf_names = {sch.get(rf).name_hint for rf in rf_blocks}
    for rf in rf_blocks:
        _vectorise_rf(sch, rf, ctx.lanes)
    for b in blocks:
        blk = sch.get(b)
        spatial = all(int(iv.iter_type) == 0 for iv in blk.iter_vars)
        inner = sch.get_loops(b)[-1]
        own_row = rank == 1 or len(sch.get_loops(b)) > 1  # the last loop is not the shared row loop
        if blk.name_hint not in rf_names and spatial and own_row and const_extent(sch, inner) == width:
            _vectorise_row(sch, b, ctx)
    return True
