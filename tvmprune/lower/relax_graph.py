"""Reading a Relax ``main`` function as a dataflow graph: expression helpers and use-def counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def op_name(expr: Any) -> str | None:
    """``relax.nn.conv2d`` ... of a call, None for anything else."""
    op = getattr(expr, "op", None)
    return getattr(op, "name", None) if op is not None else None


def is_const(expr: Any) -> bool:
    return type(expr).__name__ in ("GenericConst", "Constant")


def const_value(expr: Any) -> np.ndarray:
    return expr.value.numpy() if hasattr(expr.value, "numpy") else expr.data.numpy()


def shape_of(var: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in var.ty.shape)


def vars_in(expr: Any) -> list[Any]:
    """The Relax variables an expression reads (with repeats)."""
    out: list[Any] = []
    _collect_vars(expr, out)
    return out


def _collect_vars(expr: Any, out: list) -> None:
    from tvm import relax

    if isinstance(expr, (relax.Var, relax.DataflowVar)) or type(expr).__name__ in ("Var", "DataflowVar"):
        out.append(expr)
    elif hasattr(expr, "fields"):
        for f in expr.fields:
            _collect_vars(f, out)
    elif type(expr).__name__ == "TupleGetItem":
        _collect_vars(expr.tuple_value, out)
    elif hasattr(expr, "args"):
        for a in expr.args:
            _collect_vars(a, out)


def prim_value(expr: Any) -> float | None:
    v = getattr(expr, "value", None)
    if v is None:
        return None
    try:
        return float(v.value if hasattr(v, "value") else v)
    except (TypeError, ValueError):
        return None


def activation_of(value: Any) -> str | None:
    """``relu`` / ``relu6`` when ``value`` is one (``clip(x, 0, 6)`` is relu6), else None."""
    name = op_name(value)
    if name == "relax.nn.relu":
        return "relu"
    if name == "relax.nn.relu6":
        return "relu6"
    if name == "relax.clip" and len(value.args) == 3:
        lo, hi = prim_value(value.args[1]), prim_value(value.args[2])
        if lo == 0.0 and hi == 6.0:
            return "relu6"
    return None


@dataclass
class UseDef:
    """Bindings of a Relax function in order, and who reads each variable.

    ``uses[v]``: how many times ``v`` is read (the function's result included);
    ``users[v]``: the bindings that read it.
    """

    bindings: list[Any]
    uses: dict[Any, int] = field(default_factory=dict)
    users: dict[Any, list] = field(default_factory=dict)

    @classmethod
    def of(cls, func: Any) -> "UseDef":
        ud = cls([b for blk in func.body.blocks for b in blk.bindings])
        for b in ud.bindings:
            for v in vars_in(b.value):
                ud.uses[v] = ud.uses.get(v, 0) + 1
                ud.users.setdefault(v, []).append(b)
        for v in vars_in(func.body.body):
            ud.uses[v] = ud.uses.get(v, 0) + 1
        return ud

    def single_user(self, var: Any, claimed: set) -> Any | None:
        """The one binding reading ``var`` when it is read once and not already claimed by a chain."""
        if self.uses.get(var, 0) != 1:
            return None
        u = self.users.get(var, [])
        return u[0] if len(u) == 1 and u[0].var not in claimed else None
