"""Remove layout ops (``permute_dims``, ``reshape``) that only move data around elementwise ops.

The import converts convs to NHWC once, but PyTorch's own layout ops stay, and ``ConvertLayout``
wraps the ops it has no rule for (``clip``: ReLU6 / hardswish, the layer-scale multiply of
ConvNeXt) in NHWC -> NCHW -> NHWC transposes; ``torch.export`` flattens a channels-last Linear
into ``reshape -> matmul -> reshape`` with the GELU between two reshapes. None of these change
what an elementwise op computes, so :func:`sink_layout_ops` moves each layout op *below* the
elementwise ops that read it, where it meets its inverse and both disappear::

    y = permute(x, p); z = clip(y)          ->  z' = clip(x); z = permute(z', p)
    permute(permute(x, p), q)               ->  permute(x, p∘q)  (nothing when the identity)
    reshape(reshape(x, s1), s2)             ->  reshape(x, s2)   (nothing when x has shape s2)

An op is moved only when every tensor it reads is the same kind of layout view of a source
(same permutation / same source shape) or a constant that can be put into the source's layout,
and only when each such view has no other reader (else the layout op would be duplicated).
A layout change that pays (the NCHW output of the model, a real reshape before a flatten) stays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .relax_graph import is_const, const_value, op_name, shape_of, vars_in

# Ops whose output element i depends only on input element i (after broadcasting).
ELEMENTWISE_UNARY = {"relax.clip", "relax.sigmoid", "relax.tanh", "relax.erf", "relax.exp", "relax.nn.relu",
                     "relax.nn.relu6", "relax.nn.gelu", "relax.nn.gelu_tanh", "relax.nn.silu", "relax.negative",
                     "relax.sqrt", "relax.rsqrt", "relax.abs"}
ELEMENTWISE_BINARY = {"relax.add", "relax.subtract", "relax.multiply", "relax.divide", "relax.maximum",
                      "relax.minimum", "relax.power"}
KEEPDIMS_REDUCTIONS = {"relax.mean", "relax.sum", "relax.max", "relax.min"}


@dataclass(frozen=True)
class LayoutView:
    """``var`` is ``source`` seen through one layout op: ``permute_dims(source, perm)`` (perm set) or
    ``reshape(source, shape_of(var))`` (perm None)."""

    source: Any
    perm: tuple[int, ...] | None


def _perm_axes(call: Any, rank: int) -> tuple[int, ...]:
    axes = call.attrs.axes
    return tuple(range(rank))[::-1] if axes is None else tuple(int(a) for a in axes)


def _const_in_source_layout(value: np.ndarray, view: LayoutView, out_shape: tuple[int, ...],
                            src_shape: tuple[int, ...]) -> np.ndarray | None:
    """The constant operand rewritten for the source's layout, or None when it cannot be."""
    if value.size == 1:
        return value.reshape(())
    if view.perm is not None:
        full = value.reshape((1,) * (len(out_shape) - value.ndim) + value.shape)
        inv = np.argsort(view.perm)
        return np.ascontiguousarray(full.transpose(inv))
    # reshape view: only a constant varying along the last axis, which the reshape keeps
    if src_shape[-1] != out_shape[-1] or int(np.prod(value.shape[:-1])) != 1:
        return None
    return value.reshape(value.shape[-1])


