"""The flat-pixel form of the 1xN-spatial conv (stride 1): vectors of output pixels that span
output rows, so a narrow output (7x7, 1x1 at 14x14) does not leave lanes idle.

The row form of :mod:`.block_direct_conv2d` computes whole vectors per output row (7x7 on
16 lanes: 49 of 112 computed pixels are useful). Here output pixel ``(oh, ow)`` is computed at
``q = oh * Wx + ow`` of a grid of row pitch ``Wx`` (:func:`.channel_major.flat_geometry`), where
its input patch starts at ``q`` of every channel plane of the channel-major copy, so the same
flat nonzero offsets apply and ``lanes`` consecutive ``q`` are one unit-stride load (7x7 3x3:
64 computed pixels)::

    xt = pad(data) transposed to [B, Cin, Hx, Wx]          # Hx >= Hp: zero rows below
    parallel for (b, r_chunk):
      for r_o: for q_o: for r_i:                           # r = block of N output channels
        acc[N, V*lanes] = 0                                # N * V registers
        for e in indptr[r] .. indptr[r+1]:                 # nonzero blocks (true length)
          for v in V: x = xt_flat[b, q + off[e]]           # one vector load ...
            for i in N: acc[i, v] += W[e, i] * x           # ... N FMAs (weight broadcast)
        acc_buf[b, r, :, q..] = acc                        # columns ow >= OW are junk
    out[b, oh, ow, c] = act(acc_buf[b, c/N, c%N, oh*Wx + ow] + bias + residual)   # own pass

The accumulator leaves registers through a cache-write stage into ``acc_buf`` and the NHWC
epilogue is its own parallel pass (a flat tile does not map to a box of output pixels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .base import ConvSpec, conv_epilogue
from .channel_major import channel_major_input, schedule_channel_major_input
from .sparse_loops import SPARSE_ROW_ANN, shrink_sparse_loops
from .sparse_space import factor, row_split, unroll
from .target_params import n_vector_registers
from .tiling import pick_tile

if TYPE_CHECKING:
    from ..target import NamedTarget


def flat_block_direct_compute(spec: ConvSpec, bufs: tuple, n: int, n_block_rows: int,
                              geometry: tuple[int, int, int], maxlen: int) -> Any:
    """TE stages ``xt -> acc [B, Cout/n, n, Qp] -> out [B, OH, OW, Cout]``; returns ``out``.
    ``geometry`` is ``(Hx, Qp, Wx)`` of :func:`.channel_major.flat_geometry`."""
    from tvm import te, tirx

    data, W, OFF, PTR, BIAS, RES = bufs
    hx, qp, wx = geometry
    xt = channel_major_input(data, spec, hx, wx)
    e = te.reduce_axis((0, maxlen), name="e")

    def acc_f(b, r, i, q):
        start = PTR[r]
        # the last axis is indexed past Wx on purpose: flat position q plus the flat offset
        val = W[start + e, i] * xt[b, 0, 0, q + OFF[start + e]]
        return te.sum(tirx.if_then_else(e < PTR[r + 1] - start, val, tirx.const(0.0, "float32")), axis=e)

    acc = te.compute((spec.batch, n_block_rows, n, qp), acc_f, name="acc")
    return conv_epilogue(spec.out_shape, lambda b, oh, ow, c: acc[b, c // n, c % n, oh * wx + ow], BIAS, RES,
                         spec.activation, "out")


@dataclass(frozen=True)
class FlatBlockDirectSchedule:
    """Schedules of the flat-pixel 1xN-spatial conv: ``vecs`` vectors of flat pixels x ``n``
    channels per block row (``n * vecs`` accumulator registers); the block-row loop split
    ``[parallel chunks, outside the pixel tiles, inside]``. The default (as many vectors as the
    register budget allows, about 4 tasks per core, full explicit unroll of the tile, no unroll of
    the epilogue pass) is one point of the space (see :mod:`.sparse_space`)."""

    spec: ConvSpec
    n: int
    n_block_rows: int
    lanes: int
    cores: int
    budget: int
    qp: int

    @classmethod
    def for_target(cls, spec: ConvSpec, n: int, n_block_rows: int, qp: int,
                   t: "NamedTarget") -> "FlatBlockDirectSchedule":
        return cls(spec, n, n_block_rows, t.vector_lanes, t.cores, n_vector_registers(t) * 3 // 4, qp)

    @property
    def vec_limit(self) -> int:
        return max(1, min(self.budget // self.n, self.qp // self.lanes))

    def default_knobs(self) -> dict:
        limit, nv = self.vec_limit, self.qp // self.lanes
        vecs = pick_tile(nv, limit)
        vecs = vecs if 2 * vecs > limit else limit  # a padded last tile beats a tile of 1-2 vectors
        chunks = pick_tile(self.n_block_rows, max(1, -(-4 * self.cores // self.spec.batch)))
        return {"vecs": vecs, "split": (chunks, 1, self.n_block_rows // chunks), "unroll": (512, 1),
                "epilogue": (0, 0)}

    def apply(self, sch: Any, knobs: dict) -> None:
        """The loop nest; each knob is a concrete value or None (sampled)."""
        blk = sch.get_sblock("acc")
        bl, rl, il, ql, el = sch.get_loops(blk)
        qv, ql_ = sch.split(ql, [None, self.lanes])  # structure independent of the samples
        qo, qm = sch.split(qv, [None, factor(sch, knobs["vecs"], self.vec_limit)])
        rp, ro, ri = row_split(sch, rl, knobs["split"])
        sch.reorder(bl, rp, ro, qo, ri, el, qm, il, ql_)
        sch.parallel(sch.fuse(bl, rp))
        local = sch.cache_write(blk, 0, "local")
        sch.reverse_compute_at(local, ri)
        sch.vectorize(sch.get_loops(local)[-1])
        sch.vectorize(ql_)
        unroll(sch, qm, knobs["unroll"])
        sch.annotate(el, SPARSE_ROW_ANN, 1)
        sch.decompose_reduction(blk, el)
        ol = sch.get_loops(sch.get_sblock("out"))
        sch.parallel(sch.fuse(ol[0], ol[1]))
        unroll(sch, ol[2], knobs["epilogue"])
        schedule_channel_major_input(sch, self.spec.cin, self.lanes,
                                     vector_channels=self.spec.kh == 1 and self.spec.kw == 1)

    def default(self, sch: Any) -> None:
        self.apply(sch, self.default_knobs())
        shrink_sparse_loops(sch)

    def space(self, sch: Any) -> None:
        self.apply(sch, dict.fromkeys(self.default_knobs()))
