"""The data-dependent row loop of the sparse kernels.

TE computes of the sparse kernels use a *static* row extent (the layer's maximum row length)
with an ``if_then_else`` guard, because ``te.create_prim_func`` turns a data-dependent reduce
extent into an unschedulable nested block. A schedule annotates that loop with
:data:`SPARSE_ROW_ANN`; :func:`shrink_sparse_loops` (the last step of a default schedule, and
what a tuner must call after replaying a trace) rewrites it to the true row length and drops
the guard.
"""

from __future__ import annotations

from typing import Any

SPARSE_ROW_ANN = "tvmprune.sparse_row"


def _binding_map(realize) -> list:
    return [(iv.var, val) for iv, val in zip(realize.block.iter_vars, realize.iter_values)]


def _lookup(pairs: list, var, default):
    for k, v in pairs:
        if k.same_as(var):
            return v
    return default


def shrink_sparse_loops(sch: Any) -> int:
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
