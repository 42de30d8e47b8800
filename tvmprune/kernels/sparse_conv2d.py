"""1xN block-sparse (BSR) convolution, NHWC, no im2col.

Layout and loop nest (measured on the AVX-512 dev box, see ``scripts/bench_kernels.py``)::

    parallel for (b, r, oh):                     # r = block of N output channels
      for ow_o in OW / T:                        # T output pixels per tile
        acc[T, N] = 0                            # T*ceil(N/lanes) SIMD registers
        for e in indptr[r] .. indptr[r+1]:       # nonzero blocks of the row (true length)
          k = indices[e]; (kh, kw, cin) = decode(k)
          for t in T (unrolled):                 # broadcast one input scalar,
            acc[t, :] += W[e, :] * X[b, oh*s+kh, (ow_o*T+t)*s+kw, cin]   # N-wide FMA
        out[b, oh, ow_o*T:+T, r*N:+N] = act(acc + bias + residual)

N output channels are the vector axis (N = SIMD width is the sweet spot: 16 on AVX-512,
4 on NEON); the weight block is one vector load per nonzero, the input value a broadcast
(folded into the FMA on AVX-512), so the inner loop is T FMAs per nonzero with no gathers.
Reduction indices are ordered ``(kh, kw, cin)`` (see :mod:`.formats`).

Index structure: ``indptr`` / ``indices`` / ``data`` are PrimFunc arguments (``consts``), so
the same compiled code serves any sparsity of the same shape and max row length, and Relax
can bind them as constants. The TE compute uses a *static* row extent (the layer's maximum
row length) with an ``if_then_else`` guard -- ``te.create_prim_func`` turns a data-dependent
reduce extent into an unschedulable nested block. :func:`.sparse_loops.shrink_sparse_loops`
(run at the end of the default schedule; a tuner must call it after replaying a trace) rewrites the
annotated row loop to the true row length and drops the guard, which restores FMA fusion and
skips padding. The index arrays are padded so that even the unshrunk guarded form never reads
out of bounds (MetaSchedule's runner must still be given the real index arrays).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..plan.roofline import PerfParams, fit_compute_alpha, layer_cost, sparse_ms
from .base import ConvSpec, KernelInstance, conv_epilogue
from .conv_inputs import bias_array, check_conv
from .family import KernelFamily, Probe
from .format import Format, LayerOp
from .formats import BSR, conv_weight_to_bsr, kernel_arrays
from .identity import symbol_name
from .padding import pad_input
from .placeholders import sparse_conv_kernel, sparse_conv_placeholders
from .sparse_loops import SPARSE_ROW_ANN, shrink_sparse_loops
from .target_params import n_vector_registers, resolve_target
from .sparse_space import factor, row_split, unroll
from .tiling import parallel_chunks, pick_tile

if TYPE_CHECKING:
    from ..plan.layer import LayerInfo
    from ..target import NamedTarget


def _bsr_conv_arrays(spec: ConvSpec, weight: np.ndarray, n: int) -> tuple[BSR, list[np.ndarray]]:
    """The 1xN BSR form of ``weight`` and its kernel arrays ``[w_data, w_indices, w_indptr]``,
    the indices pre-decoded to flat offsets ``(kh * Wp + kw) * Cin + cin`` into a padded input row."""
    bsr = conv_weight_to_bsr(weight, n)
    wp_ = spec.in_w + spec.padding[1] + spec.padding[3]
    k_ = bsr.indices.astype(np.int64)
    kh_i, kw_i, c_i = k_ // (spec.kw * spec.cin), (k_ // spec.cin) % spec.kw, k_ % spec.cin
    offsets = ((kh_i * wp_ + kw_i) * spec.cin + c_i).astype(np.int32)
    return bsr, list(kernel_arrays(bsr.data, offsets, bsr.indptr))


def _bsr_conv_compute(spec: ConvSpec, bufs: tuple, n: int, n_block_rows: int, maxlen: int) -> Any:
    """TE stages ``pad -> acc [B, OH, OW, Cout/n, n] -> out [B, OH, OW, Cout]``; returns ``out``."""
    from tvm import te, tirx

    data, W, IDX, PTR, BIAS, RES = bufs
    sh, sw = spec.stride[0], spec.stride[1]
    xp = pad_input(data, spec)
    e = te.reduce_axis((0, maxlen), name="e")

    def acc_f(b, oh, ow, r, i):
        start = PTR[r]
        # offsets are pre-decoded: off = (kh * Wp + kw) * Cin + cin; indexing the last axis
        # past Cin addresses the right element of the row-major (padded) input and saves
        # the div/mod decode of (kh, kw, cin) per nonzero
        val = W[start + e, i] * xp[b, oh * sh, ow * sw, IDX[start + e]]
        return te.sum(tirx.if_then_else(e < PTR[r + 1] - start, val, tirx.const(0.0, "float32")), axis=e)

    acc = te.compute((spec.batch, spec.out_h, spec.out_w, n_block_rows, n), acc_f, name="acc")
    return conv_epilogue(spec.out_shape, lambda b, oh, ow, c: acc[b, oh, ow, c // n, c % n], BIAS, RES,
                         spec.activation, "out")


@dataclass(frozen=True)
class _BsrConvSchedule:
    """Schedules of the 1xN conv. A task row is a 2-D tile of ``rows x cols`` output pixels x
    ``n`` channels of accumulators (``rows * cols * ceil(n/lanes)`` registers); the block-row loop
    is split ``[parallel chunks, outside the pixel tiles, inside]`` (:func:`.sparse_space.row_split`).
    The default (``rows = 1``, ``cols`` = the largest divisor of OW within the register budget
    ``t_max``, all block rows inside the pixel tile loop, full explicit unroll) is one point of the
    space; the space samples every knob (see :mod:`.sparse_space`)."""

    spec: ConvSpec
    n: int
    n_block_rows: int
    lanes: int
    cores: int
    tile: int
    t_max: int

    @classmethod
    def for_target(cls, spec: ConvSpec, n: int, n_block_rows: int, t: "NamedTarget") -> "_BsrConvSchedule":
        regs_per_px = -(-n // t.vector_lanes)
        t_max = max(1, (n_vector_registers(t) * 3 // 4) // regs_per_px)
        return cls(spec, n, n_block_rows, t.vector_lanes, t.cores, pick_tile(spec.out_w, t_max), t_max)

    def default_knobs(self) -> dict:
        chunks = parallel_chunks(self.n_block_rows, self.spec.batch, self.spec.out_h, 1, self.cores)
        return {"rows": 1, "cols": self.tile, "split": (chunks, 1, self.n_block_rows // chunks), "unroll": (512, 1)}

    def apply(self, sch: Any, knobs: dict) -> None:
        """The loop nest; each knob is a concrete value or None (sampled)."""
        spec = self.spec
        blk = sch.get_sblock("acc")
        bl, ohl, owl, rl, il, el = sch.get_loops(blk)
        oho, ohi = sch.split(ohl, [None, factor(sch, knobs["rows"], min(spec.out_h, 4))])
        owo, owi = sch.split(owl, [None, factor(sch, knobs["cols"], min(spec.out_w, self.t_max))])
        rp, ro, ri = row_split(sch, rl, knobs["split"])
        sch.reorder(bl, oho, rp, ro, owo, ri, el, ohi, owi, il)
        sch.parallel(sch.fuse(bl, oho, rp))
        sch.set_scope(blk, 0, "local")
        sch.reverse_compute_at(sch.get_sblock("out"), ri)
        sch.vectorize(il)
        unroll(sch, ohi, knobs["unroll"])
        sch.annotate(el, SPARSE_ROW_ANN, 1)
        sch.decompose_reduction(blk, el)
        ol = sch.get_loops(sch.get_sblock("out"))
        # inner loops of the epilogue: (ow_i, c); vectorize c when it is a whole block
        if spec.cout % self.n == 0:
            sch.vectorize(ol[-1])
        if any(spec.padding):
            pl = sch.get_loops(sch.get_sblock("pad"))
            sch.parallel(sch.fuse(pl[0], pl[1]))
            if spec.cin % self.lanes == 0:
                sch.vectorize(pl[-1])

    def default(self, sch: Any) -> None:
        self.apply(sch, self.default_knobs())
        shrink_sparse_loops(sch)

    def space(self, sch: Any) -> None:
        self.apply(sch, dict.fromkeys(self.default_knobs()))


def sparse_conv2d_1xn(
    spec: ConvSpec, weight: np.ndarray, bias: np.ndarray | None, n: int, target: Any
) -> KernelInstance:
    """1xN block-sparse conv (NHWC in/out), kind ``"1xN"``.

    PrimFunc arguments: ``data [B,H,W,Cin]``, ``w_data [nnz+L, n]``, ``w_indices [nnz+L]``,
    ``w_indptr [ceil(Cout/n)+1]``, ``[bias [Cout]]``, ``[residual [B,OH,OW,Cout]]``,
    ``out [B,OH,OW,Cout]`` (``L`` = max row length, see :func:`.formats.kernel_arrays`).
    """
    t = resolve_target(target)
    weight = np.asarray(weight, dtype=np.float32)
    check_conv(spec, weight, bias, "sparse_conv2d_1xn")
    bsr, arrays = _bsr_conv_arrays(spec, weight, n)
    w_data, w_idx, w_ptr = arrays
    maxlen = max(1, bsr.max_row_length)
    bias_np = bias_array(spec.bias, bias, spec.cout)

    bufs = sparse_conv_placeholders(spec, w_data, w_idx, w_ptr, "w_indices", bias_np)
    out = _bsr_conv_compute(spec, bufs, n, bsr.n_block_rows, maxlen)
    sched = _BsrConvSchedule.for_target(spec, n, bsr.n_block_rows, t)
    name = symbol_name("sparse_conv2d_1xn", spec, n, w_idx.tobytes(), w_ptr.tobytes())
    return sparse_conv_kernel(
        spec, Format.BSR, name, bufs, out, arrays, bias_np, sched,
        flops=2 * bsr.nnz_blocks * n * spec.batch * spec.out_h * spec.out_w,
        info={**bsr.kernel_info(weight),
              "layout": "NHWC, vector over N output channels, tile of %d output pixels" % sched.tile,
              "index_order": "(kh, kw, cin)"})


def _build(info: "LayerInfo", n: int, target: "NamedTarget") -> KernelInstance:
    return sparse_conv2d_1xn(info.spec, info.weight, info.bias, n, target)


def _predict(info: "LayerInfo", target: "NamedTarget", prm: PerfParams) -> float | None:
    n = info.block_n if info.groups == 1 else 0
    if not n:
        return None
    return sparse_ms(layer_cost(info, target, prm), prm.alpha_1xn, n, min(1.0, n / target.vector_lanes))


FAMILY = KernelFamily(
    Format.BSR, LayerOp.CONV2D, build=_build, accepts=lambda info: info.groups == 1,
    predict=_predict,
    describe=lambda info: f"1x{info.block_n} blocks, density {info.density:.2f}",
    probe=Probe(block_n=lambda t: min(max(t.vector_lanes, 2), 32), param=lambda spec: "alpha_1xn",
                fit=fit_compute_alpha))
