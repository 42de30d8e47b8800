"""Rule for reductions along the innermost (contiguous) axis: softmax, LayerNorm, RMS norm, means over
the last axis. dlight's CPU ``Reduction`` rule does it: parallel over the leading spatial axes, every
block computed under that loop, injective stages vectorised, reduction loops split to the vector length
and unrolled (no cross-lane reduction)."""

from __future__ import annotations

from typing import Any

from .loops import loop_facts
from .rule import ScheduleContext


def row_reduction_rule(sch: Any, ctx: ScheduleContext, target: Any) -> Any:
    """dlight's CPU Reduction on the PrimFunc of ``sch``; returns the new schedule or None when it declines
    or leaves the function without a parallel loop."""
    from tvm.s_tir.dlight.cpu import Reduction

    func = sch.mod["main"]
    out = Reduction().apply(func, target, False)
    if out is None:
        return None
    if loop_facts(out.mod["main"]).parallel == 0:
        return None
    return out
