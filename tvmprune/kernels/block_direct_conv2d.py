"""Spatially vectorised 1xN block-sparse convolution (Park et al.'s direct sparse conv over
1xN blocks), NHWC in/out, for N smaller than the SIMD width.

The BSR kernel of :mod:`.sparse_conv2d` vectorises over the N output channels of a block,
so on AVX-512 (16 lanes) N=4 fills a quarter of a register and N=8 half. Here the vector
axis is the output width, like the CSR direct conv of :mod:`.direct_sparse_conv2d`, on the
same channel-major padded copy of the input, but the loop runs over nonzero BLOCKS::

    xt = pad(data) transposed to [B, Cin, Hp, Wx]              # one pass over the input
    parallel for (b, oh_o, r_o):                               # R output rows per task
      for ow_o:  for r:                                        # r = block of N output channels
        acc[R, N, Tw] = 0                                      # R * N * Tw/lanes registers
        for e in indptr[r] .. indptr[r+1]:                     # nonzero blocks (true length)
          off = offsets[e]                                     # (cin*Hp + kh)*Wx + kw
          for rr in R: for w in Tw (vector):
            x = xt[b, (oh+rr)*s, (ow_o*Tw + w)*s + off]        # ONE input vector load ...
            for i in N: acc[rr, i, w] += W[e, i] * x           # ... N FMAs (weight broadcast)
        out[b, oh.., ow.., r*N + i] = act(acc + bias + residual)

The N channels of a block share the reduction index and therefore the input load and the
index/offset load: per nonzero block the inner loop does ``R*Tw/lanes`` vector loads and
``N*R*Tw/lanes`` FMAs whose weight operand is a scalar broadcast (folded into the FMA on
AVX-512), so every lane does useful work whatever N is. Cout not divisible by N is padded
with zero rows (like BSR); the padding channels are computed but never stored.

Reduction indices are ordered ``(cin, kh, kw)`` (a row's nonzeros of one input channel hit
neighbouring rows of the copy) and pre-decoded into flat offsets. The row loop is static
(max row length, guarded) in TE and shrunk to the true length by
:func:`.sparse_loops.shrink_sparse_loops`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..plan.roofline import PerfParams, fit_spatial_alpha, layer_cost, spatial_ms
from .base import ConvSpec, KernelInstance, conv_epilogue
from .family import KernelFamily, Probe
from .format import Format, LayerOp
from .identity import symbol_name
from .channel_major import (
    channel_major_geometry,
    channel_major_input,
    channel_major_offsets,
    flat_geometry,
    prefers_flat_pixels,
    schedule_channel_major_input,
)
from .flat_block_direct_conv2d import FlatBlockDirectSchedule, flat_block_direct_compute
from .formats import kernel_arrays, matrix_to_bsr
from .conv_inputs import bias_array, check_conv
from .placeholders import sparse_conv_kernel, sparse_conv_placeholders
from .sparse_loops import SPARSE_ROW_ANN, shrink_sparse_loops
from .target_params import n_vector_registers, resolve_target
from .sparse_space import factor, row_split, unroll
from .tiling import parallel_chunks, pick_tile

if TYPE_CHECKING:
    from ..plan.layer import LayerInfo
    from ..target import NamedTarget


# TVM keeps a per-task buffer on the stack only when it is under 1 KB (LowerTVMBuiltin's
# kMaxStackAlloca) and in "global" scope; larger (or "local") ones become a
# TVMBackendAllocWorkspace buffer, which LLVM cannot promote to registers
STACK_ALLOCA_BYTES = 1024


def stack_tile_vectors(lanes: int) -> int:
    """Most fp32 vectors of ``lanes`` an accumulator tile may hold and stay a stack buffer."""
    return (STACK_ALLOCA_BYTES - 1) // (4 * lanes)


# the stack tile halves the 1x4 pixel tile at 56x56 (16 -> 8 accumulators), which costs the FMA
# loop per nonzero: it pays where block rows are short (the epilogue a large share). 1x4 at 0.5,
# 1 thread, loaded: rows of 12-48 blocks (24->144, 32->192, 64->256, 96->576) 1.2-1.4x faster,
# rows of 72-128 (144->24@56, 256->64@56) 4-17% slower
STACK_TILE_MAX_ROW = 64


def _register_tile(n: int, lanes: int, owp: int, oh: int, budget: int, stack: bool) -> tuple[int, int]:
    """Default ``(R, Tw)``: as many output-width vectors as fit N accumulator rows (<= 4),
    then as many output rows as the register budget allows; ``stack``: the tile (``R * n * Tw``
    floats) stays under :data:`STACK_ALLOCA_BYTES`. A stack tile is promoted to registers by
    LLVM, so the NHWC epilogue becomes register shuffles (``vpermt2ps`` / ``vunpck*``) instead
    of one ``vmovss`` / ``vinsertps`` per output from memory (24->144@56 1x4 fixed cost 292 ->
    198 us)."""
    if stack:
        budget = min(budget, stack_tile_vectors(lanes))
    vecs = pick_tile(owp // lanes, max(1, min(4, budget // max(1, n))))
    rr = pick_tile(oh, max(1, budget // (n * vecs)))
    return rr, vecs * lanes


def _block_direct_compute(spec: ConvSpec, bufs: tuple, n: int, n_block_rows: int, geometry: tuple[int, int, int],
                          maxlen: int) -> Any:
    """TE stages ``xt (channel-major copy) -> acc [B, Cout/n, OH, n, OWp] -> out [B, OH, OW, Cout]``;
    returns ``out``. ``geometry`` is ``(Hp, OWp, Wx)`` of :func:`.channel_major.channel_major_geometry`."""
    from tvm import te, tirx

    data, W, OFF, PTR, BIAS, RES = bufs
    hp, owp, wx = geometry
    sh, sw = spec.stride
    xt = channel_major_input(data, spec, hp, wx)
    e = te.reduce_axis((0, maxlen), name="e")

    def acc_f(b, r, oh, i, ow):
        start = PTR[r]
        # the last axis is indexed past Wx on purpose: the flat offset selects (cin, kh, kw)
        val = W[start + e, i] * xt[b, 0, oh * sh, ow * sw + OFF[start + e]]
        return te.sum(tirx.if_then_else(e < PTR[r + 1] - start, val, tirx.const(0.0, "float32")), axis=e)

    acc = te.compute((spec.batch, n_block_rows, spec.out_h, n, owp), acc_f, name="acc")
    return conv_epilogue(spec.out_shape, lambda b, oh, ow, c: acc[b, c // n, oh, c % n, ow], BIAS, RES,
                         spec.activation, "out")


@dataclass(frozen=True)
class _BlockDirectSchedule:
    """Schedules of the 1xN-spatial conv: a tile of ``rows`` output rows x ``n`` channels x
    ``vecs`` vectors of output pixels per block row (``rows * n * vecs`` accumulator registers);
    the block-row loop split ``[parallel chunks, outside the pixel tiles, inside]``
    (:func:`.sparse_space.row_split`), the parallel loop fusing (batch, row tiles, chunks).
    The default (register tile of :func:`_register_tile`, about 4 tasks per core, full explicit
    unroll) is one point of the space (see :mod:`.sparse_space`)."""

    spec: ConvSpec
    n: int
    n_block_rows: int
    lanes: int
    cores: int
    budget: int  # vector registers for accumulators
    rows: int
    width: int
    owp: int

    @classmethod
    def for_target(cls, spec: ConvSpec, n: int, n_block_rows: int, owp: int, t: "NamedTarget",
                   mean_row: float = 0.0) -> "_BlockDirectSchedule":
        """``mean_row``: nonzero blocks per block row (short rows: a stack tile, see
        :data:`STACK_TILE_MAX_ROW`)."""
        budget = n_vector_registers(t) * 3 // 4
        rows, width = _register_tile(n, t.vector_lanes, owp, spec.out_h, budget, mean_row < STACK_TILE_MAX_ROW)
        return cls(spec, n, n_block_rows, t.vector_lanes, t.cores, budget, rows, width, owp)

    def default_knobs(self) -> dict:
        chunks = parallel_chunks(self.n_block_rows, self.spec.batch, self.spec.out_h, self.rows, self.cores)
        return {"rows": self.rows, "vecs": self.width // self.lanes,
                "split": (chunks, 1, self.n_block_rows // chunks), "unroll": (512, 1), "epilogue": (64, 1)}

    def apply(self, sch: Any, knobs: dict) -> None:
        """The loop nest; each knob is a concrete value or None (sampled)."""
        spec, n, lanes = self.spec, self.n, self.lanes
        blk = sch.get_sblock("acc")
        bl, rl, ohl, il, owl, el = sch.get_loops(blk)
        oho, ohi = sch.split(ohl, [None, factor(sch, knobs["rows"], min(spec.out_h, max(1, self.budget // n)))])
        # the lanes are split off first: the loop structure does not depend on samples (replay-safe)
        owv, owl_ = sch.split(owl, [None, lanes])
        owo, owm = sch.split(owv, [None, factor(sch, knobs["vecs"], min(4, self.owp // lanes))])
        rp, ro, ri = row_split(sch, rl, knobs["split"])
        # per nonzero: for each output row / vector of the tile, one input load, N FMAs
        sch.reorder(bl, oho, rp, ro, owo, ri, el, ohi, owm, il, owl_)
        sch.parallel(sch.fuse(bl, oho, rp))
        sch.set_scope(blk, 0, "global")  # a stack buffer (see STACK_ALLOCA_BYTES), not a workspace
        sch.reverse_compute_at(sch.get_sblock("out"), ri)
        sch.vectorize(owl_)
        unroll(sch, ohi, knobs["unroll"])
        sch.annotate(el, SPARSE_ROW_ANN, 1)
        sch.decompose_reduction(blk, el)
        if n >= 4 and spec.cout % n == 0:  # epilogue: N contiguous channels of a pixel per store
            ol = sch.get_loops(sch.get_sblock("out"))
            sch.vectorize(ol[-1])
            unroll(sch, ol[-2], knobs["epilogue"])
        # 1x1: the copy is big and memory-bound -> vector reads of channels, scattered stores
        schedule_channel_major_input(sch, spec.cin, lanes, vector_channels=spec.kh == 1 and spec.kw == 1)

    def default(self, sch: Any) -> None:
        self.apply(sch, self.default_knobs())
        shrink_sparse_loops(sch)

    def space(self, sch: Any) -> None:
        self.apply(sch, dict.fromkeys(self.default_knobs()))


def block_direct_sparse_conv2d(
    spec: ConvSpec, weight: np.ndarray, bias: np.ndarray | None, n: int, target: Any, flat: bool | None = None
) -> KernelInstance:
    """Spatially vectorised 1xN block-sparse conv (NHWC in/out), kind ``"1xN-spatial"``.

    ``flat``: vectors of flat pixels spanning output rows (:mod:`.flat_block_direct_conv2d`,
    stride 1 only) instead of whole vectors per output row; None: flat where it computes fewer
    pixels (:func:`.channel_major.prefers_flat_pixels`).

    PrimFunc arguments: ``data [B,H,W,Cin]``, ``w_data [nnz_blocks+L, n]``, ``w_offsets
    [nnz_blocks+L]`` (flat offsets ``(cin*Hx + kh)*Wx + kw`` into the channel-major input),
    ``w_indptr [ceil(Cout/n)+1]``, ``[bias [Cout]]``, ``[residual]``, ``out [B,OH,OW,Cout]``.

    Raises:
        ValueError: ``n < 1``, or ``flat`` asked for a strided conv.
    """
    if n < 1:
        raise ValueError(f"block size n must be >= 1, got {n}")
    t = resolve_target(target)
    weight = np.asarray(weight, dtype=np.float32)
    check_conv(spec, weight, bias, "block_direct_sparse_conv2d")
    if flat is None:
        flat = prefers_flat_pixels(spec, t.vector_lanes)
    if flat and flat_geometry(spec, t.vector_lanes) is None:
        raise ValueError(f"flat-pixel 1xN-spatial needs stride 1, got stride {spec.stride}")
    bsr = matrix_to_bsr(weight.reshape(spec.cout, -1), n)  # columns in PyTorch's (cin, kh, kw) order
    if flat:
        hx, qp, wx = flat_geometry(spec, t.vector_lanes)
    else:
        hx, owp, wx = channel_major_geometry(spec, t.vector_lanes)
    offsets = channel_major_offsets(bsr.indices, spec, hx, wx)
    w_data, w_off, w_ptr = kernel_arrays(bsr.data, offsets, bsr.indptr)
    maxlen = max(1, bsr.max_row_length)
    bias_np = bias_array(spec.bias, bias, spec.cout)

    bufs = sparse_conv_placeholders(spec, w_data, w_off, w_ptr, "w_offsets", bias_np)
    if flat:
        out = flat_block_direct_compute(spec, bufs, n, bsr.n_block_rows, (hx, qp, wx), maxlen)
        sched = FlatBlockDirectSchedule.for_target(spec, n, bsr.n_block_rows, qp, t)
        layout = f"channel-major padded input copy, vector along flat pixels (row pitch {wx}), {qp} computed"
    else:
        out = _block_direct_compute(spec, bufs, n, bsr.n_block_rows, (hx, owp, wx), maxlen)
        sched = _BlockDirectSchedule.for_target(spec, n, bsr.n_block_rows, owp, t,
                                                bsr.nnz_blocks / max(1, bsr.n_block_rows))
        layout = f"channel-major padded input copy, vector along output width, tile {sched.rows}x{n}x{sched.width}"
    name = symbol_name("block_direct_sparse_conv2d" + "_flat" * flat, spec, n, w_off.tobytes(), w_ptr.tobytes())
    return sparse_conv_kernel(
        spec, Format.BSR_SPATIAL, name, bufs, out, [w_data, w_off, w_ptr], bias_np, sched,
        flops=2 * bsr.nnz_blocks * n * spec.batch * spec.out_h * spec.out_w,
        info={**bsr.kernel_info(weight), "layout": layout, "flat_pixels": bool(flat),
              "index_order": "(cin, kh, kw) as flat input offsets"})


def _build(info: "LayerInfo", n: int, target: "NamedTarget") -> KernelInstance:
    return block_direct_sparse_conv2d(info.spec, info.weight, info.bias, n, target)


def _predict(info: "LayerInfo", target: "NamedTarget", prm: PerfParams) -> float | None:
    n = info.block_n if info.groups == 1 else 0
    if not n or n >= target.vector_lanes:  # N fills the vector: the 1xN kernel's case
        return None
    return spatial_ms(info.spec, layer_cost(info, target, prm), n, target, prm.alpha_1xn_spatial,
                      flat=prefers_flat_pixels(info.spec, target.vector_lanes))


FAMILY = KernelFamily(
    Format.BSR_SPATIAL, LayerOp.CONV2D, build=_build, accepts=lambda info: info.groups == 1,
    predict=_predict,
    describe=lambda info: f"1x{info.block_n} blocks, density {info.density:.2f}, vector along output width",
    probe=Probe(block_n=lambda t: max(2, t.vector_lanes // 4), param=lambda spec: "alpha_1xn_spatial",
                fit=fit_spatial_alpha))
