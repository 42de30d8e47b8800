"""Find the conv / linear layers of a Relax function and the epilogue chain each can absorb.

For every ``relax.nn.conv2d`` (NHWC, OHWI constant weight) the chain that follows it is
absorbed when each link has a single user::

    conv2d -> add / multiply(const per channel)* -> add(residual tensor) -> activation

(the per-channel multiplies fold into the weights, the adds into the bias; the activation is any
elementwise spelling of relu / relu6 / silu / gelu / sigmoid / hardswish / hardsigmoid, see
:mod:`.activation_match`)

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
from .activation_match import match_activation
from .relax_graph import UseDef, const_value, is_const, op_name, shape_of

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


@dataclass
class Epilogue:
    """What a layer's chain computes after the conv / matmul: ``act((y * scale + bias) + residual)``.

    chain: the bindings, root first; scale: per-output-channel factor folded into the weight
    (ConvNeXt's layer scale, an unfolded BN's multiply) or None; bias [Cout] or None; residual:
    the residual tensor or None; activation: a name of ``kernels.base.ACTIVATIONS`` or None.
    """

    chain: list[Any]
    scale: np.ndarray | None = None
    bias: np.ndarray | None = None
    residual: Any = None
    activation: str | None = None


def _per_channel_const(ud: UseDef, b: Any, cur: Any, cout: int) -> np.ndarray | None:
    """The [Cout] constant of ``b = add|multiply(cur, const)`` (a scalar is broadcast), else None."""
    x0, x1 = b.value.args
    other = x1 if x0.same_as(cur.var) else x0
    if not is_const(other) or shape_of(b.var) != shape_of(cur.var):
        return None
    cv = const_value(other)
    if cv.size == 1:
        return np.full(cout, float(cv.reshape(())), "float32")
    if cv.size == cout and cv.shape[-1] == cout:
        return cv.reshape(cout).astype("float32")
    return None


def _absorb_affine(ud: UseDef, ep: Epilogue, cout: int, claimed: set) -> Any:
    """Absorb ``add(const)`` / ``multiply(const)`` links (per channel) into ``ep``'s bias / scale;
    returns the next single user after them."""
    cur = ep.chain[-1]
    nxt = ud.single_user(cur.var, claimed)
    while nxt is not None and op_name(nxt.value) in ("relax.add", "relax.multiply"):
        if match_activation(ud, cur.var, claimed) is not None:
            break  # hardsigmoid's ``x + 3`` belongs to the activation
        c = _per_channel_const(ud, nxt, cur, cout)
        if c is None:
            break
        if op_name(nxt.value) == "relax.add":
            ep.bias = c if ep.bias is None else ep.bias + c
        else:
            ep.scale = c if ep.scale is None else ep.scale * c
            ep.bias = None if ep.bias is None else ep.bias * c
        ep.chain.append(nxt)
        cur = nxt
        nxt = ud.single_user(cur.var, claimed)
    return nxt


def _absorb_epilogue(ud: UseDef, root: Any, op: LayerOp, cout: int, claimed: set) -> Epilogue:
    """Follow single users of ``root``: per-channel scale / bias, residual add (convs), activation."""
    ep = Epilogue([root])
    nxt = _absorb_affine(ud, ep, cout, claimed)
    cur = ep.chain[-1]
    if op == LayerOp.CONV2D and nxt is not None and op_name(nxt.value) == "relax.add":
        x0, x1 = nxt.value.args
        other = x1 if x0.same_as(cur.var) else x0
        if not is_const(other) and not other.same_as(cur.var) and shape_of(other) == shape_of(cur.var):
            ep.residual = other
            ep.chain.append(nxt)
            cur = nxt
    found = match_activation(ud, cur.var, claimed)
    if found is not None:
        links, ep.activation = found
        ep.chain.extend(links)
    return ep


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
        ep = _absorb_epilogue(ud, b, op, cout, claimed)
        if ep.scale is not None:  # y * s == conv(x, w * s): fold into the output channels
            w = w * (ep.scale.reshape(-1, 1, 1, 1) if op == LayerOp.CONV2D else ep.scale.reshape(1, -1))
        if op == LayerOp.CONV2D:
            info = _conv_info(idx, name, call, w, ep.bias, ep.residual, ep.activation)
        else:
            info = LayerInfo(idx, name, LayerOp.LINEAR, np.ascontiguousarray(w.T), batch=shape_of(call.args[0])[0],
                             bias=ep.bias, activation=ep.activation)
        if has_kernel(info):
            claimed.update(link.var for link in ep.chain)
        out.append(LayerMatch(info, chain=ep.chain, data=call.args[0], residual=ep.residual))
    return out
