"""Sparse fully-connected layer: ``out[b, o] = act(sum_k W[o, k] * data[b, k] + bias[o])``.

``fmt="bsr"``: blocks of ``n`` output rows x 1 input column, the ``n`` outputs are the
vector axis (one broadcast input scalar per nonzero block). ``fmt="csr"``: plain CSR
(``n`` is ignored), scalar code with the row loop parallel. Index arrays are arguments
(``consts``); the row loop is shrunk to the true row length by
:func:`.sparse_conv2d.shrink_sparse_loops`.

PrimFunc arguments: ``data [batch, in]``, ``w_data``, ``w_indices``, ``w_indptr``,
``[bias [out]]``, ``out [batch, out]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UnsupportedLayerError
from .base import ACTIVATIONS, KernelInstance, apply_activation, unique_name
from .formats import kernel_arrays, matrix_to_bsr
from .sparse_conv2d import SPARSE_ROW_ANN, resolve_target, shrink_sparse_loops


def sparse_linear(
    weight: np.ndarray,
    bias: np.ndarray | None,
    fmt: str,
    n: int,
    batch: int,
    activation: str | None,
    target: Any,
) -> KernelInstance:
    """Sparse linear layer, kind ``"bsr_linear"`` or ``"csr_linear"``."""
    from tvm import te, tirx

    if fmt not in ("bsr", "csr"):
        raise UnsupportedLayerError(f"sparse_linear format must be 'bsr' or 'csr', got {fmt!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    t = resolve_target(target)
    weight = np.asarray(weight, dtype=np.float32)
    if weight.ndim != 2:
        raise ValueError(f"linear weight must be [out, in], got shape {weight.shape}")
    out_f_, in_f = weight.shape
    bn = 1 if fmt == "csr" else int(n)
    bsr = matrix_to_bsr(weight, bn)
    w_data, w_idx, w_ptr = kernel_arrays(bsr.data, bsr.indices, bsr.indptr)
    if fmt == "csr":
        w_data = np.ascontiguousarray(w_data.reshape(-1))
    maxlen = max(1, bsr.max_row_length)
    nb = bsr.n_block_rows
    bias_np = None if bias is None else np.ascontiguousarray(np.asarray(bias, dtype=np.float32).reshape(out_f_))

    data = te.placeholder((batch, in_f), "float32", name="data")
    W = te.placeholder(w_data.shape, "float32", name="w_data")
    IDX = te.placeholder(w_idx.shape, "int32", name="w_indices")
    PTR = te.placeholder(w_ptr.shape, "int32", name="w_indptr")
    BIAS = te.placeholder((out_f_,), "float32", name="bias") if bias_np is not None else None
    e = te.reduce_axis((0, maxlen), name="e")

    def acc_f(b, r, i):
        start = PTR[r]
        wv = W[start + e] if fmt == "csr" else W[start + e, i]
        val = wv * data[b, IDX[start + e]]
        return te.sum(tirx.if_then_else(e < PTR[r + 1] - start, val, tirx.const(0.0, "float32")), axis=e)

    acc = te.compute((batch, nb, bn), acc_f, name="acc")

    def out_f(b, o):
        v = acc[b, o // bn, o % bn]
        if BIAS is not None:
            v = v + BIAS[o]
        return apply_activation(v, activation)

    out = te.compute((batch, out_f_), out_f, name="out")
    args = [data, W, IDX, PTR] + ([BIAS] if BIAS is not None else []) + [out]
    consts = [w_data, w_idx, w_ptr] + ([bias_np] if bias_np is not None else [])
    name = unique_name(f"sparse_linear_{fmt}", weight.shape, bn, batch, activation, bias is not None,
                       w_idx.tobytes(), w_ptr.tobytes())
    func = te.create_prim_func(args).with_attr("global_symbol", name)

    def _common(sch):
        blk = sch.get_sblock("acc")
        bl, rl, il, el = sch.get_loops(blk)
        sch.reorder(rl, bl, el, il)
        sch.parallel(rl)
        sch.set_scope(blk, 0, "local")
        sch.reverse_compute_at(sch.get_sblock("out"), bl)
        if bn > 1:
            sch.vectorize(il)
        sch.annotate(el, SPARSE_ROW_ANN, 1)
        sch.decompose_reduction(blk, el)
        return bl

    def schedule_default(sch) -> None:
        _common(sch)
        shrink_sparse_loops(sch)

    def schedule_space(sch) -> None:
        bl = _common(sch)
        unroll = sch.sample_categorical([0, 16, 64], [0.4, 0.3, 0.3])
        sch.annotate(bl, "pragma_auto_unroll_max_step", unroll)

    kind = "csr_linear" if fmt == "csr" else "bsr_linear"
    return KernelInstance(
        name=name,
        kind=kind,
        func=func,
        consts=consts,
        out_shape=(batch, out_f_),
        schedule_default=schedule_default,
        schedule_space=schedule_space,
        flops=2 * bsr.nnz_blocks * bn * batch,
        info={"n": bn, "density": float(np.count_nonzero(weight)) / max(1, weight.size), "max_row_length": maxlen,
              "target": t.name},
    )
