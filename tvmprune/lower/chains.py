"""Find the conv / linear layers of a Relax function and the epilogue chain each can absorb.

For every ``relax.nn.conv2d`` (NHWC, OHWI constant weight) the chain that follows it is
absorbed when each link has a single user::

    conv2d -> add(const bias) -> add(residual tensor) -> relu | clip(0, 6)

``matmul(x, const W^T)`` (+ bias, + activation) is a linear layer. Each layer becomes a
:class:`LayerMatch`: the :class:`~tvmprune.plan.layer.LayerInfo` a planner sees, plus the
bindings the kernel will replace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..kernels.base import ConvSpec
from ..kernels.format import LayerOp
from ..plan.layer import LayerInfo
from .relax_graph import UseDef, activation_of, const_value, is_const, op_name, shape_of

LAYER_OPS = {"relax.nn.conv2d": LayerOp.CONV2D, "relax.matmul": LayerOp.LINEAR}


@dataclass
class LayerMatch:
    """One conv / linear layer of the Relax function.

    info: what the planner sees (PyTorch weight layout, epilogue).
    chain: the bindings a kernel replaces, root (the conv / matmul) first, last one's variable
        takes the kernel's result; empty when ``unsupported``.
    data: the layer's input expression; residual: the residual tensor added in the chain, or None.
    unsupported: why the layer cannot get a kernel ("" when it can).
    """

    info: LayerInfo
    chain: list[Any] = field(default_factory=list)
    data: Any = None
    residual: Any = None
    unsupported: str = ""


def _unsupported(call: Any, w: np.ndarray | None, op: LayerOp) -> str:
    if w is None:
        return "weight is not a constant"
    if op == LayerOp.CONV2D:
        a = call.attrs
        if str(a.data_layout) != "NHWC" or str(a.kernel_layout) != "OHWI" or any(int(d) != 1 for d in a.dilation):
            return "layout/dilation not supported by kernels"
    elif w.ndim != 2 or len(shape_of(call.args[0])) != 2:
        return "matmul that is not a 2-D linear layer"
    return ""


def _absorb_epilogue(ud: UseDef, root: Any, op: LayerOp, cout: int, claimed: set) -> tuple[list, Any, Any, Any]:
    """Follow single users of ``root``: bias add, residual add (convs), activation.

    Returns (chain, bias [Cout] or None, residual var or None, activation or None)."""
    chain, bias, residual, act = [root], None, None, None
    cur = root
    nxt = ud.single_user(cur.var, claimed)
    if nxt is not None and op_name(nxt.value) == "relax.add":
        x0, x1 = nxt.value.args
        other = x1 if x0.same_as(cur.var) else x0
        if is_const(other):
            cv = const_value(other)
            if cv.size == cout and cv.shape[-1] == cout and shape_of(nxt.var) == shape_of(cur.var):
                bias = cv.reshape(cout).astype("float32")
                chain.append(nxt)
                cur = nxt
                nxt = ud.single_user(cur.var, claimed)
    if op == LayerOp.CONV2D and nxt is not None and op_name(nxt.value) == "relax.add":
        x0, x1 = nxt.value.args
        other = x1 if x0.same_as(cur.var) else x0
        if not is_const(other) and not other.same_as(cur.var) and shape_of(other) == shape_of(cur.var):
            residual = other
            chain.append(nxt)
            cur = nxt
            nxt = ud.single_user(cur.var, claimed)
    if nxt is not None and activation_of(nxt.value) is not None:
        act = activation_of(nxt.value)
        chain.append(nxt)
    return chain, bias, residual, act


def _conv_info(index: int, name: str, call: Any, w: np.ndarray, bias: Any, residual: Any, act: Any) -> LayerInfo:
    a = call.attrs
    bsz, ih, iw, cin = shape_of(call.args[0])
    pad = [int(p) for p in a.padding]
    spec = ConvSpec(
        batch=bsz, in_h=ih, in_w=iw, cin=cin, cout=int(w.shape[0]), kh=int(w.shape[1]), kw=int(w.shape[2]),
        stride=(int(a.strides[0]), int(a.strides[1])), padding=(pad[0], pad[1], pad[2], pad[3]),
        groups=int(a.groups), bias=bias is not None, activation=act, residual=residual is not None,
    )
    wt = np.ascontiguousarray(w.transpose(0, 3, 1, 2))  # OHWI -> OIHW
    return LayerInfo(index, name, LayerOp.CONV2D, wt, spec=spec, bias=bias, activation=act,
                     residual=residual is not None)


def match_layers(func: Any, layer_names: list[str] | None,
                 has_kernel: Callable[[LayerInfo], bool]) -> list[LayerMatch]:
    """The conv / linear layers of ``func`` in graph order, each with its absorbable chain.

    ``layer_names``: PyTorch names of the layers in the same order (``layer<i>`` when short).
    ``has_kernel``: whether some kernel family takes a layer; only those layers claim their
    chain, so a later layer never absorbs a binding that another layer's kernel replaces.
    """
    ud = UseDef.of(func)
    names = list(layer_names or [])
    claimed: set = set()
    out: list[LayerMatch] = []
    for b in ud.bindings:
        op = LAYER_OPS.get(op_name(b.value))
        if op is None:
            continue
        idx = len(out)
        name = names[idx] if idx < len(names) else f"layer{idx}"
        call = b.value
        w = const_value(call.args[1]) if is_const(call.args[1]) else None
        why = _unsupported(call, w, op)
        if why:
            weight = np.zeros((1,), "float32") if w is None else w
            out.append(LayerMatch(LayerInfo(idx, name, op, weight), unsupported=why))
            continue
        cout = w.shape[0] if op == LayerOp.CONV2D else w.shape[1]
        chain, bias, residual, act = _absorb_epilogue(ud, b, op, cout, claimed)
        if op == LayerOp.CONV2D:
            info = _conv_info(idx, name, call, w, bias, residual, act)
        else:
            info = LayerInfo(idx, name, LayerOp.LINEAR, np.ascontiguousarray(w.T), batch=shape_of(call.args[0])[0],
                             bias=bias, activation=act)
        if has_kernel(info):
            claimed.update(link.var for link in chain)
        out.append(LayerMatch(info, chain=chain, data=call.args[0], residual=residual))
    return out
