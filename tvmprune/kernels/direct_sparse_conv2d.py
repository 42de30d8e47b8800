"""Direct sparse convolution (Park et al., ICLR 2017) with a CSR weight, NHWC in/out.

Each output channel ``co`` is one CSR row over ``(cin, kh, kw)``; every nonzero is
multiplied straight into a tile of the output plane from the padded input -- no im2col::

    xt = pad(data) transposed to [B, Cin, Hp, Wp]        # one pass over the input
    parallel for (b, oh_o):                              # R output rows per task
      for ow_o:  for co:                                 # all channels reuse the rows in cache
        acc[R, Tw] = 0                                   # R * Tw/lanes SIMD registers
        for e in indptr[co] .. indptr[co+1]:             # true row length
          off = offsets[e]                               # = (cin*Hp + kh)*Wp + kw, pre-decoded
          for r in R (unrolled): for w in Tw (vector):
            acc[r, w] += value[e] * xt[b, oh*s + r*s, (ow_o*Tw + w)*s + off]
        out[b, oh.., ow.., co] = act(acc + bias + residual)   # strided scalar stores

Why a channel-major copy of the input: the CSR row has one scalar weight per nonzero, so
the vector axis must be spatial. In NHWC, consecutive output pixels of one input channel
are ``Cin`` floats apart (a gather per vector); in the ``[Cin, Hp, Wp]`` copy they are
contiguous (unit-stride loads for stride 1), at the price of one transposing copy of the
input per call and strided stores of the output tile (``R*Tw`` scalars per output channel,
amortised over the row's nonzeros). The nonzero offsets are pre-decoded into flat input
offsets so the inner loop does no div/mod. Stride 2 uses strided vector loads.

Index arrays are arguments (``consts``) like in :mod:`.sparse_conv2d`; the row loop is
shrunk to the true row length by :func:`.sparse_conv2d.shrink_sparse_loops`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import ConvSpec, KernelInstance, conv_epilogue, unique_name
from .formats import conv_weight_to_csr, kernel_arrays
from .sparse_conv2d import (
    SPARSE_ROW_ANN,
    bias_array,
    check_conv,
    n_vector_registers,
    pick_tile,
    resolve_target,
    shrink_sparse_loops,
    sparse_conv_placeholders,
    sparse_kernel_signature,
)


# ----------------------------------------------------------------------------------------
# channel-major padded input copy (shared with :mod:`.block_direct_conv2d`)
# ----------------------------------------------------------------------------------------


def channel_major_geometry(spec: ConvSpec, lanes: int) -> tuple[int, int, int]:
    """``(Hp, OWp, Wx)`` of the channel-major copy: padded height, output width rounded up to
    whole vectors (what the kernels compute), and the copy's row length (the padded width,
    zero-extended so that the last vector of output pixels reads inside the row)."""
    pt, pl, pb, pr = spec.padding
    hp, wp = spec.in_h + pt + pb, spec.in_w + pl + pr
    owp = -(-spec.out_w // lanes) * lanes
    wx = max(wp, (owp - 1) * spec.stride[1] + spec.kw)
    return hp, owp, wx


def channel_major_offsets(k: np.ndarray, spec: ConvSpec, hp: int, wx: int) -> np.ndarray:
    """Reduction indices ``k = (cin*KH + kh)*KW + kw`` -> flat offsets ``(cin*Hp + kh)*Wx + kw``
    into one image of the channel-major copy (int32)."""
    k = np.asarray(k).astype(np.int64)
    kh_, kw_ = spec.kh, spec.kw
    c_i, kh_i, kw_i = k // (kh_ * kw_), (k // kw_) % kh_, k % kw_
    return ((c_i * hp + kh_i) * wx + kw_i).astype(np.int32)


def channel_major_input(data, spec: ConvSpec, hp: int, wx: int):
    """TE stage ``xt [B, Cin, Hp, Wx]``: zero-padded, channel-major copy of the NHWC ``data``."""
    from tvm import te, tirx

    pt, pl = spec.padding[0], spec.padding[1]
    b_, h_, w_, cin = spec.in_shape

    def xt_f(b, c, h, w):
        ok = tirx.all(h >= pt, h < pt + h_, w >= pl, w < pl + w_)
        return tirx.if_then_else(ok, data[b, h - pt, w - pl, c], tirx.const(0.0, "float32"))

    return te.compute((b_, cin, hp, wx), xt_f, name="xt")


def schedule_channel_major_input(sch, cin: int, lanes: int, vector_channels: bool = False) -> None:
    """Parallel (blocked, when ``Cin`` is a multiple of ``lanes``) transpose for the ``xt`` stage.

    ``vector_channels``: read each pixel's ``lanes`` channels as one vector and unroll a block
    of ``lanes`` pixels (scattered scalar stores); faster for wide 1x1 inputs (the copy is
    then memory-bound), slightly slower for small 3x3 ones."""
    xb, xc, xh, xw = sch.get_loops(sch.get_sblock("xt"))
    if cin % lanes == 0 and vector_channels and sch.get(xw).extent.value % lanes == 0:
        xco, xci = sch.split(xc, [None, lanes])
        xwo, xwi = sch.split(xw, [None, lanes])
        sch.reorder(xb, xh, xco, xwo, xwi, xci)
        sch.parallel(sch.fuse(xb, xh))
        sch.unroll(xwi)
        sch.vectorize(xci)
    elif cin % lanes == 0:  # blocked transpose: read whole channel vectors, write rows
        xco, xci = sch.split(xc, [None, lanes])
        sch.reorder(xb, xh, xco, xw, xci)
        sch.parallel(sch.fuse(xb, xh))
    else:
        sch.parallel(sch.fuse(xb, xc))


def direct_sparse_conv2d(spec: ConvSpec, weight: np.ndarray, bias: np.ndarray | None, target: Any) -> KernelInstance:
    """CSR direct sparse conv (NHWC in/out), kind ``"csr"``.

    PrimFunc arguments: ``data [B,H,W,Cin]``, ``w_data [nnz+L]``, ``w_offsets [nnz+L]``
    (flat offsets ``(cin*Hp + kh)*Wp + kw`` into the padded channel-major input),
    ``w_indptr [Cout+1]``, ``[bias [Cout]]``, ``[residual]``, ``out [B,OH,OW,Cout]``.
    """
    from tvm import te, tirx

    t = resolve_target(target)
    weight = np.asarray(weight, dtype=np.float32)
    check_conv(spec, weight, bias, "direct_sparse_conv2d")
    csr = conv_weight_to_csr(weight)
    b_, h_, w_, cin = spec.in_shape
    oh_, ow_, cout = spec.out_h, spec.out_w, spec.cout
    sh, sw = spec.stride
    hp, owp, wx = channel_major_geometry(spec, t.vector_lanes)
    offsets = channel_major_offsets(csr.indices, spec, hp, wx)
    w_data, w_off, w_ptr = kernel_arrays(csr.data, offsets, csr.indptr)
    maxlen = max(1, csr.max_row_length)
    bias_np = bias_array(spec.bias, bias, cout)

    bufs = sparse_conv_placeholders(spec, w_data, w_off, w_ptr, "w_offsets", bias_np)
    data, W, OFF, PTR, BIAS, RES = bufs

    xt = channel_major_input(data, spec, hp, wx)
    e = te.reduce_axis((0, maxlen), name="e")

    def acc_f(b, co, oh, ow):
        start = PTR[co]
        # the last axis is indexed past Wp on purpose: the flat offset selects (cin, kh, kw)
        val = W[start + e] * xt[b, 0, oh * sh, ow * sw + OFF[start + e]]
        return te.sum(tirx.if_then_else(e < PTR[co + 1] - start, val, tirx.const(0.0, "float32")), axis=e)

    acc = te.compute((b_, cout, oh_, owp), acc_f, name="acc")

    out = conv_epilogue(spec.out_shape, lambda b, oh, ow, c: acc[b, c, oh, ow], BIAS, RES, spec.activation, "out")
    args, consts = sparse_kernel_signature(bufs, out, [w_data, w_off, w_ptr], bias_np)
    name = unique_name("direct_sparse_conv2d", spec, w_off.tobytes(), w_ptr.tobytes())
    func = te.create_prim_func(args).with_attr("global_symbol", name)

    lanes = t.vector_lanes
    budget = n_vector_registers(t) * 3 // 4
    tw_default = lanes * pick_tile(owp // lanes, 4)
    r_default = pick_tile(oh_, max(1, budget // -(-tw_default // lanes)))

    def _common(sch, tw, rr, unroll: bool):
        blk = sch.get_sblock("acc")
        bl, col, ohl, owl, el = sch.get_loops(blk)
        oho, ohi = sch.split(ohl, [None, rr] if isinstance(rr, int) else rr)
        owo, owi = sch.split(owl, [None, tw] if isinstance(tw, int) else tw)
        n_par = b_ * (oh_ // rr if isinstance(rr, int) else 1)
        co_chunks = pick_tile(cout, max(1, -(-4 * t.cores // n_par))) if isinstance(rr, int) else 1
        coo, col = sch.split(col, [co_chunks, None])
        sch.reorder(bl, oho, coo, owo, col, el, ohi, owi)
        sch.parallel(sch.fuse(bl, oho, coo))
        sch.set_scope(blk, 0, "local")
        sch.reverse_compute_at(sch.get_sblock("out"), col)
        sch.vectorize(owi)
        if unroll:
            sch.unroll(ohi)
        sch.annotate(el, SPARSE_ROW_ANN, 1)
        sch.decompose_reduction(blk, el)
        schedule_channel_major_input(sch, cin, lanes)
        return ohi

    def schedule_default(sch) -> None:
        _common(sch, tw_default, r_default, True)
        shrink_sparse_loops(sch)

    def schedule_space(sch) -> None:
        blk = sch.get_sblock("acc")
        loops = sch.get_loops(blk)
        rr = sch.sample_perfect_tile(loops[2], n=2, max_innermost_factor=max(1, budget))
        tw = sch.sample_perfect_tile(loops[3], n=2, max_innermost_factor=4 * lanes)  # over OW rounded up
        ohi = _common(sch, tw, rr, False)
        unroll = sch.sample_categorical([0, 1], [0.2, 0.8])
        sch.annotate(ohi, "pragma_unroll_explicit", unroll)
        sch.annotate(ohi, "pragma_auto_unroll_max_step", 64)

    return KernelInstance(
        name=name,
        kind="csr",
        func=func,
        consts=consts,
        out_shape=spec.out_shape,
        schedule_default=schedule_default,
        schedule_space=schedule_space,
        flops=2 * csr.nnz * b_ * oh_ * ow_,
        info={
            "density": csr.density,
            "nnz": csr.nnz,
            "max_row_length": maxlen,
            "layout": f"channel-major padded input copy, vector along output width, tile {r_default}x{tw_default}",
            "index_order": "(cin, kh, kw) as flat input offsets",
        },
    )
