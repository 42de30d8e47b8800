"""What a schedule rule is: a function that schedules one PrimFunc in place or declines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class ScheduleContext:
    """Target facts a rule needs: fp32 vector lanes and the number of cores to feed."""

    lanes: int
    cores: int


# A rule gets a fresh ``tvm.s_tir.Schedule`` of the PrimFunc and returns True when it scheduled it
# (it may raise: the dispatcher then tries the next rule on a fresh schedule).
Rule = Callable[[Any, ScheduleContext], bool]


def spatial_blocks(sch: Any) -> tuple[list[Any], list[Any]]:
    """Inline what can be inlined, then split the remaining blocks into (injective, reduction) lists.

    Block infos come from dlight's ``normalize_prim_func`` (one loop per block iterator, in order).
    """
    from tvm.s_tir.dlight.analysis import normalize_prim_func
    from tvm.s_tir.dlight.base.common_schedules import try_inline

    infos = normalize_prim_func(sch)
    if infos is None:
        raise ValueError("PrimFunc is not in the normal form the rules expect")
    try_inline(sch, infos[:-1])  # the last block writes the output: keep it
    infos = normalize_prim_func(sch)
    if infos is None:
        raise ValueError("PrimFunc left the normal form after inlining")
    return [b for b in infos if b.is_injective()], [b for b in infos if not b.is_injective()]


@dataclass
class SingleReduction:
    """The one reduction block of a PrimFunc (``S.. R..`` iterators) and its optional consumer.

    Attributes:
        red: dlight block info of the reduction.
        consumer: the injective block fused after it (e.g. mean's divide), or None.
        n_spatial: number of leading spatial iterators (``S``) of ``red``.
        s_loops, r_loops: the reduction block's spatial and reduction loops.
    """

    red: Any
    consumer: Any
    n_spatial: int
    s_loops: list[Any]
    r_loops: list[Any]


def single_reduction(sch: Any) -> SingleReduction | None:
    """After :func:`spatial_blocks`: the function's only reduction with at most one consumer, whose
    iterators are spatial then reduction (``S..R..``, at least one ``S``); None otherwise."""
    injective, reductions = spatial_blocks(sch)
    if len(reductions) != 1 or len(injective) > 1:
        return None
    red = reductions[0]
    kinds = red.dom_kind()
    n_s = len(kinds) - len(kinds.lstrip("S"))
    if n_s == 0 or set(kinds[n_s:]) != {"R"}:
        return None
    loops = sch.get_loops(red.block_rv)
    return SingleReduction(red, injective[0] if injective else None, n_s, list(loops[:n_s]), list(loops[n_s:]))
