"""Direct sparse convolution (Park et al., ICLR 2017) with a CSR weight, NHWC in/out.

Each output channel ``co`` is one CSR row over ``(cin, kh, kw)``; every nonzero is
multiplied straight into a tile of the output plane from the padded input -- no im2col::

    xt = pad(data) transposed to [B, Cin, Hp, Wx]        # blocked transpose
    xs[b, kw, c, h, l] = xt[b, c, h, l*sw + kw]          # one aligned plane set per kernel column
    parallel for (b, oh_o, co_chunk):                    # R output rows x a chunk of channels
      for ow_o:  for co_block (16 channels):
        for co in co_block:
          acc[co, R, Tw] = 0                             # R * Tw/lanes SIMD registers
          for e in indptr[co] .. indptr[co+1]:           # true row length
            off = offsets[e]                             # = ((kw*Cin + cin)*Hp + kh)*OWp, pre-decoded
            for r in R (unrolled): for w in Tw (vector):
              acc[co, r, w] += value[e] * xs[b, 0, 0, oh*sh + r*sh, ow_o*Tw + w + off]
        out[b, oh.., ow.., co_block] = act(acc + bias + residual)   # one vector store per pixel

Why a channel-major copy of the input: the CSR row has one scalar weight per nonzero, so
the vector axis must be spatial. In NHWC, consecutive output pixels of one input channel
are ``Cin`` floats apart (a gather per vector); in the channel-major copy they are
contiguous. The per-``kw`` phase copies (:mod:`.shifted_input`) make every input vector one
aligned row vector: in ``[Cin, Hp, Wx]`` it started ``kw`` floats into a row and nearly every
load straddled two cache lines (half the load throughput), and stride 2 needed strided loads.
Each nonzero is one broadcast, one index load and ``R*Tw/lanes`` FMAs with a memory operand;
the offsets are pre-decoded so the inner loop does no div/mod. The accumulators of a block of
``lanes`` output channels are written out together (one vector store per output pixel): a
strided scalar store per pixel and channel, 1-1.5 KB apart, thrashed a few L1 sets.

Where the time goes (AlexNet conv3 at Park's density, AVX-512, one core): the nonzero loop,
about 0.3 ns per FMA -- each FMA reads its own 64 B input vector, and the input (0.5 MB for
conv3) lives in L2, so L2 -> L1 bandwidth bounds it; the copies and the output stage are
10-15 %. Blocking input channels for L1 reuse loses (segments of a few nonzeros).

Index arrays are arguments (``consts``) like in :mod:`.sparse_conv2d`; the row loop is
shrunk to the true row length by :func:`.sparse_loops.shrink_sparse_loops`.
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
from .channel_major import channel_major_geometry
from .shifted_input import schedule_shifted_input, shifted_input, shifted_offsets
from .formats import conv_weight_to_csr, kernel_arrays
from .conv_inputs import bias_array, check_conv
from .placeholders import sparse_conv_kernel, sparse_conv_placeholders
from .sparse_loops import SPARSE_ROW_ANN, shrink_sparse_loops
from .target_params import l2_bytes, n_vector_registers, resolve_target
from .sparse_space import factor, row_split, unroll
from .tiling import balanced_chunks, pick_tile

if TYPE_CHECKING:
    from ..plan.layer import LayerInfo
    from ..target import NamedTarget


def _csr_conv_compute(spec: ConvSpec, bufs: tuple, lanes: int, maxlen: int) -> Any:
    """TE stages ``xt -> xs`` (kernel-column phase copies, :mod:`.shifted_input`) ``-> acc
    [B, Cout, OH, OWp] -> out [B, OH, OW, Cout]``; returns ``out``."""
    from tvm import te, tirx

    data, W, OFF, PTR, BIAS, RES = bufs
    sh = spec.stride[0]
    xs, _, owp = shifted_input(data, spec, lanes)
    e = te.reduce_axis((0, maxlen), name="e")

    def acc_f(b, co, oh, ow):
        start = PTR[co]
        # the last axis is indexed past OWp on purpose: the flat offset selects (kw, cin, kh)
        val = W[start + e] * xs[b, 0, 0, oh * sh, ow + OFF[start + e]]
        return te.sum(tirx.if_then_else(e < PTR[co + 1] - start, val, tirx.const(0.0, "float32")), axis=e)

    acc = te.compute((spec.batch, spec.cout, spec.out_h, owp), acc_f, name="acc")
    return conv_epilogue(spec.out_shape, lambda b, oh, ow, c: acc[b, c, oh, ow], BIAS, RES, spec.activation, "out")


def _rows_in_cache(spec: ConvSpec, rows: int, owp: int, l2: int) -> int:
    """``rows``, or fewer output rows per tile (the row tiles then split the plane evenly, the
    last one padded) when the input rows that one tile reads from ``xs`` (all channels and
    kernel columns) exceed 3/4 of the per-core L2: AlexNet conv4 (384 channels, 13x13) reads
    1.1 MB with 13 rows, 0.66 MB with 7 (8 % faster on one core; each thread then reads its half)."""

    def footprint(r: int) -> int:
        return spec.kw * spec.cin * ((r - 1) * spec.stride[0] + spec.kh) * owp * 4

    tiles = -(-spec.out_h // rows)
    while footprint(rows) > l2 * 3 // 4 and rows > 4:
        tiles += 1
        rows = -(-spec.out_h // tiles)
    return rows


@dataclass(frozen=True)
class _CsrConvSchedule:
    """Schedules of the CSR direct conv: a tile of ``rows`` output rows x ``vecs`` vectors of
    output pixels per output channel (``rows * vecs`` accumulator registers); the channel loop
    split ``[parallel chunks, outside the pixel tiles, inside]`` (:func:`.sparse_space.row_split`),
    the inner part split again into blocks of ``cblock`` channels whose accumulators are written
    out together (vectorised over channels), the parallel loop fusing (batch, row tiles, chunks).
    The default (up to 4 vectors, as many rows as the register budget and the L2 share allow,
    about 4 tasks per core in a multiple of the core count, blocks of ``lanes`` channels, full
    explicit unroll) is one point of the space (see :mod:`.sparse_space`)."""

    spec: ConvSpec
    lanes: int
    cores: int
    budget: int  # vector registers for accumulators
    rows: int
    width: int
    owp: int

    @classmethod
    def for_target(cls, spec: ConvSpec, owp: int, t: "NamedTarget") -> "_CsrConvSchedule":
        lanes = t.vector_lanes
        budget = n_vector_registers(t) * 3 // 4
        width = lanes * pick_tile(owp // lanes, 4)
        rows = _rows_in_cache(spec, pick_tile(spec.out_h, max(1, budget // -(-width // lanes))), owp, l2_bytes(t))
        return cls(spec, lanes, t.cores, budget, rows, width, owp)

    def default_knobs(self) -> dict:
        n_par = self.spec.batch * -(-self.spec.out_h // self.rows)
        chunks = balanced_chunks(self.spec.cout, n_par, self.cores, self.lanes)
        inner = self.spec.cout // chunks
        return {"rows": self.rows, "vecs": self.width // self.lanes,
                "split": (chunks, 1, inner), "cblock": pick_tile(inner, self.lanes), "unroll": (512, 1)}

    def apply(self, sch: Any, knobs: dict) -> None:
        """The loop nest; each knob is a concrete value or None (sampled)."""
        spec, lanes = self.spec, self.lanes
        blk = sch.get_sblock("acc")
        bl, col, ohl, owl, el = sch.get_loops(blk)
        oho, ohi = sch.split(ohl, [None, factor(sch, knobs["rows"], min(spec.out_h, self.budget))])
        owv, owl_ = sch.split(owl, [None, lanes])  # structure independent of the samples
        owo, owm = sch.split(owv, [None, factor(sch, knobs["vecs"], min(4, self.owp // lanes))])
        cp, co, ci = row_split(sch, col, knobs["split"])
        # cblock must divide the chunk: the output stage, computed at cb, would otherwise write the
        # predicated-off channels of an imperfect split, i.e. the next task's (a race, seen under load)
        if knobs["cblock"] is None:
            cb, cv = sch.split(ci, sch.sample_perfect_tile(ci, n=2, max_innermost_factor=lanes))
        else:
            cb, cv = sch.split(ci, [None, knobs["cblock"]])
        sch.reorder(bl, oho, cp, co, owo, cb, cv, el, ohi, owm, owl_)
        sch.parallel(sch.fuse(bl, oho, cp))
        sch.set_scope(blk, 0, "local")
        out = sch.get_sblock("out")
        sch.reverse_compute_at(out, cb)
        sch.vectorize(sch.get_loops(out)[-1])  # channels: one vector store per output pixel
        sch.vectorize(owl_)
        unroll(sch, ohi, knobs["unroll"])
        sch.annotate(el, SPARSE_ROW_ANN, 1)
        sch.decompose_reduction(blk, cv)
        schedule_shifted_input(sch, spec.cin, lanes)

    def default(self, sch: Any) -> None:
        self.apply(sch, self.default_knobs())
        shrink_sparse_loops(sch)

    def space(self, sch: Any) -> None:
        self.apply(sch, dict.fromkeys(self.default_knobs()))


def direct_sparse_conv2d(spec: ConvSpec, weight: np.ndarray, bias: np.ndarray | None, target: Any) -> KernelInstance:
    """CSR direct sparse conv (NHWC in/out), kind ``"csr"``.

    PrimFunc arguments: ``data [B,H,W,Cin]``, ``w_data [nnz+L]``, ``w_offsets [nnz+L]``
    (flat offsets ``((kw*Cin + cin)*Hp + kh)*OWp`` into the kernel-column phase copies ``xs``),
    ``w_indptr [Cout+1]``, ``[bias [Cout]]``, ``[residual]``, ``out [B,OH,OW,Cout]``.
    """
    t = resolve_target(target)
    weight = np.asarray(weight, dtype=np.float32)
    check_conv(spec, weight, bias, "direct_sparse_conv2d")
    csr = conv_weight_to_csr(weight)
    hp, owp, _ = channel_major_geometry(spec, t.vector_lanes)
    offsets = shifted_offsets(csr.indices, spec, hp, owp)
    w_data, w_off, w_ptr = kernel_arrays(csr.data, offsets, csr.indptr)
    maxlen = max(1, csr.max_row_length)
    bias_np = bias_array(spec.bias, bias, spec.cout)

    bufs = sparse_conv_placeholders(spec, w_data, w_off, w_ptr, "w_offsets", bias_np)
    out = _csr_conv_compute(spec, bufs, t.vector_lanes, maxlen)
    sched = _CsrConvSchedule.for_target(spec, owp, t)
    name = symbol_name("direct_sparse_conv2d", spec, w_off.tobytes(), w_ptr.tobytes())
    return sparse_conv_kernel(
        spec, Format.CSR, name, bufs, out, [w_data, w_off, w_ptr], bias_np, sched,
        flops=2 * csr.nnz * spec.batch * spec.out_h * spec.out_w,
        info={"density": csr.density, "nnz": csr.nnz, "max_row_length": maxlen,
              "layout": f"per-kw aligned channel-major input copies, vector along output width, tile {sched.rows}x{sched.width}",
              "index_order": "(cin, kh, kw) as flat offsets into the per-kw copies"})


def _is_1x1(spec: ConvSpec) -> bool:
    return spec.kh == 1 and spec.kw == 1


def _build(info: "LayerInfo", n: int, target: "NamedTarget") -> KernelInstance:
    return direct_sparse_conv2d(info.spec, info.weight, info.bias, target)


def _predict(info: "LayerInfo", target: "NamedTarget", prm: PerfParams) -> float | None:
    if info.groups > 1:
        return None
    # the CSR direct conv shares the spatial kernel's structure (channel-major input copy,
    # output width rounded up to whole vectors) with one output channel per nonzero
    alpha = prm.alpha_csr_1x1 if _is_1x1(info.spec) else prm.alpha_csr_3x3
    return spatial_ms(info.spec, layer_cost(info, target, prm), 1, target, alpha)


FAMILY = KernelFamily(
    Format.CSR, LayerOp.CONV2D, build=_build, accepts=lambda info: info.groups == 1,
    predict=_predict,
    describe=lambda info: f"unstructured, density {info.density:.2f}",
    probe=Probe(block_n=lambda t: 1, param=lambda spec: "alpha_csr_1x1" if _is_1x1(spec) else "alpha_csr_3x3",
                fit=fit_spatial_alpha))
