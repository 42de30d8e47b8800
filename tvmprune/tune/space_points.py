"""Points of a kernel's tuning space: sample it, count how many distinct schedules it holds.

A kernel's ``schedule_space`` draws its knobs with ``sample_perfect_tile`` /
``sample_categorical``; a *point* is the tuple of those decisions. Each seed of
``tvm.s_tir.Schedule`` replays the space with fresh draws, so sampling many seeds and
counting distinct decision tuples gives a lower bound of the space's size (what
``tests/test_tuning_spaces.py`` asserts per family), and any sampled point is a
schedule that can be compiled and checked against PyTorch.
"""

from __future__ import annotations

from typing import Any

from ..errors import TuningError
from ..kernels.base import KernelInstance


def sample_point(kernel: KernelInstance, seed: int) -> tuple[Any, tuple[str, ...]]:
    """One sampled point of ``kernel.schedule_space``.

    Returns ``(func, decisions)``: the scheduled PrimFunc (``global_symbol`` = the kernel's
    name, ready for ``tvm.compile``) and its decisions, one string per sampling instruction
    in trace order.
    """
    from tvm import s_tir

    if kernel.schedule_space is None:
        raise TuningError(f"kernel {kernel.name} ({kernel.kind}) has no tuning space")
    sch = s_tir.Schedule(kernel.func, seed=seed + 1)  # TVM seeds start at 1
    kernel.schedule_space(sch)
    trace = sch.trace
    decisions = tuple(str(trace.decisions[inst]) for inst in trace.insts if inst in trace.decisions)
    return sch.mod["main"].with_attr("global_symbol", kernel.name), decisions


def count_points(kernel: KernelInstance, samples: int = 400, seed: int = 0) -> int:
    """Distinct points among ``samples`` draws of the space (a lower bound of its size)."""
    return len({sample_point(kernel, seed + i)[1] for i in range(samples)})
