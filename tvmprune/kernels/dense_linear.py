"""Dense linear layer ``y = act(x @ W^T + b)`` with a vectorised default schedule.

Layouts: data ``[B, in]``, weight stored transposed as ``[in, out]`` so that the schedule
streams contiguous vectors of ``vec`` outputs per input feature (a GEMV that reads the
weight exactly once), output ``[B, out]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from tvm import te

from ..target import NamedTarget, get_target
from ..plan.roofline import PerfParams, dense_ms, layer_cost
from .base import KernelInstance, apply_activation
from .family import KernelFamily
from .format import Format, LayerOp
from .identity import symbol_name

if TYPE_CHECKING:
    from ..plan.layer import LayerInfo



def linear_epilogue(y: te.Tensor, bias: te.Tensor | None, activation: str | None) -> te.Tensor:
    """``act(y + bias)`` as a stage named ``epilogue`` (or ``y`` itself when there is nothing to do)."""
    if bias is None and activation is None:
        return y

    def f(n, o):
        v = y[n, o]
        if bias is not None:
            v = v + bias[o]
        return apply_activation(v, activation)

    return te.compute(y.shape, f, name="epilogue")


def _schedule(sch: Any, vec: int, has_epilogue: bool, k_split: Any = None) -> None:
    mm = sch.get_sblock("matmul")
    wb = sch.cache_write(mm, 0, "local")
    if has_epilogue:
        sch.compute_inline(wb)
        out_block = sch.get_sblock("epilogue")
    else:
        out_block = wb
    n, o = sch.get_loops(out_block)
    o_o, o_i = sch.split(o, factors=[None, vec])
    sch.compute_at(mm, o_o)
    sch.parallel(sch.fuse(n, o_o))
    sch.vectorize(o_i)
    c_o, k = sch.get_loops(mm)[-2:]
    sch.reorder(k, c_o)
    sch.vectorize(c_o)
    init = sch.decompose_reduction(mm, k)
    sch.vectorize(sch.get_loops(init)[-1])


def dense_linear(
    weight: np.ndarray,
    bias: np.ndarray | None,
    batch: int,
    activation: str | None,
    target: "NamedTarget | str",
) -> KernelInstance:
    """Dense linear kernel. ``weight`` is PyTorch's ``[out, in]``; consts = [W^T ``[in, out]``, bias?]."""
    t = get_target(target)
    out_f, in_f = weight.shape
    x = te.placeholder((batch, in_f), name="data", dtype="float32")
    wt_np = np.ascontiguousarray(weight.T).astype("float32")
    wt = te.placeholder(wt_np.shape, name="weight", dtype="float32")
    k = te.reduce_axis((0, in_f), name="k")
    y = te.compute((batch, out_f), lambda n, o: te.sum(x[n, k] * wt[k, o], axis=k), name="matmul")
    args, consts = [x, wt], [wt_np]
    b = None
    if bias is not None:
        b = te.placeholder((out_f,), name="bias", dtype="float32")
        args.append(b)
        consts.append(np.asarray(bias, "float32").reshape(out_f))
    out = linear_epilogue(y, b, activation)
    args.append(out)
    name = symbol_name("tvmprune_dense_linear", weight.shape, batch, bias is not None, activation, t.vector_lanes)
    func = te.create_prim_func(args).with_attr("global_symbol", name)
    vec = next((v for v in (4 * t.vector_lanes, 2 * t.vector_lanes, t.vector_lanes) if out_f % v == 0), t.vector_lanes)

    def schedule_default(sch: Any) -> None:
        _schedule(sch, vec, out is not y)

    return KernelInstance(
        name=name, format=Format.DENSE, op=LayerOp.LINEAR, func=func, consts=consts, out_shape=(batch, out_f),
        schedule_default=schedule_default, schedule_space=None, flops=2 * batch * weight.size,
        info={"density": 1.0, "vec": vec},
    )


def _build(info: "LayerInfo", n: int, target: "NamedTarget") -> KernelInstance:
    return dense_linear(info.weight, info.bias, info.batch, info.activation, target)


FAMILY = KernelFamily(Format.DENSE, LayerOp.LINEAR, build=_build,
                      predict=lambda info, target, prm: dense_ms(layer_cost(info, target, prm)))
