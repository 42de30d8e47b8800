"""Sparse fully-connected layer: ``out[b, o] = act(sum_k W[o, k] * data[b, k] + bias[o])``.

``fmt="bsr"``: blocks of ``n`` output rows x 1 input column, the ``n`` outputs are the
vector axis (one broadcast input scalar per nonzero block). ``fmt="csr"``: plain CSR
(``n`` is ignored), scalar code with the row loop parallel. Index arrays are arguments
(``consts``); the row loop is shrunk to the true row length by
:func:`.sparse_loops.shrink_sparse_loops`.

PrimFunc arguments: ``data [batch, in]``, ``w_data``, ``w_indices``, ``w_indptr``,
``[bias [out]]``, ``out [batch, out]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UnsupportedLayerError
from ..plan.roofline import PerfParams, layer_cost, sparse_ms
from .base import ACTIVATIONS, KernelInstance, apply_activation
from .family import KernelFamily
from .format import Format, LayerOp
from .identity import symbol_name
from .formats import kernel_arrays, matrix_to_bsr
from .sparse_loops import SPARSE_ROW_ANN, shrink_sparse_loops
from .sparse_space import row_split, unroll
from .target_params import resolve_target

if TYPE_CHECKING:
    from ..plan.layer import LayerInfo
    from ..target import NamedTarget


def _check_linear(fmt: "Format | str", activation: str | None) -> Format:
    """``fmt`` as a :class:`Format` after checking it and ``activation``.

    Raises:
        UnsupportedLayerError: ``fmt`` is neither BSR nor CSR.
        ValueError: unknown activation.
    """
    if fmt not in ("bsr", Format.BSR, Format.CSR):
        raise UnsupportedLayerError(f"sparse_linear format must be 'bsr' or 'csr', got {fmt!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    return Format(fmt)


def _linear_compute(bufs: tuple, batch: int, in_f: int, out_features: int, bn: int, n_block_rows: int,
                    maxlen: int, activation: str | None) -> tuple[Any, Any]:
    """TE ``data [batch, in]`` and ``out [batch, out] = act(acc + bias)`` over
    ``acc [batch, out/bn, bn]``; ``bufs`` = ``(w_data, w_indices, w_indptr, bias or None)``."""
    from tvm import te, tirx

    W, IDX, PTR, BIAS = bufs
    data = te.placeholder((batch, in_f), "float32", name="data")
    e = te.reduce_axis((0, maxlen), name="e")

    def acc_f(b, r, i):
        start = PTR[r]
        wv = W[start + e] if len(W.shape) == 1 else W[start + e, i]  # CSR values are flat
        val = wv * data[b, IDX[start + e]]
        return te.sum(tirx.if_then_else(e < PTR[r + 1] - start, val, tirx.const(0.0, "float32")), axis=e)

    acc = te.compute((batch, n_block_rows, bn), acc_f, name="acc")

    def out_f(b, o):
        v = acc[b, o // bn, o % bn]
        if BIAS is not None:
            v = v + BIAS[o]
        return apply_activation(v, activation)

    return data, te.compute((batch, out_features), out_f, name="out")


@dataclass(frozen=True)
class _LinearSchedule:
    """Schedules of the sparse linear layer: the ``bn`` outputs of a block the vector axis, the
    block-row loop split ``[parallel chunks, outside the batch loop, inside]``
    (:func:`.sparse_space.row_split`). The default (every block row its own parallel iteration,
    the batch inside it) is one point of the space; the space also samples the unroll of the
    inner rows (see :mod:`.sparse_space`)."""

    bn: int
    n_block_rows: int

    def default_knobs(self) -> dict:
        return {"split": (self.n_block_rows, 1, 1), "unroll": (0, 0)}

    def apply(self, sch: Any, knobs: dict) -> None:
        blk = sch.get_sblock("acc")
        bl, rl, il, el = sch.get_loops(blk)
        rp, ro, ri = row_split(sch, rl, knobs["split"])
        sch.reorder(rp, ro, bl, ri, el, il)
        sch.parallel(rp)
        sch.set_scope(blk, 0, "local")
        sch.reverse_compute_at(sch.get_sblock("out"), ri)
        if self.bn > 1:
            sch.vectorize(il)
        unroll(sch, ri, knobs["unroll"])
        sch.annotate(el, SPARSE_ROW_ANN, 1)
        sch.decompose_reduction(blk, el)

    def default(self, sch: Any) -> None:
        self.apply(sch, self.default_knobs())
        shrink_sparse_loops(sch)

    def space(self, sch: Any) -> None:
        self.apply(sch, dict.fromkeys(self.default_knobs()))


def sparse_linear(
    weight: np.ndarray,
    bias: np.ndarray | None,
    fmt: "Format | str",
    n: int,
    batch: int,
    activation: str | None,
    target: Any,
) -> KernelInstance:
    """Sparse linear layer in ``Format.BSR`` (``"bsr"`` / ``"1xN"``, blocks of ``n`` rows) or
    ``Format.CSR``; kind ``"bsr_linear"`` or ``"csr_linear"``."""
    from tvm import te

    fmt = _check_linear(fmt, activation)
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
    bias_np = None if bias is None else np.ascontiguousarray(np.asarray(bias, dtype=np.float32).reshape(out_f_))

    bufs = (
        te.placeholder(w_data.shape, "float32", name="w_data"),
        te.placeholder(w_idx.shape, "int32", name="w_indices"),
        te.placeholder(w_ptr.shape, "int32", name="w_indptr"),
        te.placeholder((out_f_,), "float32", name="bias") if bias_np is not None else None,
    )
    data, out = _linear_compute(bufs, batch, in_f, out_f_, bn, bsr.n_block_rows, maxlen, activation)
    args = [data] + [b for b in bufs if b is not None] + [out]
    consts = [w_data, w_idx, w_ptr] + ([bias_np] if bias_np is not None else [])
    fmt_name = "csr" if fmt == Format.CSR else "bsr"
    name = symbol_name(f"sparse_linear_{fmt_name}", weight.shape, bn, batch, activation, bias is not None,
                       w_idx.tobytes(), w_ptr.tobytes())
    func = te.create_prim_func(args).with_attr("global_symbol", name)
    sched = _LinearSchedule(bn, bsr.n_block_rows)
    return KernelInstance(
        name=name,
        format=fmt,
        op=LayerOp.LINEAR,
        func=func,
        consts=consts,
        out_shape=(batch, out_f_),
        schedule_default=sched.default,
        schedule_space=sched.space,
        flops=2 * bsr.nnz_blocks * bn * batch,
        info={"n": bn, "density": float(np.count_nonzero(weight)) / max(1, weight.size), "max_row_length": maxlen,
              "target": t.name},
    )


def _build_bsr(info: "LayerInfo", n: int, target: "NamedTarget") -> KernelInstance:
    return sparse_linear(info.weight, info.bias, Format.BSR, n or 1, info.batch, info.activation, target)


def _build_csr(info: "LayerInfo", n: int, target: "NamedTarget") -> KernelInstance:
    return sparse_linear(info.weight, info.bias, Format.CSR, n or 1, info.batch, info.activation, target)


def _predict_bsr(info: "LayerInfo", target: "NamedTarget", prm: PerfParams) -> float | None:
    n = info.block_n
    if not n:
        return None
    return sparse_ms(layer_cost(info, target, prm), prm.alpha_1xn, n, min(1.0, n / target.vector_lanes))


def _predict_csr(info: "LayerInfo", target: "NamedTarget", prm: PerfParams) -> float:
    return sparse_ms(layer_cost(info, target, prm), prm.alpha_csr_1x1, 1)


BSR_FAMILY = KernelFamily(Format.BSR, LayerOp.LINEAR, build=_build_bsr, predict=_predict_bsr,
                          describe=lambda info: f"1x{info.block_n} blocks, density {info.density:.2f}")
CSR_FAMILY = KernelFamily(Format.CSR, LayerOp.LINEAR, build=_build_csr, predict=_predict_csr,
                          describe=lambda info: f"unstructured, density {info.density:.2f}")
