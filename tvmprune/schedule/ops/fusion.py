"""Legalise, fuse and schedule a lowered model before ``tvm.compile``.

The lowered module holds our kernels (already scheduled PrimFuncs) and the remaining Relax ops.
Relax's CPU legalisation passes turn those ops into PrimFuncs and ``FuseOps`` + ``FuseTIR`` merge
chains of elementwise / broadcast ops (SiLU = sigmoid * x, squeeze-excite's sigmoid-multiply,
GELU, residual adds, a reduction with its elementwise consumer) into one PrimFunc each. Kernels
are marked opaque first so they are never fused with (and unscheduled by) their neighbours. The
fused functions then get schedules from :func:`tvmprune.schedule.dispatch.schedule_remaining`,
and every PrimFunc is marked opaque so ``tvm.compile``'s own pipeline fuses nothing further.
"""

from __future__ import annotations

from typing import Any, Iterable

from .dispatch import KERNEL_ATTR, ScheduleRecord, schedule_remaining

OPAQUE = 8  # relax OpPatternKind::kOpaque


def mark_kernels(mod: Any, kernel_names: Iterable[str]) -> Any:
    """Tag our kernels' PrimFuncs (``KERNEL_ATTR``, opaque op pattern) so fusion and scheduling skip them."""
    for name in kernel_names:
        gv = mod.get_global_var(name)
        mod[gv] = mod[gv].with_attr(KERNEL_ATTR, 1).with_attr("op_pattern", OPAQUE)
    return mod


def fuse_and_schedule(mod: Any, target: Any, kernel_names: Iterable[str]) -> tuple[Any, list[ScheduleRecord]]:
    """Legalise + fuse the Relax ops of ``mod`` and schedule every resulting PrimFunc.

    Args:
        mod: lowered Relax module (kernels in place, see :func:`tvmprune.frontend.lowering.lower_to_kernels`).
        target: :class:`tvmprune.target.NamedTarget`.
        kernel_names: global names of our kernels in ``mod``.

    Returns:
        The module, ready for ``tvm.compile``, and the schedule records of the non-kernel PrimFuncs.
    """
    import tvm
    from tvm import relax, tirx

    tt = target.tvm_target
    mod = mark_kernels(mod, kernel_names)
    with tt:
        passes = relax.pipeline.library_dispatch_passes(tt) + relax.pipeline.legalize_passes(tt)
        mod = tvm.transform.Sequential(passes)(mod)
    mod, records = schedule_remaining(mod, tt, target.vector_lanes, target.cores)
    for gv, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc):
            mod[gv] = func.with_attr("op_pattern", OPAQUE)
    return mod, records
