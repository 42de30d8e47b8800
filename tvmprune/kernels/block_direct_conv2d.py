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
    schedule_channel_major_input,
)
from .formats import kernel_arrays, matrix_to_bsr
from .conv_inputs import bias_array, check_conv
from .placeholders import sparse_conv_kernel, sparse_conv_placeholders
from .sparse_loops import SPARSE_ROW_ANN, shrink_sparse_loops
from .target_params import n_vector_registers, resolve_target
from .tiling import parallel_chunks, pick_tile

if TYPE_CHECKING:
    from ..plan.layer import LayerInfo
    from ..target import NamedTarget


def _register_tile(n: int, lanes: int, owp: int, oh: int, budget: int) -> tuple[int, int]:
    """Default ``(R, Tw)``: as many output-width vectors as fit N accumulator rows (<= 4),
    then as many output rows as the register budget allows."""
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
    ``width`` output pixels (whole vectors) per block row, parallel over (batch, row tiles, block
    row chunks)."""

    spec: ConvSpec
    n: int
    n_block_rows: int
    lanes: int
    cores: int
    budget: int  # vector registers for accumulators
    rows: int
    width: int

    @classmethod
    def for_target(cls, spec: ConvSpec, n: int, n_block_rows: int, owp: int,
                   t: "NamedTarget") -> "_BlockDirectSchedule":
        budget = n_vector_registers(t) * 3 // 4
        rows, width = _register_tile(n, t.vector_lanes, owp, spec.out_h, budget)
        return cls(spec, n, n_block_rows, t.vector_lanes, t.cores, budget, rows, width)

    def apply(self, sch: Any, vecs: Any, rr: Any, unroll: bool) -> tuple:
        """``vecs``: vectors per tile row (int, or None: sample a perfect tile of the
        OWp/lanes loop); ``rr``: output rows per tile (int or sampled tile)."""
        spec, n, lanes = self.spec, self.n, self.lanes
        blk = sch.get_sblock("acc")
        bl, rl, ohl, il, owl, el = sch.get_loops(blk)
        oho, ohi = sch.split(ohl, [None, rr] if isinstance(rr, int) else rr)
        # split the lanes off first: the loop structure does not depend on samples (replay-safe)
        owv, owl_ = sch.split(owl, [None, lanes])
        if vecs is None:
            vecs = sch.sample_perfect_tile(owv, n=2, max_innermost_factor=4)
        owo, owm = sch.split(owv, [None, vecs] if isinstance(vecs, int) else vecs)
        r_chunks = parallel_chunks(self.n_block_rows, spec.batch, spec.out_h, rr, self.cores)
        rco, rci = sch.split(rl, [r_chunks, None])
        # per nonzero: for each output row / vector of the tile, one input load, N FMAs
        sch.reorder(bl, oho, rco, owo, rci, el, ohi, owm, il, owl_)
        sch.parallel(sch.fuse(bl, oho, rco))
        sch.set_scope(blk, 0, "local")
        sch.reverse_compute_at(sch.get_sblock("out"), rci)
        sch.vectorize(owl_)
        if unroll:
            sch.unroll(il)
            sch.unroll(owm)
            sch.unroll(ohi)
        sch.annotate(el, SPARSE_ROW_ANN, 1)
        sch.decompose_reduction(blk, el)
        if n >= 4 and spec.cout % n == 0:  # epilogue: N contiguous channels of a pixel per store
            ol = sch.get_loops(sch.get_sblock("out"))
            sch.vectorize(ol[-1])
            sch.unroll(ol[-2])
        # 1x1: the copy is big and memory-bound -> vector reads of channels, scattered stores
        schedule_channel_major_input(sch, spec.cin, lanes, vector_channels=spec.kh == 1 and spec.kw == 1)
        return ohi, owm, il

    def default(self, sch: Any) -> None:
        self.apply(sch, self.width // self.lanes, self.rows, True)
        shrink_sparse_loops(sch)

    def space(self, sch: Any) -> None:
        loops = sch.get_loops(sch.get_sblock("acc"))
        rr = sch.sample_perfect_tile(loops[2], n=2, max_innermost_factor=max(1, self.budget // self.n))
        ohi, owm, il = self.apply(sch, None, rr, False)
        unroll = sch.sample_categorical([0, 1], [0.2, 0.8])
        sch.annotate(ohi, "pragma_unroll_explicit", unroll)
        sch.annotate(ohi, "pragma_auto_unroll_max_step", 256)


def block_direct_sparse_conv2d(
    spec: ConvSpec, weight: np.ndarray, bias: np.ndarray | None, n: int, target: Any
) -> KernelInstance:
    """Spatially vectorised 1xN block-sparse conv (NHWC in/out), kind ``"1xN-spatial"``.

    PrimFunc arguments: ``data [B,H,W,Cin]``, ``w_data [nnz_blocks+L, n]``, ``w_offsets
    [nnz_blocks+L]`` (flat offsets ``(cin*Hp + kh)*Wx + kw`` into the channel-major input),
    ``w_indptr [ceil(Cout/n)+1]``, ``[bias [Cout]]``, ``[residual]``, ``out [B,OH,OW,Cout]``.
    """
    if n < 1:
        raise ValueError(f"block size n must be >= 1, got {n}")
    t = resolve_target(target)
    weight = np.asarray(weight, dtype=np.float32)
    check_conv(spec, weight, bias, "block_direct_sparse_conv2d")
    bsr = matrix_to_bsr(weight.reshape(spec.cout, -1), n)  # columns in PyTorch's (cin, kh, kw) order
    hp, owp, wx = channel_major_geometry(spec, t.vector_lanes)
    offsets = channel_major_offsets(bsr.indices, spec, hp, wx)
    w_data, w_off, w_ptr = kernel_arrays(bsr.data, offsets, bsr.indptr)
    maxlen = max(1, bsr.max_row_length)
    bias_np = bias_array(spec.bias, bias, spec.cout)

    bufs = sparse_conv_placeholders(spec, w_data, w_off, w_ptr, "w_offsets", bias_np)
    out = _block_direct_compute(spec, bufs, n, bsr.n_block_rows, (hp, owp, wx), maxlen)
    sched = _BlockDirectSchedule.for_target(spec, n, bsr.n_block_rows, owp, t)
    name = symbol_name("block_direct_sparse_conv2d", spec, n, w_off.tobytes(), w_ptr.tobytes())
    return sparse_conv_kernel(
        spec, Format.BSR_SPATIAL, name, bufs, out, [w_data, w_off, w_ptr], bias_np, sched,
        flops=2 * bsr.nnz_blocks * n * spec.batch * spec.out_h * spec.out_w,
        info={**bsr.kernel_info(weight),
              "layout": (f"channel-major padded input copy, vector along output width, "
                         f"tile {sched.rows}x{n}x{sched.width}"),
              "index_order": "(cin, kh, kw) as flat input offsets"})


def _build(info: "LayerInfo", n: int, target: "NamedTarget") -> KernelInstance:
    return block_direct_sparse_conv2d(info.spec, info.weight, info.bias, n, target)


def _predict(info: "LayerInfo", target: "NamedTarget", prm: PerfParams) -> float | None:
    n = info.block_n if info.groups == 1 else 0
    if not n or n >= target.vector_lanes:  # N fills the vector: the 1xN kernel's case
        return None
    return spatial_ms(info.spec, layer_cost(info, target, prm), n, target, prm.alpha_1xn_spatial)


FAMILY = KernelFamily(
    Format.BSR_SPATIAL, LayerOp.CONV2D, build=_build, accepts=lambda info: info.groups == 1,
    predict=_predict,
    describe=lambda info: f"1x{info.block_n} blocks, density {info.density:.2f}, vector along output width",
    probe=Probe(block_n=lambda t: max(2, t.vector_lanes // 4), param=lambda spec: "alpha_1xn_spatial",
                fit=fit_spatial_alpha))
