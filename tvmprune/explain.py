"""``tvmprune compile --explain``: per-layer shape, density, chosen format and predicted time."""

from __future__ import annotations

from typing import Any

from .reports.tables import format_table
from .kernels.format import Format
from .plan.layer import LayerPlan
from .target import NamedTarget


def explain_rows(plans: list[LayerPlan], measured_ms: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """One dict per layer: name, shape, density, format, reason, predicted ms per format, measured ms
    (of the chosen kernel, and of dense where a sparse one was chosen), and the basis of the decision."""
    rows = []
    for p in plans:
        j = p.to_json()
        pred = p.predicted_ms
        rows.append({
            "layer": j["name"],
            "shape": j["shape"],
            "density": j["density"],
            "format": j["format"],
            "pred_dense": pred.get("dense"),
            "pred_sparse": min((v for k, v in pred.items() if k != "dense"), default=None),
            "measured": ((measured_ms or {}).get(p.kernel.name) if p.kernel else None)
            or p.measured_ms.get(p.fmt),
            "measured_dense": p.measured_ms.get(Format.DENSE) if p.fmt != Format.DENSE else None,
            "basis": p.basis,
            "reason": j["reason"],
        })
    return rows


def explain_table(plans: list[LayerPlan], target: NamedTarget, measured_ms: dict[str, float] | None = None) -> str:
    """The ``--explain`` table as text."""
    rows = explain_rows(plans, measured_ms)
    from .plan.roofline import params_for

    head = (f"per-layer plan for {target.name} ({target.vector_lanes} fp32 lanes, peak ~{target.peak_gflops:.0f} GFLOP/s; "
            f"perf model: {params_for(target).source})")
    return head + "\n" + format_table(rows, [
        ("layer", "layer"), ("shape", "shape"), ("density", "density"), ("format", "format"),
        ("pred_dense", "pred dense ms"), ("pred_sparse", "pred sparse ms"), ("measured", "measured ms"),
        ("measured_dense", "meas dense ms"), ("basis", "basis"), ("reason", "why"),
    ])


def op_schedule_table(records: list[Any]) -> str:
    """Every op that is not one of our kernels (fused PrimFuncs) with the rule that scheduled it
    and its parallel / vector loop extents (``records``: :class:`tvmprune.schedule.ops.ScheduleRecord`)."""
    rows = [r.to_json() for r in records]
    return "other ops (legalised by TVM, fused, scheduled by tvmprune.schedule.ops)\n" + format_table(rows, [
        ("func", "op (fused PrimFunc)"), ("rule", "schedule rule"), ("parallel", "parallel extent"),
        ("vector", "vector lanes"),
    ])
