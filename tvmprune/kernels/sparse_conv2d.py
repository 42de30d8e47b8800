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
reduce extent into an unschedulable nested block. :func:`shrink_sparse_loops` (run at the end
of the default schedule; a tuner must call it after replaying a trace) rewrites the
annotated row loop to the true row length and drops the guard, which restores FMA fusion and
skips padding. The index arrays are padded so that even the unshrunk guarded form never reads
out of bounds (MetaSchedule's runner must still be given the real index arrays).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UnsupportedLayerError
from ..plan.roofline import PerfParams, fit_compute_alpha, layer_cost, sparse_ms
from .base import ConvSpec, KernelInstance, conv_epilogue
from .family import KernelFamily, Probe
from .format import Format, LayerOp
from .identity import symbol_name
from .formats import conv_weight_to_bsr, kernel_arrays

if TYPE_CHECKING:
    from ..plan.layer import LayerInfo
    from ..target import NamedTarget


SPARSE_ROW_ANN = "tvmprune.sparse_row"


# ----------------------------------------------------------------------------------------
# helpers shared by the sparse kernels
# ----------------------------------------------------------------------------------------


def resolve_target(target: Any):
    from ..target import get_target

    return get_target(target)


def n_vector_registers(t) -> int:
    """Architectural SIMD registers of a target (32 on AVX-512 / aarch64, 16 otherwise)."""
    if t.arch == "aarch64" or t.vector_lanes >= 16:
        return 32
    return 16


def sparse_conv_placeholders(spec: ConvSpec, w_data: np.ndarray, w_index: np.ndarray, w_ptr: np.ndarray,
                             index_name: str, bias_np: np.ndarray | None) -> tuple:
    """TE placeholders of a sparse conv kernel in argument order:
    ``data, w_data, <index_name>, w_indptr, bias (or None), residual (or None)``."""
    from tvm import te

    return (
        te.placeholder(spec.in_shape, "float32", name="data"),
        te.placeholder(w_data.shape, "float32", name="w_data"),
        te.placeholder(w_index.shape, "int32", name=index_name),
        te.placeholder(w_ptr.shape, "int32", name="w_indptr"),
        te.placeholder((spec.cout,), "float32", name="bias") if bias_np is not None else None,
        te.placeholder(spec.out_shape, "float32", name="residual") if spec.residual else None,
    )


def sparse_kernel_signature(placeholders: tuple, out: Any, arrays: list[np.ndarray],
                            bias_np: np.ndarray | None) -> tuple[list, list[np.ndarray]]:
    """PrimFunc arguments (placeholders that exist, then ``out``) and the matching consts
    (``arrays`` = weight values, index, indptr; then the bias)."""
    args = [p for p in placeholders if p is not None] + [out]
    return args, list(arrays) + ([bias_np] if bias_np is not None else [])


def pick_tile(extent: int, limit: int) -> int:
    """Largest divisor of ``extent`` that is <= ``limit`` (at least 1)."""
    limit = max(1, min(limit, extent))
    for t in range(limit, 0, -1):
        if extent % t == 0:
            return t
    return 1


def check_conv(spec: ConvSpec, weight: np.ndarray, bias: np.ndarray | None, what: str) -> None:
    if spec.groups != 1:
        raise UnsupportedLayerError(
            f"{what} supports groups=1 only (got groups={spec.groups}); use the dense/depthwise kernel"
        )
    if tuple(weight.shape) != spec.weight_shape:
        raise ValueError(f"weight shape {tuple(weight.shape)} does not match spec {spec.weight_shape}")
    if spec.bias and bias is None:
        raise ValueError("spec.bias is set but no bias array was given")


def bias_array(spec_bias: bool, bias, cout: int) -> np.ndarray | None:
    if not spec_bias and bias is None:
        return None
    if bias is None:
        return np.zeros(cout, dtype=np.float32)
    return np.ascontiguousarray(np.asarray(bias, dtype=np.float32).reshape(cout))


def _binding_map(realize) -> list:
    return [(iv.var, val) for iv, val in zip(realize.block.iter_vars, realize.iter_values)]


def _lookup(pairs: list, var, default):
    for k, v in pairs:
        if k.same_as(var):
            return v
    return default


def shrink_sparse_loops(sch) -> int:
    """Rewrite every loop annotated ``tvmprune.sparse_row`` to the true row length.

    The TE computes use a static row extent (max row length) and a guard
    ``if_then_else(e < indptr[r+1] - indptr[r], w * x, 0)``. Once the loop nest is final,
    this replaces the loop extent by the guard's bound (rewritten from block iterators to
    loop variables) and the guarded value by ``w * x``. Must be the last step of a schedule
    (it is not recorded in the trace). Returns the number of loops rewritten.
    """
    import tvm
    import tvm_ffi
    from tvm import s_tir, tirx

    count = 0
    for loop_rv in _annotated_loops(sch):
        loop = sch.get(loop_rv)
        found: list = []

        def _find(node):
            if isinstance(node, s_tir.SBlockRealize) and any(
                iv.iter_type == tirx.IterVar.CommReduce for iv in node.block.iter_vars
            ):
                found.append(node)

        tvm_ffi.structural_walk(loop.body, [(s_tir.SBlockRealize, _find)])
        if len(found) != 1:
            continue
        realize = found[0]
        block = realize.block
        guards: list = []

        def _find_guard(node):
            if isinstance(node, tvm.ir.Call) and str(node.op.name).endswith("if_then_else"):
                guards.append(node)

        tvm_ffi.structural_walk(block.body, [(tvm.ir.Call, _find_guard)])
        if len(guards) != 1:
            continue
        cond = guards[0].args[0]
        if type(cond).__name__ != "LT":
            continue
        bind = _binding_map(realize)
        v_e = cond.a
        e_binding = _lookup(bind, v_e, None)
        if e_binding is None or not e_binding.same_as(loop.loop_var):
            continue  # the row loop was split / fused: leave the guarded form
        bound = tvm_ffi.structural_map(cond.b, [(tirx.Var, lambda v: _lookup(bind, v, v))])

        def _drop_guard(node):
            if isinstance(node, tvm.ir.Call) and str(node.op.name).endswith("if_then_else") and node.same_as(guards[0]):
                return node.args[1]
            return node

        new_block = tvm_ffi.structural_map(block, [(tvm.ir.Call, _drop_guard)])
        block_rv = sch.get_sblock(block.name_hint)
        sch.state.replace(sch.get_sref(block_rv), new_block, {block: new_block})
        loop = sch.get(loop_rv)
        new_loop = tirx.For(
            loop.loop_var,
            loop.min,
            bound,
            loop.kind,
            loop.body,
            loop.thread_binding,
            {k: v for k, v in loop.annotations.items() if k != SPARSE_ROW_ANN},
        )
        sch.state.replace(sch.get_sref(loop_rv), new_loop, {})
        count += 1
    return count


def _annotated_loops(sch) -> list:
    """Loop RVs carrying the ``tvmprune.sparse_row`` annotation."""
    import tvm_ffi
    from tvm import s_tir

    names: list = []
    tvm_ffi.structural_walk(sch.mod["main"].body, [(s_tir.SBlock, lambda b: names.append(b.name_hint))])
    out, seen = [], []
    for name in names:
        if name == "root":
            continue
        for lrv in sch.get_loops(sch.get_sblock(name)):
            loop = sch.get(lrv)
            if SPARSE_ROW_ANN in loop.annotations and not any(loop.same_as(x) for x in seen):
                seen.append(loop)
                out.append(lrv)
    return out


# ----------------------------------------------------------------------------------------
# 1xN BSR conv
# ----------------------------------------------------------------------------------------


def _pad_input(data, spec: ConvSpec):
    from tvm import te, tirx

    pt, pl, pb, pr = spec.padding
    if not any(spec.padding):
        return data
    b_, h_, w_, c_ = spec.in_shape
    hp, wp = h_ + pt + pb, w_ + pl + pr

    def f(b, h, w, c):
        ok = tirx.all(h >= pt, h < pt + h_, w >= pl, w < pl + w_)
        return tirx.if_then_else(ok, data[b, h - pt, w - pl, c], tirx.const(0.0, "float32"))

    return te.compute((b_, hp, wp, c_), f, name="pad")


def sparse_conv2d_1xn(
    spec: ConvSpec, weight: np.ndarray, bias: np.ndarray | None, n: int, target: Any
) -> KernelInstance:
    """1xN block-sparse conv (NHWC in/out), kind ``"1xN"``.

    PrimFunc arguments: ``data [B,H,W,Cin]``, ``w_data [nnz+L, n]``, ``w_indices [nnz+L]``,
    ``w_indptr [ceil(Cout/n)+1]``, ``[bias [Cout]]``, ``[residual [B,OH,OW,Cout]]``,
    ``out [B,OH,OW,Cout]`` (``L`` = max row length, see :func:`.formats.kernel_arrays`).
    """
    from tvm import te, tirx

    t = resolve_target(target)
    weight = np.asarray(weight, dtype=np.float32)
    check_conv(spec, weight, bias, "sparse_conv2d_1xn")
    bsr = conv_weight_to_bsr(weight, n)
    wp_ = spec.in_w + spec.padding[1] + spec.padding[3]
    k_ = bsr.indices.astype(np.int64)
    kh_i, kw_i, c_i = k_ // (spec.kw * spec.cin), (k_ // spec.cin) % spec.kw, k_ % spec.cin
    offsets = ((kh_i * wp_ + kw_i) * spec.cin + c_i).astype(np.int32)
    w_data, w_idx, w_ptr = kernel_arrays(bsr.data, offsets, bsr.indptr)
    maxlen = max(1, bsr.max_row_length)
    nb = bsr.n_block_rows
    b_ = spec.batch
    oh_, ow_, cout, cin = spec.out_h, spec.out_w, spec.cout, spec.cin
    sh, sw = spec.stride[0], spec.stride[1]
    bias_np = bias_array(spec.bias, bias, cout)

    bufs = sparse_conv_placeholders(spec, w_data, w_idx, w_ptr, "w_indices", bias_np)
    data, W, IDX, PTR, BIAS, RES = bufs
    xp = _pad_input(data, spec)
    e = te.reduce_axis((0, maxlen), name="e")

    def acc_f(b, oh, ow, r, i):
        start = PTR[r]
        # offsets are pre-decoded: off = (kh * Wp + kw) * Cin + cin; indexing the last axis
        # past Cin addresses the right element of the row-major (padded) input and saves
        # the div/mod decode of (kh, kw, cin) per nonzero
        val = W[start + e, i] * xp[b, oh * sh, ow * sw, IDX[start + e]]
        return te.sum(tirx.if_then_else(e < PTR[r + 1] - start, val, tirx.const(0.0, "float32")), axis=e)

    acc = te.compute((b_, oh_, ow_, nb, n), acc_f, name="acc")

    out = conv_epilogue(spec.out_shape, lambda b, oh, ow, c: acc[b, oh, ow, c // n, c % n], BIAS, RES, spec.activation, "out")
    args, consts = sparse_kernel_signature(bufs, out, [w_data, w_idx, w_ptr], bias_np)
    name = symbol_name("sparse_conv2d_1xn", spec, n, w_idx.tobytes(), w_ptr.tobytes())
    func = te.create_prim_func(args).with_attr("global_symbol", name)

    lanes = t.vector_lanes
    regs_per_px = -(-n // lanes)
    t_max = max(1, (n_vector_registers(t) * 3 // 4) // regs_per_px)
    tile_default = pick_tile(ow_, t_max)
    has_pad = any(spec.padding)

    def _common(sch, tile_rv_or_int, unroll_inner: bool):
        blk = sch.get_sblock("acc")
        bl, ohl, owl, rl, il, el = sch.get_loops(blk)
        if isinstance(tile_rv_or_int, int):
            owo, owi = sch.split(owl, [None, tile_rv_or_int])
        else:
            owo, owi = sch.split(owl, tile_rv_or_int)
        sch.reorder(bl, ohl, owo, rl, el, owi, il)
        fused = sch.fuse(bl, ohl)
        at = rl
        sch.parallel(fused)
        sch.set_scope(blk, 0, "local")
        sch.reverse_compute_at(sch.get_sblock("out"), at)
        sch.vectorize(il)
        if unroll_inner:
            sch.unroll(owi)
        sch.annotate(el, SPARSE_ROW_ANN, 1)
        sch.decompose_reduction(blk, el)
        oblk = sch.get_sblock("out")
        ol = sch.get_loops(oblk)
        # inner loops of the epilogue: (ow_i, c); vectorize c when it is a whole block
        if cout % n == 0:
            sch.vectorize(ol[-1])
        if has_pad:
            pblk = sch.get_sblock("pad")
            pl = sch.get_loops(pblk)
            sch.parallel(sch.fuse(pl[0], pl[1]))
            sch.vectorize(pl[-1]) if cin % lanes == 0 else None
        return fused

    def schedule_default(sch) -> None:
        _common(sch, tile_default, True)
        shrink_sparse_loops(sch)

    def schedule_space(sch) -> None:
        blk = sch.get_sblock("acc")
        owl = sch.get_loops(blk)[2]
        tiles = sch.sample_perfect_tile(owl, n=2, max_innermost_factor=t_max)
        fused = _common(sch, tiles, False)
        owi = sch.get_loops(sch.get_sblock("acc_update"))[-2]
        unroll = sch.sample_categorical([0, 1], [0.2, 0.8])
        sch.annotate(owi, "pragma_unroll_explicit", unroll)
        sch.annotate(owi, "pragma_auto_unroll_max_step", 512)
        del fused

    nnz = bsr.nnz_blocks * n
    flops = 2 * nnz * b_ * oh_ * ow_
    return KernelInstance(
        name=name,
        format=Format.BSR,
        op=LayerOp.CONV2D,
        func=func,
        consts=consts,
        out_shape=spec.out_shape,
        schedule_default=schedule_default,
        schedule_space=schedule_space,
        flops=flops,
        info={
            "n": n,
            "density": float(np.count_nonzero(weight)) / max(1, weight.size),
            "block_density": bsr.density,
            "nnz_blocks": bsr.nnz_blocks,
            "max_row_length": maxlen,
            "layout": "NHWC, vector over N output channels, tile of %d output pixels" % tile_default,
            "index_order": "(kh, kw, cin)",
        },
    )


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