class _Sinker:
    """One forward pass over a dataflow block (see the module docstring)."""

    def __init__(self, bindings: list[Any], uses: dict[Any, int]):
        self.bindings = bindings
        self.uses = dict(uses)  # remaining readers of each var in the rewritten graph
        self.views: dict[Any, LayoutView] = {}
        self.subst: dict[Any, Any] = {}

    def run(self, bb: Any) -> None:
        for b in self.bindings:
            new = self._rewrite(bb, b)
            if new is not None:
                self.subst[b.var] = new
            else:
                self.subst[b.var] = bb.emit(self._substitute(b.value))

    def _substitute(self, expr: Any) -> Any:
        from tvm import relax

        if isinstance(expr, relax.Var) or type(expr).__name__ in ("Var", "DataflowVar"):
            return self.subst.get(expr, expr)
        name = type(expr).__name__
        if name == "Tuple":
            return relax.Tuple([self._substitute(f) for f in expr.fields])
        if name == "TupleGetItem":
            return relax.TupleGetItem(self._substitute(expr.tuple_value), expr.index)
        if name == "Call":
            return relax.Call(expr.op, [self._substitute(a) for a in expr.args], expr.attrs, expr.ty_args)
        return expr

    def _rewrite(self, bb: Any, b: Any) -> Any | None:
        name = op_name(b.value)
        if name == "relax.permute_dims":
            return self._compose(bb, b, perm=_perm_axes(b.value, len(shape_of(b.var))))
        if name == "relax.reshape":
            return self._compose(bb, b, perm=None)
        if name in ELEMENTWISE_UNARY or name in ELEMENTWISE_BINARY:
            return self._sink(bb, b)
        if name in KEEPDIMS_REDUCTIONS:
            return self._sink_reduction(bb, b)
        return None

    def _sink_reduction(self, bb: Any, b: Any) -> Any | None:
        """``mean(permute(x, p), axes, keepdims)`` -> ``permute(mean(x, p[axes], keepdims), p)``."""
        from tvm import relax

        call = b.value
        x = call.args[0]
        view = self.views.get(x)
        if view is None or view.perm is None or self.uses.get(x, 0) != 1:
            return None
        rank = len(view.perm)
        axes = [int(a) % rank for a in call.attrs.axis] if call.attrs.axis is not None else list(range(rank))
        keepdims = bool(call.attrs.keepdims)
        reduce = getattr(relax.op, op_name(call).rsplit(".", 1)[1])
        inner = bb.emit(reduce(view.source, [view.perm[a] for a in axes], keepdims=keepdims))
        self.uses[x] = 0
        if keepdims:
            return self._emit_view(bb, b, inner, view.perm)
        kept = [view.perm[i] for i in range(rank) if i not in axes]  # source axes, in the output's order
        order = tuple(sorted(kept).index(k) for k in kept)
        return inner if order == tuple(range(len(kept))) else self._emit_view(bb, b, inner, order)

    def _compose(self, bb: Any, b: Any, perm: tuple[int, ...] | None) -> Any:
        from tvm import relax

        x = b.value.args[0]
        inner = self.views.get(x)
        if inner is not None and (inner.perm is None) == (perm is None):
            self.uses[x] -= 1  # this reader now reads the source directly
            src = inner.source
            perm = None if perm is None else tuple(inner.perm[i] for i in perm)
        else:
            src = self._substitute(x)
        if (perm is None and tuple(shape_of(src)) == shape_of(b.var)) or perm == tuple(range(len(shape_of(b.var)))):
            return src
        return self._emit_view(bb, b, src, perm)

    def _sink(self, bb: Any, b: Any) -> Any | None:
        """``op(view(a), view(c) | const)`` -> ``view(op(a, c'))`` when that is allowed."""
        from tvm import relax

        call = b.value
        tensors = [a for a in call.args if a in self.views or type(a).__name__ in ("Var", "DataflowVar")]
        views = [self.views.get(a) for a in tensors]
        if not views or any(v is None for v in views):
            return None
        first = views[0]
        src_shape = shape_of(first.source)
        if any(v.perm != first.perm for v in views):
            return None
        # permuted operands may broadcast (SE's [1,1,1,C] scale times a [1,H,W,C] map); reshaped ones may not
        if first.perm is None and any(shape_of(v.source) != src_shape for v in views):
            return None
        if any(self.uses.get(a, 0) != 1 for a in set(tensors)) or len(set(tensors)) != len(tensors):
            return None
        args = []
        for a in call.args:
            if a in self.views:
                args.append(self.views[a].source)
            elif is_const(a) and name_is_tensor_const(a):
                c = _const_in_source_layout(const_value(a), first, shape_of(b.var), src_shape)
                if c is None:
                    return None
                args.append(relax.const(c.astype(const_value(a).dtype)))
            else:
                args.append(a)
        inner = bb.emit(relax.Call(call.op, args, call.attrs, call.ty_args))
        if first.perm is None and shape_of(inner) != src_shape:  # a constant broadcast it beyond the source
            return None
        for a in tensors:
            self.uses[a] = 0
        return self._emit_view(bb, b, inner, first.perm)

    def _emit_view(self, bb: Any, b: Any, src: Any, perm: tuple[int, ...] | None) -> Any:
        """Bind ``b.var``'s replacement: ``src`` through the layout op (a permutation that moves only
        size-1 axes is a reshape: no data moves)."""
        from tvm import relax

        if perm is None or _moves_only_unit_axes(shape_of(src), perm):
            out = bb.emit(relax.op.reshape(src, shape_of(b.var)))  # still a permutation view below
        else:
            out = bb.emit(relax.op.permute_dims(src, list(perm)))
        self.views[b.var] = LayoutView(src, perm)
        return out


