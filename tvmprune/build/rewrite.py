"""Replace each planned layer's chain in Relax ``main`` by one ``call_tir`` of its scheduled kernel."""

from __future__ import annotations

from typing import Any

from ..schedule.schedule import ScheduledModel


def rewrite_to_kernels(scheduled: ScheduledModel) -> Any:
    """A new IRModule: ``lowered.mod`` with every kernel's chain replaced by ``call_tir`` of the
    scheduled PrimFunc, whose weight arrays are Relax constants. The lowered module is unchanged."""
    from tvm import relax

    lowered = scheduled.planned.lowered
    mod = lowered.mod
    bb = relax.BlockBuilder(mod.clone())
    replace: dict[Any, Any] = {}
    absorbed: set = set()
    for match, p in scheduled.planned.planned_layers():
        k = p.kernel
        gv = bb.add_func(k.func, k.name)
        args = [match.data] + [relax.const(c) for c in k.consts]
        if match.residual is not None:
            args.append(match.residual)
        replace[match.chain[-1].var] = relax.call_tir(gv, relax.Tuple(args),
                                                      out_ty=relax.TensorType(k.out_shape, "float32"))
        absorbed.update(link.var for link in match.chain[:-1])
    new_mod = bb.get()
    for name, func in scheduled.funcs.items():
        new_mod[new_mod.get_global_var(name)] = func
    func = mod["main"]
    new_mod[new_mod.get_global_var("main")] = _rewrite_main(func, replace, absorbed)
    return relax.transform.Normalize()(new_mod)


def _rewrite_main(func: Any, replace: dict[Any, Any], absorbed: set) -> Any:
    from tvm import relax

    new_blocks = []
    for blk in func.body.blocks:
        bindings = []
        for b in blk.bindings:
            if b.var in absorbed:
                continue
            bindings.append(relax.VarBinding(b.var, replace[b.var]) if b.var in replace else b)
        new_blocks.append(relax.DataflowBlock(bindings) if isinstance(blk, relax.DataflowBlock)
                          else relax.BindingBlock(bindings))
    return relax.Function(func.params, relax.SeqExpr(new_blocks, func.body.body), func.ret_ty, func.is_pure,
                          func.attrs)
