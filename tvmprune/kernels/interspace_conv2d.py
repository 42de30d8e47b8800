"""Interspace conv: a basis conv (K² shared KxK filters per input channel) + a sparse 1x1 conv, NHWC in/out.

An interspace-pruned KxK conv (:mod:`tvmprune.prune.interspace`) has filters
``w[o, i] = sum_j c[o, i, j] * B[j]`` with sparse coefficients ``c [Cout, Cin, K²]`` and one
dense basis ``B [K², KH, KW]`` per layer. By linearity::

    conv(x, w) = conv1x1(basisconv(x, B), c)     basisconv(x)[k = i*K² + j] = conv(x[i], B[j])

The basis conv is a depthwise-style conv with channel multiplier K² (the same K² filters for
every input channel, carrying the layer's stride and padding); the 1x1 conv over the
``Cin*K²`` basis channels is sparse with exactly the coefficients' nonzeros, so the sparse
part does the same multiply-adds as a spatially sparse (SP) conv of the same density.
Both run in one PrimFunc, CSR form, vector along the output width (like
:mod:`.direct_sparse_conv2d`)::

    xt = pad(data) as [B, Cin, Hp, Wx]                      # channel-major copy (shared helper)
    parallel for (b, oh_o):                                  # R output rows per task
      bt[Cin*K², R, OWp] = basisconv(xt rows)                # computed per task (fused), in cache
      for ow_o: for co:
        acc[R, Tw] = 0
        for e in indptr[co] .. indptr[co+1]:                 # coefficient nonzeros, true length
          acc[r, w] += value[e] * bt[indices[e], r, ow_o*Tw + w]
        out[b, oh.., ow.., co] = act(acc + bias + residual)

With ``n`` > 1 (coefficients pruned in 1xN blocks along output channels) the sparse part is
the 1xN form of :mod:`.sparse_conv2d` (vector over N output channels, one broadcast input
scalar per nonzero block) over an NHWC basis-conv output, computed per output row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import ConvSpec, KernelInstance, conv_epilogue, unique_name
from .direct_sparse_conv2d import channel_major_geometry, channel_major_input, schedule_channel_major_input
from .formats import kernel_arrays, matrix_to_bsr, matrix_to_csr
from .sparse_conv2d import (SPARSE_ROW_ANN, _pad_input, bias_array, n_vector_registers, pick_tile, resolve_target,
                            shrink_sparse_loops, sparse_kernel_signature)

__all__ = ["interspace_conv2d", "check_interspace_arrays"]


def check_interspace_arrays(spec: ConvSpec, coefficients: np.ndarray, basis: np.ndarray) -> None:
    """Shapes: ``coefficients [Cout, Cin, KH*KW]``, ``basis [KH*KW, KH, KW]``, ``spec.groups == 1``."""
    from ..errors import UnsupportedLayerError

    if spec.groups != 1:
        raise UnsupportedLayerError(f"interspace conv supports groups=1 only (got groups={spec.groups})")
    k2 = spec.kh * spec.kw
    if tuple(coefficients.shape) != (spec.cout, spec.cin, k2):
        raise ValueError(f"coefficients shape {tuple(coefficients.shape)} != {(spec.cout, spec.cin, k2)}")
    if tuple(basis.shape) != (k2, spec.kh, spec.kw):
        raise ValueError(f"basis shape {tuple(basis.shape)} != {(k2, spec.kh, spec.kw)}")


def _placeholders(spec: ConvSpec, basis: np.ndarray, arrays: list[np.ndarray], bias_np: np.ndarray | None):
    from tvm import te

    w_data, w_idx, w_ptr = arrays
    return (
        te.placeholder(spec.in_shape, "float32", name="data"),
        te.placeholder(basis.shape, "float32", name="basis"),
        te.placeholder(w_data.shape, "float32", name="w_data"),
        te.placeholder(w_idx.shape, "int32", name="w_indices"),
        te.placeholder(w_ptr.shape, "int32", name="w_indptr"),
        te.placeholder((spec.cout,), "float32", name="bias") if bias_np is not None else None,
        te.placeholder(spec.out_shape, "float32", name="residual") if spec.residual else None,
    )


def interspace_conv2d(spec: ConvSpec, coefficients: np.ndarray, basis: np.ndarray, bias: np.ndarray | None,
                      target: Any, n: int = 1) -> KernelInstance:
    """Basis conv + sparse 1x1 conv in one kernel (kind ``interspace`` / ``interspace-1xN``).

    Args:
        spec: the KxK conv's shape, stride, padding and epilogue (groups 1).
        coefficients: ``[Cout, Cin, KH*KW]`` masked coefficients (zeros are skipped).
        basis: ``[KH*KW, KH, KW]`` the layer's filter basis.
        bias: ``[Cout]`` or None.
        n: 1 (CSR over coefficients) or the block height of 1xN-blocked coefficients.

    PrimFunc arguments: ``data [B,H,W,Cin]``, ``basis``, ``w_data``, ``w_indices``, ``w_indptr``,
    ``[bias]``, ``[residual]``, ``out [B,OH,OW,Cout]``.
    """
    t = resolve_target(target)
    coefficients = np.asarray(coefficients, dtype=np.float32)
    basis = np.ascontiguousarray(basis, dtype=np.float32)
    check_interspace_arrays(spec, coefficients, basis)
    if spec.bias and bias is None:
        raise ValueError("spec.bias is set but no bias array was given")
    if n > 1:
        return _interspace_1xn(spec, coefficients, basis, bias, n, t)
    return _interspace_csr(spec, coefficients, basis, bias, t)


def _basis_tiles(spec: ConvSpec, t) -> tuple[int, int]:
    """(rows per task R, output-width tile Tw): R * Tw/lanes accumulators, and enough tasks for the cores."""
    lanes = t.vector_lanes
    owp = -(-spec.out_w // lanes) * lanes
    tw = lanes * pick_tile(owp // lanes, 4)
    budget = n_vector_registers(t) * 3 // 4
    rows_for_tasks = max(1, spec.out_h // (2 * t.cores)) if spec.batch == 1 else spec.out_h
    return pick_tile(spec.out_h, min(max(1, budget // (tw // lanes)), rows_for_tasks)), tw


def _interspace_csr(spec: ConvSpec, coefficients: np.ndarray, basis: np.ndarray, bias, t) -> KernelInstance:
    from tvm import te, tirx

    k2 = spec.kh * spec.kw
    b_, oh_, ow_, cout, cin = spec.batch, spec.out_h, spec.out_w, spec.cout, spec.cin
    sh, sw = spec.stride
    lanes = t.vector_lanes
    hp, owp, wx = channel_major_geometry(spec, lanes)
    csr = matrix_to_csr(coefficients.reshape(cout, cin * k2))  # column k = cin*K² + j
    arrays = list(kernel_arrays(csr.data, csr.indices, csr.indptr))
    maxlen = max(1, csr.max_row_length)
    bias_np = bias_array(spec.bias, bias, cout)
    bufs = _placeholders(spec, basis, arrays, bias_np)
    data, BAS, W, IDX, PTR, BIAS, RES = bufs

    xt = channel_major_input(data, spec, hp, wx)
    kh = te.reduce_axis((0, spec.kh), name="kh")
    kw = te.reduce_axis((0, spec.kw), name="kw")
    bt = te.compute(
        (b_, cin * k2, oh_, owp),
        lambda b, k, y, x: te.sum(BAS[k % k2, kh, kw] * xt[b, k // k2, y * sh + kh, x * sw + kw], axis=[kh, kw]),
        name="basis_conv")
    e = te.reduce_axis((0, maxlen), name="e")

    def acc_f(b, co, oh, ow):
        start = PTR[co]
        val = W[start + e] * bt[b, IDX[start + e], oh, ow]
        return te.sum(tirx.if_then_else(e < PTR[co + 1] - start, val, tirx.const(0.0, "float32")), axis=e)

    acc = te.compute((b_, cout, oh_, owp), acc_f, name="acc")
    out = conv_epilogue(spec.out_shape, lambda b, oh, ow, c: acc[b, c, oh, ow], BIAS, RES, spec.activation, "out")
    args, consts = sparse_kernel_signature((data, BAS, W, IDX, PTR, BIAS, RES), out, [basis] + arrays, bias_np)
    name = unique_name("interspace_conv2d", spec, arrays[1].tobytes(), arrays[2].tobytes())
    func = te.create_prim_func(args).with_attr("global_symbol", name)
    rr, tw = _basis_tiles(spec, t)

    def schedule_default(sch) -> None:
        blk = sch.get_sblock("acc")
        bl, col, ohl, owl, el = sch.get_loops(blk)
        oho, ohi = sch.split(ohl, [None, rr])
        owo, owi = sch.split(owl, [None, tw])
        sch.reorder(bl, oho, owo, col, el, ohi, owi)
        task = sch.fuse(bl, oho)
        sch.parallel(task)
        sch.set_scope(blk, 0, "local")
        sch.reverse_compute_at(sch.get_sblock("out"), col)
        sch.vectorize(owi)
        sch.unroll(ohi)
        sch.annotate(el, SPARSE_ROW_ANN, 1)
        sch.decompose_reduction(blk, el)
        _schedule_basis_csr(sch, task, k2, lanes, cin * k2)
        schedule_channel_major_input(sch, cin, lanes)
        shrink_sparse_loops(sch)

    return KernelInstance(
        name=name, kind="interspace", func=func, consts=consts, out_shape=spec.out_shape,
        schedule_default=schedule_default, schedule_space=None,
        flops=2 * csr.nnz * b_ * oh_ * ow_ + 2 * b_ * oh_ * ow_ * cin * k2 * k2,
        info={"density": csr.density, "nnz": csr.nnz, "max_row_length": maxlen, "basis_filters": k2,
              "layout": f"channel-major basis conv fused per {rr} output rows, CSR 1x1, tile {rr}x{tw}",
              "index_order": "(cin, basis filter)"})


def _schedule_basis_csr(sch, task, k2: int, lanes: int, n_basis_channels: int) -> None:
    """Basis conv computed inside each task (its rows only), vector along x, K² accumulators unrolled."""
    bc = sch.get_sblock("basis_conv")
    sch.compute_at(bc, task)
    loops = list(sch.get_loops(bc))
    inner = loops[[i for i, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(task))][0] + 1:]
    x = inner[-3]
    kh, kw = inner[-2], inner[-1]
    k = next(lp for lp in inner if int(sch.get(lp).extent) == n_basis_channels)
    rows = [lp for lp in inner[inner.index(k) + 1:-3]]  # the R output rows (absent when R == 1)
    ci, j = sch.split(k, [None, k2])
    xo, xi = sch.split(x, [None, lanes])
    sch.reorder(ci, *rows, xo, kh, kw, j, xi)
    wb = sch.cache_write(bc, 0, "local")
    sch.reverse_compute_at(wb, xo)
    for lp in (kh, kw, j):  # K^4 FMAs in straight-line code: the basis values become broadcast operands
        sch.unroll(lp)
    sch.vectorize(xi)
    init = sch.decompose_reduction(bc, kh)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.vectorize(sch.get_loops(wb)[-1])


def _interspace_1xn(spec: ConvSpec, coefficients: np.ndarray, basis: np.ndarray, bias, n: int, t) -> KernelInstance:
    from tvm import te, tirx

    k2 = spec.kh * spec.kw
    b_, oh_, ow_, cout, cin = spec.batch, spec.out_h, spec.out_w, spec.cout, spec.cin
    sh, sw = spec.stride
    # columns ordered (basis filter, cin): the NHWC basis conv [.., K², Cin] writes whole channel vectors
    bsr = matrix_to_bsr(coefficients.transpose(0, 2, 1).reshape(cout, k2 * cin), n)
    arrays = list(kernel_arrays(bsr.data, bsr.indices, bsr.indptr))
    maxlen = max(1, bsr.max_row_length)
    nb = bsr.n_block_rows
    bias_np = bias_array(spec.bias, bias, cout)
    bufs = _placeholders(spec, basis, arrays, bias_np)
    data, BAS, W, IDX, PTR, BIAS, RES = bufs
    xp = _pad_input(data, spec)
    kh = te.reduce_axis((0, spec.kh), name="kh")
    kw = te.reduce_axis((0, spec.kw), name="kw")
    bn = te.compute(
        (b_, oh_, ow_, k2, cin),
        lambda b, y, x, j, c: te.sum(BAS[j, kh, kw] * xp[b, y * sh + kh, x * sw + kw, c], axis=[kh, kw]),
        name="basis_conv")
    e = te.reduce_axis((0, maxlen), name="e")

    def acc_f(b, oh, ow, r, i):
        start = PTR[r]
        k = IDX[start + e]
        val = W[start + e, i] * bn[b, oh, ow, k // cin, k % cin]
        return te.sum(tirx.if_then_else(e < PTR[r + 1] - start, val, tirx.const(0.0, "float32")), axis=e)

    acc = te.compute((b_, oh_, ow_, nb, n), acc_f, name="acc")
    out = conv_epilogue(spec.out_shape, lambda b, oh, ow, c: acc[b, oh, ow, c // n, c % n], BIAS, RES,
                        spec.activation, "out")
    args, consts = sparse_kernel_signature((data, BAS, W, IDX, PTR, BIAS, RES), out, [basis] + arrays, bias_np)
    name = unique_name("interspace_conv2d_1xn", spec, n, arrays[1].tobytes(), arrays[2].tobytes())
    func = te.create_prim_func(args).with_attr("global_symbol", name)
    lanes = t.vector_lanes
    tile = pick_tile(ow_, max(1, (n_vector_registers(t) * 3 // 4) // -(-n // lanes)))
    vec_c = pick_tile(cin, lanes)

    def schedule_default(sch) -> None:
        blk = sch.get_sblock("acc")
        bl, ohl, owl, rl, il, el = sch.get_loops(blk)
        owo, owi = sch.split(owl, [None, tile])
        sch.reorder(bl, ohl, owo, rl, el, owi, il)
        task = sch.fuse(bl, ohl)
        sch.parallel(task)
        sch.set_scope(blk, 0, "local")
        sch.reverse_compute_at(sch.get_sblock("out"), rl)
        sch.vectorize(il)
        sch.unroll(owi)
        sch.annotate(el, SPARSE_ROW_ANN, 1)
        sch.decompose_reduction(blk, el)
        if cout % n == 0:
            sch.vectorize(sch.get_loops(sch.get_sblock("out"))[-1])
        _schedule_basis_nhwc(sch, task, vec_c)
        if any(spec.padding):
            pl = sch.get_loops(sch.get_sblock("pad"))
            sch.parallel(sch.fuse(pl[0], pl[1]))
        shrink_sparse_loops(sch)

    return KernelInstance(
        name=name, kind="interspace-1xN", func=func, consts=consts, out_shape=spec.out_shape,
        schedule_default=schedule_default, schedule_space=None,
        flops=2 * bsr.nnz_blocks * n * b_ * oh_ * ow_ + 2 * b_ * oh_ * ow_ * cin * k2 * k2,
        info={"n": n, "block_density": bsr.density, "nnz_blocks": bsr.nnz_blocks, "max_row_length": maxlen,
              "basis_filters": k2, "layout": f"NHWC basis conv fused per output row, 1x{n} BSR 1x1, tile {tile}",
              "index_order": "(basis filter, cin)"})


def _schedule_basis_nhwc(sch, task, vec_c: int) -> None:
    """NHWC basis conv of one output row inside each task: vector over ``vec_c`` input channels, K² accumulators."""
    bc = sch.get_sblock("basis_conv")
    sch.compute_at(bc, task)
    loops = list(sch.get_loops(bc))
    inner = loops[[i for i, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(task))][0] + 1:]
    x, j, ci, kh, kw = inner[-5:]
    cio, cii = sch.split(ci, [None, vec_c])
    sch.reorder(x, cio, kh, kw, j, cii)
    wb = sch.cache_write(bc, 0, "local")
    sch.reverse_compute_at(wb, cio)
    for lp in (kh, kw, j):
        sch.unroll(lp)
    sch.vectorize(cii)
    init = sch.decompose_reduction(bc, kh)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.vectorize(sch.get_loops(wb)[-1])
