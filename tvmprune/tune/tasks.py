"""Tuning tasks: one per distinct kernel of a compiled model.

Every conv / linear layer that the plan stage (:func:`tvmprune.plan.plan.plan`) gave a kernel is a candidate; layers whose kernels share a ``workload_key`` (same
computation and same index structure) share a task, whose ``weight`` is the number of
layers using it. Tasks use the kernel's own ``schedule_space`` (sampled tiles / unroll) as
a MetaSchedule ``ScheduleFn`` with a postprocessor list that is safe for data-dependent
loops (no ``DisallowDynamicLoop``) and that ends with :class:`ShrinkSparseLoops`, so that the
measured code is exactly what ``compile`` produces. The remaining Relax ops (pooling, adds
that were not fused, softmax ...) stay untuned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..kernels.base import KernelInstance
from ..kernels.sparse_loops import shrink_sparse_loops


def postprocess(sch: Any) -> Any:
    """What a replayed / sampled schedule of our kernels needs at the end (not traced).

    Sparse kernels annotate their nonzero loop; :func:`shrink_sparse_loops` turns its static
    (max-row-length) extent into the true row length. A no-op for dense kernels.
    """
    shrink_sparse_loops(sch)
    return sch


def _make_shrink_postproc() -> Any:
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.postproc import PyPostproc

    @derived_object
    class ShrinkSparseLoops(PyPostproc):
        """MetaSchedule postprocessor running :func:`postprocess` (last in the list)."""

        def _initialize_with_tune_context(self, context: Any) -> None:
            pass

        def apply(self, sch: Any) -> bool:
            try:
                postprocess(sch)
            except Exception:  # noqa: BLE001 - a candidate that cannot be shrunk is rejected
                return False
            return True

        def clone(self) -> Any:
            return ShrinkSparseLoops()

    return ShrinkSparseLoops()


def safe_postprocs() -> list[Any]:
    """``DefaultLLVM`` minus ``DisallowDynamicLoop`` (trap 1), plus the sparse-loop shrink."""
    from tvm.s_tir import meta_schedule as ms

    return [
        ms.postproc.RewriteParallelVectorizeUnroll(),
        ms.postproc.RewriteReductionBlock(),
        _make_shrink_postproc(),
    ]


class ReplaySafeSchedule:
    """A ``Schedule`` proxy whose ``compute_at`` / ``reverse_compute_at`` keep unit loops.

    Without ``preserve_unit_loops`` the number of loops a later ``get_loops`` returns depends
    on the sampled tile sizes (a tile of 1 drops its loop), so the evolutionary search's
    replay of the design-space trace with other decisions fails ("old_outputs.size() ==
    new_outputs.size()"). Forcing it in the traced instructions makes every kernel space
    replay-safe without changing the kernels' default schedules.
    """

    def __init__(self, sch: Any) -> None:
        object.__setattr__(self, "_sch", sch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sch, name)

    def compute_at(self, block: Any, loop: Any, preserve_unit_loops: bool = False, index: int = -1) -> None:
        return self._sch.compute_at(block, loop, preserve_unit_loops=True, index=index)

    def reverse_compute_at(self, block: Any, loop: Any, preserve_unit_loops: bool = False, index: int = -1) -> None:
        return self._sch.reverse_compute_at(block, loop, preserve_unit_loops=True, index=index)


def design_trace(kernel: KernelInstance, seed: int = 0) -> Any | None:
    """One sampled trace of ``kernel.schedule_space`` (as the search samples it), None when the
    kernel has no space or it cannot be sampled here."""
    from tvm import s_tir

    if kernel.schedule_space is None:
        return None
    sch = s_tir.Schedule(kernel.func, seed=seed + 1)  # TVM seeds start at 1
    try:
        kernel.schedule_space(ReplaySafeSchedule(sch))
    except Exception:  # noqa: BLE001 - MetaSchedule reports a space that fails; the mutators just fall back
        return None
    return sch.trace


def space_generator(kernel: KernelInstance) -> Any:
    """``ScheduleFn`` over ``kernel.schedule_space`` (or its default schedule when it has none),
    with the mutators of :func:`.mutators.mutator_probs` for its sampled trace."""
    from tvm.s_tir import meta_schedule as ms

    from .mutators import mutator_probs

    fn = kernel.schedule_space or kernel.schedule_default

    def space_fn(sch: Any) -> None:
        fn(ReplaySafeSchedule(sch))

    return ms.space_generator.ScheduleFn(
        space_fn,
        sch_rules=[],
        postprocs=safe_postprocs(),
        mutator_probs=mutator_probs(design_trace(kernel)),
    )


@dataclass
class TuneTask:
    """One kernel to tune.

    Attributes:
        key: ``kernel.workload_key``.
        kernel: the kernel (of the first layer that uses it).
        weight: number of layers using this kernel.
        layers: their names.
        desc: short shape description (``conv 64->64 3x3 @56x56 1x16 d=0.20``).
    """

    key: str
    kernel: KernelInstance
    weight: int = 1
    layers: list[str] = field(default_factory=list)
    desc: str = ""

    @property
    def name(self) -> str:
        return self.kernel.name

    def module(self) -> Any:
        from .db import module_of

        return module_of(self.kernel.func)

    def shash(self) -> str:
        from ..kernels.identity import structural_hash

        return structural_hash(self.module())


def describe(plan: Any) -> str:
    info = plan.info
    fmt = plan.format_label
    return f"{info.shape_str} {fmt} d={info.density:.2f}"


def extract_tasks(plans: list[Any], kinds: Callable[[KernelInstance], bool] | None = None) -> list[TuneTask]:
    """Group the kernels of ``plans`` (``compile_model(...).plans`` or lowering's plans) by workload.

    Args:
        plans: layer plans; those with ``kernel`` None (left as Relax ops) are skipped.
        kinds: optional filter on kernels (e.g. only sparse ones).

    Returns:
        Tasks in first-use order.
    """
    tasks: dict[str, TuneTask] = {}
    for p in plans:
        k = getattr(p, "kernel", None)
        if k is None or (kinds is not None and not kinds(k)):
            continue
        key = k.workload_key
        if key in tasks:
            tasks[key].weight += 1
            tasks[key].layers.append(p.info.name)
        else:
            tasks[key] = TuneTask(key=key, kernel=k, weight=1, layers=[p.info.name], desc=describe(p))
    return list(tasks.values())


def lower_model(model: Any, input_shape: tuple[int, ...], target: Any, planner: Any = None) -> list[Any]:
    """Lower and plan a model (no build): the plans, each with its ``kernel``.

    Commands that also build the model should call :func:`tvmprune.compiler.lower` and
    :func:`tvmprune.compiler.plan` themselves and keep the records (lower once).
    """
    from ..compiler import lower, plan

    return plan(lower(model, input_shape), target, planner).plans