def _moves_only_unit_axes(src_shape: tuple[int, ...], perm: tuple[int, ...]) -> bool:
    """True when ``permute_dims(src, perm)`` keeps the order of the axes longer than 1."""
    kept = [a for a in perm if src_shape[a] != 1]
    return kept == sorted(kept)


def name_is_tensor_const(expr: Any) -> bool:
    """A Relax constant tensor (not a PrimValue / shape)."""
    try:
        const_value(expr)
        return True
    except Exception:
        return False


def _count_uses(bindings: list[Any], result: Any) -> dict[Any, int]:
    uses: dict[Any, int] = {}
    for b in bindings:
        for v in vars_in(b.value):
            uses[v] = uses.get(v, 0) + 1
    for v in vars_in(result):
        uses[v] = uses.get(v, 0) + 1
    return uses


def count_layout_ops(func: Any) -> int:
    """``permute_dims`` bindings of a Relax function (what ``compile --explain`` reports)."""
    return sum(1 for blk in func.body.blocks for b in blk.bindings if op_name(b.value) == "relax.permute_dims")


def _sink_once(mod: Any) -> Any:
    import tvm
    from tvm import relax

    func = mod["main"]
    bindings = list(func.body.blocks[0].bindings)
    out_var = func.body.body
    bb = relax.BlockBuilder()
    with bb.function("main", list(func.params), attrs=dict(func.attrs) if func.attrs else None):
        with bb.dataflow():
            sinker = _Sinker(bindings, _count_uses(bindings, out_var))
            sinker.run(bb)
            gv = bb.emit_output(sinker._substitute(out_var))
        bb.emit_func_output(gv)
    new_mod = mod.clone() if hasattr(mod, "clone") else tvm.IRModule(dict(mod.functions_items()))
    new_mod[new_mod.get_global_var("main")] = bb.get()["main"]
    return relax.transform.DeadCodeElimination()(new_mod)


def sink_layout_ops(mod: Any, rounds: int = 3) -> Any:
    """``mod`` with ``main``'s needless layout ops removed (see the module docstring); unchanged when
    ``main`` is not one dataflow block or when the rewrite would leave more transposes than before.

    An op moved below a permutation may then sit on a reshape (ConvNeXt's layer scale): a few
    rounds let it move below that one too."""
    from tvm import relax

    blocks = mod["main"].body.blocks
    if len(blocks) != 1 or not isinstance(blocks[0], relax.DataflowBlock):
        return mod
    before = count_layout_ops(mod["main"])
    out = mod
    for _ in range(rounds):
        out = _sink_once(out)
    return mod if count_layout_ops(out["main"]) > before else out
