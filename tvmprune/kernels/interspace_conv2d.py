"""Interspace conv: a basis conv (K² shared KxK filters per input channel) + a sparse 1x1 conv, NHWC in/out.

An interspace-pruned KxK conv (:mod:`tvmprune.prune.interspace`) has filters
``w[o, i] = sum_j c[o, i, j] * B[j]`` with sparse coefficients ``c [Cout, Cin, K²]`` and one
dense basis ``B [K², KH, KW]`` per layer. By linearity::

    conv(x, w) = conv1x1(basisconv(x, B), c)     basisconv(x)[i, j] = conv(x[i], B[j])

The basis conv is a depthwise-style conv with channel multiplier K² (the same K² filters for
every input channel, carrying the layer's stride and padding); the 1x1 conv over the
``Cin*K²`` basis channels is sparse with exactly the coefficients' nonzeros, so the sparse
part does the same multiply-adds as a spatially sparse (SP) conv of the same density. Both
run in one PrimFunc: the basis conv is computed inside each parallel task for that task's
output rows only (it stays in cache), then the sparse part reads it -- or, where several
tasks would share its rows (output-channel chunks of a row-starved layer, the flat layout),
once for the image in its own parallel loop over input channels. The sparse part has the
compute of the existing sparse kernels, in one of three layouts:

* ``n < lanes`` -- CSR (``n == 1``) and 1xN blocks narrower than a vector, as
  :mod:`.direct_sparse_conv2d` / :mod:`.block_direct_conv2d`: channel-major basis output
  ``bt [B, Cin*K², OH, OWp]`` (channel ``k = cin*K² + j``), vector along the output width, one
  basis-row vector load per nonzero block feeding its N output channels::

      parallel for (b, oh_o):                        # R output rows per task
        bt[.., R, OWp] = basisconv(xt rows)           # xt: channel-major padded input copy
        for ow_o: for r (block of N output channels):
          acc[R, N, Tw] = sum_e value[e, i] * bt[indices[e], r, ow_o*Tw + w]   # true row length
          out[b, oh.., ow.., r*N + i] = act(acc + bias + residual)

* ``n >= lanes`` -- 1xN blocks a vector wide or wider, as :mod:`.sparse_conv2d`: NHWC basis
  output ``bn [B, OH, OW, K²*Cin]`` (channel ``k = j*Cin + cin``, one output row per task),
  vector over the N output channels of a block, one broadcast basis value per nonzero block.

* flat pixels (stride 1, narrow outputs where :func:`.channel_major.prefers_flat_pixels`, e.g.
  7x7 on 16 lanes; CSR and narrow 1xN): channel-major as above, but output pixel ``(oh, ow)`` at
  flat position ``q = oh*Wx + ow`` of ``bt [B, Cin*K², Qp]`` (7x7: 64 computed pixels, not 112);
  the basis conv is computed once, parallel over input channels, before the sparse part
  (parallel over output-channel chunks, ``N x V`` flat vectors per tile), the NHWC epilogue is
  its own pass.

All layouts share the kernel skeleton (arguments, epilogue, identity) and the schedule of
the sparse accumulation and of the basis conv's register accumulation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..errors import UnsupportedLayerError
from .base import ConvSpec, KernelInstance, conv_epilogue
from .channel_major import (channel_major_geometry, channel_major_input, computed_pixels, flat_geometry,
                             prefers_flat_pixels, schedule_channel_major_input)
from .family import KernelFamily
from .format import Format, LayerOp
from .formats import kernel_arrays, matrix_to_bsr
from .identity import symbol_name
from .conv_inputs import bias_array
from .padding import pad_input
from .placeholders import sparse_kernel_signature
from .sparse_loops import SPARSE_ROW_ANN, shrink_sparse_loops
from .target_params import n_vector_registers, resolve_target
from .tiling import pick_tile

if TYPE_CHECKING:
    from ..plan.layer import LayerInfo
    from ..plan.roofline import PerfParams
    from ..target import NamedTarget

__all__ = ["InterspaceFactors", "interspace_conv2d", "check_interspace_arrays", "predict_interspace_ms", "FAMILY"]


@dataclass
class InterspaceFactors:
    """The interspace form of one layer, as the compiler carries it (``LayerInfo.interspace``).

    coefficients: ``[Cout, Cin, K²]`` masked (pruned ones are 0), scaled like the imported
        weight (BN folded); basis: ``[K², KH, KW]``; n: 1 (unstructured) or the 1xN block height.
    """

    coefficients: np.ndarray
    basis: np.ndarray
    n: int = 1

    @property
    def density(self) -> float:
        return float(np.count_nonzero(self.coefficients)) / max(self.coefficients.size, 1)


def check_interspace_arrays(spec: ConvSpec, coefficients: np.ndarray, basis: np.ndarray) -> None:
    """Shapes: ``coefficients [Cout, Cin, KH*KW]``, ``basis [KH*KW, KH, KW]``, ``spec.groups == 1``.

    Raises:
        UnsupportedLayerError: grouped conv. ValueError: wrong array shapes.
    """
    if spec.groups != 1:
        raise UnsupportedLayerError(f"interspace conv supports groups=1 only (got groups={spec.groups}); "
                                    "compile the reconstructed dense filters instead")
    k2 = spec.kh * spec.kw
    if tuple(coefficients.shape) != (spec.cout, spec.cin, k2):
        raise ValueError(f"coefficients shape {tuple(coefficients.shape)} != {(spec.cout, spec.cin, k2)}")
    if tuple(basis.shape) != (k2, spec.kh, spec.kw):
        raise ValueError(f"basis shape {tuple(basis.shape)} != {(k2, spec.kh, spec.kw)}")


@dataclass(frozen=True)
class _Layout:
    """One of the two layouts of the sparse part (see the module docstring).

    sparse: coefficients -> the CSR / BSR matrix over the basis channels, in this layout's order.
    compute: ``(spec, data, basis, values, indices, indptr, row axis, n, lanes)`` ->
        ``(acc tensor, value_at(b, oh, ow, c) for the epilogue)``.
    schedule: ``(spec, n, target)`` -> the default schedule.
    describe: ``(spec, n, target)`` -> the layout line of ``KernelInstance.info``.
    """

    index_order: str
    sparse: Callable[[np.ndarray, int], Any]
    compute: Callable[..., tuple[Any, Callable]]
    schedule: Callable[[ConvSpec, int, Any], Callable[[Any], None]]
    describe: Callable[[ConvSpec, int, Any], str]


def _placeholders(spec: ConvSpec, basis: np.ndarray, arrays: list[np.ndarray], bias_np: np.ndarray | None) -> tuple:
    """``data, basis, w_data, w_indices, w_indptr, bias (or None), residual (or None)``."""
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


def _row_sum(ptr: Any, row: Any, e: Any, value: Callable[[Any], Any]) -> Any:
    """``sum_{e < len(row)} value(indptr[row] + e)`` in the guarded static-extent form that
    :func:`.sparse_loops.shrink_sparse_loops` rewrites to the true row length."""
    from tvm import te, tirx

    start = ptr[row]
    return te.sum(tirx.if_then_else(e < ptr[row + 1] - start, value(start + e), tirx.const(0.0, "float32")), axis=e)


def _layout(spec: ConvSpec, n: int, lanes: int) -> "_Layout":
    """NHWC for 1xN blocks a vector wide; else channel-major, on the flat-pixel grid where it
    computes far fewer pixels (:func:`.channel_major.prefers_flat_pixels`: 7x7 on 16 lanes)."""
    if n >= lanes:
        return _NHWC_VECTOR_N
    return _FLAT if prefers_flat_pixels(spec, lanes) else _CHANNEL_MAJOR


def interspace_conv2d(spec: ConvSpec, coefficients: np.ndarray, basis: np.ndarray, bias: np.ndarray | None,
                      target: Any, n: int = 1) -> KernelInstance:
    """Basis conv + sparse 1x1 conv in one kernel, format ``interspace`` (``info["n"]``: 1 CSR, else 1xN).

    Args:
        spec: the KxK conv's shape, stride, padding and epilogue (groups 1).
        coefficients: ``[Cout, Cin, KH*KW]`` masked coefficients (zeros are skipped).
        basis: ``[KH*KW, KH, KW]`` the layer's filter basis.
        bias: ``[Cout]`` or None (required when ``spec.bias``).
        target: sets the vector width and core count.
        n: 1 (CSR over coefficients) or the block height of 1xN-blocked coefficients.

    PrimFunc arguments: ``data [B,H,W,Cin]``, ``basis``, ``w_data``, ``w_indices``, ``w_indptr``,
    ``[bias]``, ``[residual]``, ``out [B,OH,OW,Cout]``.
    """
    from tvm import te

    t = resolve_target(target)
    coefficients = np.asarray(coefficients, dtype=np.float32)
    basis = np.ascontiguousarray(basis, dtype=np.float32)
    check_interspace_arrays(spec, coefficients, basis)
    if spec.bias and bias is None:
        raise ValueError("spec.bias is set but no bias array was given")
    n = max(1, int(n))
    layout = _layout(spec, n, t.vector_lanes)
    mat = layout.sparse(coefficients, n)
    arrays = list(kernel_arrays(mat.data, mat.indices, mat.indptr))
    bias_np = bias_array(spec.bias, bias, spec.cout)
    bufs = _placeholders(spec, basis, arrays, bias_np)
    data, bas, w, idx, ptr, b_in, res = bufs
    e = te.reduce_axis((0, max(1, mat.max_row_length)), name="e")
    acc, value_at = layout.compute(spec, data, bas, w, idx, ptr, e, n, t.vector_lanes)
    out = conv_epilogue(spec.out_shape, value_at, b_in, res, spec.activation, "out")
    args, consts = sparse_kernel_signature(bufs, out, [basis] + arrays, bias_np)
    name = symbol_name("interspace_conv2d", spec, n, t.vector_lanes, arrays[1].tobytes(), arrays[2].tobytes())
    func = te.create_prim_func(args).with_attr("global_symbol", name)
    nnz = int(mat.indptr[-1]) * n  # stored coefficients (whole blocks for 1xN)
    pixels = spec.batch * spec.out_h * spec.out_w
    k2 = spec.kh * spec.kw
    return KernelInstance(
        name=name, format=Format.INTERSPACE, op=LayerOp.CONV2D, func=func, consts=consts, out_shape=spec.out_shape,
        schedule_default=layout.schedule(spec, n, t), schedule_space=None,
        flops=2 * pixels * (nnz + spec.cin * k2 * k2),
        info={"n": n, "density": float(np.count_nonzero(coefficients)) / max(1, coefficients.size),
              "stored_density": mat.density, "nnz": nnz, "max_row_length": mat.max_row_length, "basis_filters": k2,
              "layout": layout.describe(spec, n, t), "index_order": layout.index_order})


# ----------------------------------------------------------------------------------------
# schedule pieces shared by both layouts
# ----------------------------------------------------------------------------------------


def _schedule_sparse_acc(sch: Any, order: list, task_loops: list, out_at: Any, vec: Any, unrolled: tuple,
                         row: Any) -> Any:
    """The sparse part's nest: ``order`` of the ``acc`` loops, ``task_loops`` fused into the parallel
    task, accumulators in registers, the epilogue under ``out_at``, ``vec`` vectorised, ``unrolled``
    unrolled, the nonzero loop ``row`` marked for :func:`shrink_sparse_loops`. Returns the task loop."""
    blk = sch.get_sblock("acc")
    sch.reorder(*order)
    task = sch.fuse(*task_loops)
    sch.parallel(task)
    sch.set_scope(blk, 0, "local")
    sch.reverse_compute_at(sch.get_sblock("out"), out_at)
    sch.vectorize(vec)
    for lp in unrolled:
        sch.unroll(lp)
    sch.annotate(row, SPARSE_ROW_ANN, 1)
    sch.decompose_reduction(blk, row)
    return task


def _basis_loops_in_task(sch: Any, task: Any) -> tuple[Any, list]:
    """Compute the basis conv inside ``task`` (its rows only); its block and the loops below ``task``."""
    bc = sch.get_sblock("basis_conv")
    sch.compute_at(bc, task)
    loops = list(sch.get_loops(bc))
    at = next(i for i, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(task)))
    return bc, loops[at + 1:]


def _basis_sum(spec: ConvSpec, bas: Any, j: Any, tap: Callable[[int, int], Any]) -> Any:
    """``sum_{kh, kw} basis[j, kh, kw] * tap(kh, kw)`` written out (no reduction axis): the basis conv
    then has no accumulator buffer nor init, and with the basis filters ``j`` unrolled LLVM shares
    the K² input loads of a pixel vector among the K² outputs."""
    terms = [bas[j, kh, kw] * tap(kh, kw) for kh in range(spec.kh) for kw in range(spec.kw)]
    out = terms[0]
    for term in terms[1:]:
        out = out + term
    return out


# ----------------------------------------------------------------------------------------
# channel-major: vector along the output width (CSR, and 1xN blocks narrower than a vector)
# ----------------------------------------------------------------------------------------


def _cm_sparse(coefficients: np.ndarray, n: int) -> Any:
    cout, cin, k2 = coefficients.shape
    return matrix_to_bsr(coefficients.reshape(cout, cin * k2), n)  # column k = cin*K² + j; n = 1: CSR


def _cm_compute(spec: ConvSpec, data, bas, w, idx, ptr, e, n: int, lanes: int) -> tuple[Any, Callable]:
    from tvm import te

    k2 = spec.kh * spec.kw
    sh, sw = spec.stride
    hp, owp, wx = channel_major_geometry(spec, lanes)
    xt = channel_major_input(data, spec, hp, wx)
    bt = te.compute(
        (spec.batch, spec.cin * k2, spec.out_h, owp),
        lambda b, k, y, x: _basis_sum(spec, bas, k % k2, lambda kh, kw: xt[b, k // k2, y * sh + kh, x * sw + kw]),
        name="basis_conv")
    # per nonzero block: one basis-row vector load, N FMAs with broadcast weights (as .block_direct_conv2d)
    channels = spec.cin * k2  # `% channels` (a no-op on valid indices) bounds the read for compute_at
    acc = te.compute((spec.batch, -(-spec.cout // n), spec.out_h, n, owp),
                     lambda b, r, oh, i, ow: _row_sum(ptr, r, e, lambda p: w[p, i] * bt[b, idx[p] % channels, oh, ow]),
                     name="acc")
    return acc, lambda b, oh, ow, c: acc[b, c // n, oh, c % n, ow]


def _cm_tiles(spec: ConvSpec, n: int, t: Any) -> tuple[int, int, int]:
    """(rows per task R, width vectors V, output-channel chunks): R * N * V accumulators (as the
    1xN-spatial kernel), and chunks of the output-channel blocks until there is a task per core
    (each chunk computes the basis conv of its rows again: a row-starved layer, e.g. 7x7, pays
    that rather than one-vector tiles)."""
    owp = -(-spec.out_w // t.vector_lanes) * t.vector_lanes
    budget = n_vector_registers(t) * 3 // 4
    vecs = pick_tile(owp // t.vector_lanes, max(1, min(4, budget // n)))
    rr_max = max(1, budget // (n * vecs))
    rr = pick_tile(spec.out_h, rr_max)
    rr_parallel = pick_tile(spec.out_h, min(rr_max, max(1, spec.batch * spec.out_h // t.cores)))
    if 2 * rr_parallel >= rr:  # a task per core from the rows alone, at half the tile or more
        rr = rr_parallel
    tasks = spec.batch * (spec.out_h // rr)
    return rr, vecs, pick_tile(-(-spec.cout // n), max(1, -(-t.cores // tasks)))


def _cm_store_blocks(spec: ConvSpec, n: int, chunks: int, lanes: int) -> int:
    """Output-channel blocks (of N) whose accumulators are written out together: up to ``lanes``
    channels per pixel as one vector store (one strided scalar store per pixel and channel, 256 B
    apart for 64 channels, took half the time of a 64-channel 56x56 layer); divides the chunk."""
    if spec.cout % n:
        return 1
    per_chunk = -(-spec.cout // n) // chunks
    return pick_tile(per_chunk, max(1, lanes // n))


def _basis_x_vectors(vectors: int, k2: int, t: Any) -> int:
    """Output-width vectors per basis-conv step: their K² input vectors each stay in a register
    while the K² basis filters are applied, so every basis operand feeds that many FMAs."""
    return pick_tile(vectors, max(1, (n_vector_registers(t) - 4) // k2))


def _cm_schedule_basis(sch: Any, task: Any | None, spec: ConvSpec, t: Any) -> None:
    """The basis conv of a task's rows (``task`` given) or of the whole image in its own parallel
    loop over (batch, input channels) (``task`` None): per input channel, row and width vector,
    the K² filters unrolled. Works for the row form ``[B, Cin*K², OH, OWp]`` and the flat form
    ``[B, Cin*K², Qp]`` alike (the loops between the channel and the width one are the rows)."""
    k2, lanes = spec.kh * spec.kw, t.vector_lanes
    if task is None:
        bc = sch.get_sblock("basis_conv")
        bl, *inner = sch.get_loops(bc)
    else:
        bc, inner = _basis_loops_in_task(sch, task)
    k, x = inner[0], inner[-1]
    ci, j = sch.split(k, [None, k2])
    xo, xm, xi = sch.split(x, [None, _basis_x_vectors(int(sch.get(x).extent) // lanes, k2, t), lanes])
    sch.reorder(ci, *inner[1:-1], xo, j, xm, xi)  # inner[1:-1]: the R output rows (absent when R == 1)
    if task is None:
        sch.parallel(sch.fuse(bl, ci))
    sch.unroll(j)
    sch.unroll(xm)
    sch.vectorize(xi)


def _cm_schedule(spec: ConvSpec, n: int, t: Any) -> Callable[[Any], None]:
    rr, vecs, chunks = _cm_tiles(spec, n, t)
    lanes = t.vector_lanes

    def schedule_default(sch: Any) -> None:
        bl, rl, ohl, il, owl, el = sch.get_loops(sch.get_sblock("acc"))
        oho, ohi = sch.split(ohl, [None, rr])
        owo, owm, owi = sch.split(owl, [None, vecs, lanes])
        rco, rci = sch.split(rl, [chunks, None])
        rcb, rcv = sch.split(rci, [None, _cm_store_blocks(spec, n, chunks, lanes)])
        task = _schedule_sparse_acc(sch, [bl, oho, rco, owo, rcb, rcv, el, ohi, owm, il, owi], [bl, oho, rco], rcb,
                                    owi, (ohi, owm, il), el)
        if spec.cout % n == 0:  # epilogue: a block of contiguous output channels of a pixel per vector store
            ol = sch.get_loops(sch.get_sblock("out"))
            sch.vectorize(ol[-1])
        # several channel chunks per row tile would each compute the rows' basis conv: compute it
        # once, split over the cores, before the sparse part (7x7: 2 MB, in L2/L3)
        _cm_schedule_basis(sch, task if chunks == 1 else None, spec, t)
        schedule_channel_major_input(sch, spec.cin, lanes, tiles=True)
        shrink_sparse_loops(sch)

    return schedule_default


def _cm_describe(spec: ConvSpec, n: int, t: Any) -> str:
    rr, vecs, chunks = _cm_tiles(spec, n, t)
    part = "CSR" if n == 1 else f"1x{n} BSR"
    where = f"fused per {rr} output rows" if chunks == 1 else "computed once (parallel over input channels)"
    return (f"channel-major basis conv {where}, {rr} output rows x {chunks} channel chunks per task, {part} 1x1 "
            f"(vector along width), tile {rr}x{n}x{vecs * t.vector_lanes}")


_CHANNEL_MAJOR = _Layout("(cin, basis filter)", _cm_sparse, _cm_compute, _cm_schedule, _cm_describe)


# ----------------------------------------------------------------------------------------
# flat pixels: channel-major, vectors of output pixels spanning rows (stride 1, narrow outputs)
# ----------------------------------------------------------------------------------------


def _fl_compute(spec: ConvSpec, data, bas, w, idx, ptr, e, n: int, lanes: int) -> tuple[Any, Callable]:
    """``xt [B, Cin, Hx, Wx]`` -> ``basis_conv [B, Cin*K², Qp]`` -> ``acc [B, Cout/N, N, Qp]``, output pixel
    ``(oh, ow)`` at flat position ``q = oh*Wx + ow`` (:func:`.channel_major.flat_geometry`)."""
    from tvm import te

    k2 = spec.kh * spec.kw
    hx, qp, wx = flat_geometry(spec, lanes)
    xt = channel_major_input(data, spec, hx, wx)
    # the last axis is indexed past Wx on purpose: row kh, column q + kw of the plane = flat q + kh*Wx + kw
    bt = te.compute((spec.batch, spec.cin * k2, qp),
                    lambda b, k, q: _basis_sum(spec, bas, k % k2, lambda kh, kw: xt[b, k // k2, kh, q + kw]),
                    name="basis_conv")
    acc = te.compute((spec.batch, -(-spec.cout // n), n, qp),
                     lambda b, r, i, q: _row_sum(ptr, r, e, lambda p: w[p, i] * bt[b, idx[p], q]), name="acc")
    return acc, lambda b, oh, ow, c: acc[b, c // n, c % n, oh * wx + ow]


def _fl_tiles(spec: ConvSpec, n: int, t: Any) -> tuple[int, int]:
    """(flat vectors per tile V, output-channel block chunks): N * V accumulators, V the largest
    divisor of the flat vectors within the register budget (7x7 on 16 lanes: all 4), and about
    4 chunks per core."""
    qp = flat_geometry(spec, t.vector_lanes)[1]
    budget = n_vector_registers(t) * 3 // 4
    vecs = pick_tile(qp // t.vector_lanes, max(1, budget // n))
    return vecs, pick_tile(-(-spec.cout // n), max(1, -(-4 * t.cores // spec.batch)))


def _fl_schedule(spec: ConvSpec, n: int, t: Any) -> Callable[[Any], None]:
    vecs, chunks = _fl_tiles(spec, n, t)
    lanes = t.vector_lanes

    def schedule_default(sch: Any) -> None:
        blk = sch.get_sblock("acc")
        bl, rl, il, ql, el = sch.get_loops(blk)
        qo, qm, qi = sch.split(ql, [None, vecs, lanes])
        rp, ri = sch.split(rl, [chunks, None])
        sch.reorder(bl, rp, qo, ri, el, qm, il, qi)
        sch.parallel(sch.fuse(bl, rp))
        local = sch.cache_write(blk, 0, "local")  # registers -> acc, then the NHWC epilogue as its own pass
        sch.reverse_compute_at(local, ri)
        sch.vectorize(sch.get_loops(local)[-1])
        sch.vectorize(qi)
        sch.unroll(qm)
        sch.unroll(il)
        sch.annotate(el, SPARSE_ROW_ANN, 1)
        sch.decompose_reduction(blk, el)
        ol = sch.get_loops(sch.get_sblock("out"))
        sch.parallel(sch.fuse(ol[0], ol[1]))
        _cm_schedule_basis(sch, None, spec, t)
        schedule_channel_major_input(sch, spec.cin, lanes, tiles=True)
        shrink_sparse_loops(sch)

    return schedule_default


def _fl_describe(spec: ConvSpec, n: int, t: Any) -> str:
    vecs, chunks = _fl_tiles(spec, n, t)
    part = "CSR" if n == 1 else f"1x{n} BSR"
    qp = flat_geometry(spec, t.vector_lanes)[1]
    return (f"flat-pixel channel-major basis conv over {qp} pixels, computed once (parallel over input channels), "
            f"{part} 1x1 in {chunks} channel chunks, tile {n}x{vecs * t.vector_lanes}")


_FLAT = _Layout("(cin, basis filter)", _cm_sparse, _fl_compute, _fl_schedule, _fl_describe)


# ----------------------------------------------------------------------------------------
# NHWC: vector over the N output channels of a block (1xN blocks at least a vector wide)
# ----------------------------------------------------------------------------------------


def _vn_sparse(coefficients: np.ndarray, n: int) -> Any:
    cout, cin, k2 = coefficients.shape
    # columns (basis filter, cin): the NHWC basis conv writes whole input-channel vectors per filter
    return matrix_to_bsr(coefficients.transpose(0, 2, 1).reshape(cout, k2 * cin), n)


def _vn_compute(spec: ConvSpec, data, bas, w, idx, ptr, e, n: int, lanes: int) -> tuple[Any, Callable]:
    from tvm import te

    cin, k2 = spec.cin, spec.kh * spec.kw
    sh, sw = spec.stride
    xp = pad_input(data, spec)
    bn = te.compute(
        (spec.batch, spec.out_h, spec.out_w, k2 * cin),
        lambda b, y, x, k: _basis_sum(spec, bas, k // cin, lambda kh, kw: xp[b, y * sh + kh, x * sw + kw, k % cin]),
        name="basis_conv")
    nb = -(-spec.cout // n)
    acc = te.compute((spec.batch, spec.out_h, spec.out_w, nb, n),
                     lambda b, oh, ow, r, i: _row_sum(ptr, r, e, lambda p: w[p, i] * bn[b, oh, ow, idx[p] % (k2 * cin)]),
                     name="acc")
    return acc, lambda b, oh, ow, c: acc[b, oh, ow, c // n, c % n]


def _vn_tile(spec: ConvSpec, n: int, t: Any) -> int:
    return pick_tile(spec.out_w, max(1, n_vector_registers(t) * 3 // 4 // -(-n // t.vector_lanes)))


def _vn_schedule(spec: ConvSpec, n: int, t: Any) -> Callable[[Any], None]:
    tile = _vn_tile(spec, n, t)
    vec_c = pick_tile(spec.cin, t.vector_lanes)
    k2 = spec.kh * spec.kw

    def schedule_default(sch: Any) -> None:
        bl, ohl, owl, rl, il, el = sch.get_loops(sch.get_sblock("acc"))
        owo, owi = sch.split(owl, [None, tile])
        task = _schedule_sparse_acc(sch, [bl, ohl, owo, rl, el, owi, il], [bl, ohl], rl, il, (owi,), el)
        if spec.cout % n == 0:
            sch.vectorize(sch.get_loops(sch.get_sblock("out"))[-1])
        bc, inner = _basis_loops_in_task(sch, task)
        x, k = inner[-2:]
        j, cio, cii = sch.split(k, [k2, None, vec_c])
        sch.reorder(x, cio, j, cii)
        sch.unroll(j)
        sch.vectorize(cii)
        if any(spec.padding):
            pl = sch.get_loops(sch.get_sblock("pad"))
            sch.parallel(sch.fuse(pl[0], pl[1]))
        shrink_sparse_loops(sch)

    return schedule_default


def _vn_describe(spec: ConvSpec, n: int, t: Any) -> str:
    return f"NHWC basis conv fused per output row, 1x{n} BSR 1x1 (vector over N), tile {_vn_tile(spec, n, t)}"


_NHWC_VECTOR_N = _Layout("(basis filter, cin)", _vn_sparse, _vn_compute, _vn_schedule, _vn_describe)


# ----------------------------------------------------------------------------------------
# perf model and family
# ----------------------------------------------------------------------------------------

# relative to the dense kernels' efficiency; from an interleaved measurement of the basis conv
# alone vs the dense conv (64->64 @56, x86), see docs/interspace.md
BASIS_CONV_EFFICIENCY = 0.5


def predict_interspace_ms(spec: ConvSpec, density: float, n: int, target: "NamedTarget",
                          prm: "PerfParams | None" = None) -> float:
    """Roofline milliseconds of :func:`interspace_conv2d`: basis conv + sparse 1x1, bounded by traffic.

    * basis conv: ``2 * B*P * Cin * K⁴`` FLOPs, ``P`` the computed pixels per channel (whole vectors
      per output row, ``OH*OWp``, or the flat grid's ``Qp``, :func:`.channel_major.computed_pixels`), at
      ``BASIS_CONV_EFFICIENCY`` x the dense kernels' throughput (its reduction is only K² long);
    * sparse 1x1 over ``Cin*K²`` basis channels at the coefficient ``density``: the 1xN term
      (N output channels per vector, ``alpha_1xn``) or the CSR term of the direct sparse conv
      (vector along the width, per-nonzero and per-row overheads, ``alpha_csr_3x3``); the basis
      rows are read from cache (computed per row tile in the same kernel);
    * plus one copy of the input (padded NHWC or channel-major).
    """
    from ..plan.roofline import NONZERO_OVERHEAD_FMAS, ROW_OVERHEAD_FMAS, params_for

    prm = prm or params_for(target)
    peak = target.peak_gflops * 1e9 * prm.dense_efficiency
    bw = target.mem_bandwidth_gbs * 1e9
    lanes, k2 = target.vector_lanes, spec.kh * spec.kw
    owp = -(-spec.out_w // lanes) * lanes
    flat = n < lanes and prefers_flat_pixels(spec, lanes)
    computed = computed_pixels(spec, lanes, flat)  # per channel: OH*OWp, or the flat grid's Qp
    t_basis = 2 * spec.batch * computed * spec.cin * k2 * k2 / (peak * BASIS_CONV_EFFICIENCY)
    sparse_flops = 2 * density * spec.batch * spec.out_h * spec.out_w * spec.cout * spec.cin * k2
    if n > 1:
        t_sparse = prm.alpha_1xn * sparse_flops / (peak * min(1.0, n / lanes))
    else:
        nnz_per_row = max(density * spec.cin * k2, 1e-3)
        vectors = computed // lanes if flat else owp // lanes  # FMAs per nonzero (per output row)
        overhead = 1.0 + NONZERO_OVERHEAD_FMAS / vectors + ROW_OVERHEAD_FMAS / nnz_per_row
        t_sparse = prm.alpha_csr_3x3 * sparse_flops * (computed / (spec.out_h * spec.out_w)) * overhead / peak
    in_bytes = 4 * spec.batch * spec.in_h * spec.in_w * spec.cin
    out_bytes = 4 * spec.batch * spec.out_h * spec.out_w * spec.cout
    w_bytes = 4 * spec.cout * spec.cin * k2 * density * (1 + 1 / max(n, 1))
    t_mem = (in_bytes + out_bytes + w_bytes) / bw
    return (max(t_basis + t_sparse, t_mem) + 2 * in_bytes / bw) * 1e3


def _accepts(info: "LayerInfo") -> bool:
    return getattr(info, "interspace", None) is not None and info.groups == 1


def _build(info: "LayerInfo", n: int, target: "NamedTarget") -> KernelInstance:
    f = info.interspace
    return interspace_conv2d(info.spec, f.coefficients, f.basis, info.bias, target, n=f.n)


def _predict(info: "LayerInfo", target: "NamedTarget", prm: "PerfParams") -> float | None:
    if not _accepts(info):
        return None
    return predict_interspace_ms(info.spec, info.interspace.density, info.interspace.n, target, prm)


def _describe(info: "LayerInfo") -> str:
    f, s = info.interspace, info.spec
    k2 = s.kh * s.kw
    part = "CSR" if f.n <= 1 else f"1x{f.n}-block"
    return (f"interspace: basis conv ({k2} filters) + {part} 1x1 over {s.cin}x{k2} basis channels, "
            f"coefficient density {f.density:.2f}")


FAMILY = KernelFamily(Format.INTERSPACE, LayerOp.CONV2D, build=_build, accepts=_accepts, predict=_predict,
                      describe=_describe)
