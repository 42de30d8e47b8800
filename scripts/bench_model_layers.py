"""``bench_models.py --per-layer``: where a compiled model's time goes, layer by layer.

Each conv / linear kernel is timed alone (its own module) next to the dense kernel of the same
layer; the VM instrument hook gives the same split from inside the whole model, plus the non-kernel
ops by name and the time between calls.
"""

from __future__ import annotations

from typing import Any

from tvmprune.kernels.format import Format
from tvmprune.kernels.registry import family
from tvmprune.measure.kernel import time_kernel
from tvmprune.measure.vm_profile import VmProfile, profile_vm
from tvmprune.reports.tables import format_table

SPARSE = (Format.BSR, Format.BSR_SPATIAL, Format.CSR)


def _dense_kernel(plan: Any, target: Any) -> Any:
    return family(Format.DENSE, plan.info.op).build(plan.info, None, target)


def layer_rows(cm: Any, target: Any, repeat: int, prof: VmProfile) -> list[dict[str, Any]]:
    rows = []
    for p in cm.plans:
        info = p.info
        row: dict[str, Any] = {"layer": info.name, "shape": info.shape_str if info.op else "",
                               "fmt": p.format_label, "density": round(info.density, 3),
                               "gflop": info.dense_flops / 1e9 if p.kernel else None}
        if p.kernel is None:
            rows.append({**row, "ms": None, "dense_ms": None, "speedup": None, "category": "relax"})
            continue
        residual = bool(info.op == "conv2d" and info.spec.residual)
        shape = info.data_shape
        ms = time_kernel(p.kernel, shape, target, residual, repeat=max(repeat // 2, 3))
        if p.fmt in SPARSE:
            dms = time_kernel(_dense_kernel(p, target), shape, target, residual, repeat=max(repeat // 2, 3))
            cat = f"sparse {info.op}"
        else:
            dms, cat = ms, f"{p.fmt} {info.op}"
        rows.append({**row, "ms": ms, "dense_ms": dms, "speedup": dms / ms if ms else None, "category": cat,
                     "in_model_ms": prof.ms.get(p.kernel.name)})
    return rows


def category_summary(rows: list[dict[str, Any]], model_ms: float) -> list[dict[str, Any]]:
    cats: dict[str, dict[str, float]] = {}
    for r in rows:
        if r["ms"] is not None:
            c = cats.setdefault(r["category"], {"ms": 0.0, "dense_ms": 0.0, "layers": 0})
            c["ms"] += r["ms"]
            c["dense_ms"] += r["dense_ms"]
            c["layers"] += 1
    other = model_ms - sum(c["ms"] for c in cats.values())
    out = [{"part": k, "layers": int(v["layers"]), "ms": v["ms"], "pct": 100 * v["ms"] / model_ms,
            "dense_ms": v["dense_ms"]} for k, v in sorted(cats.items(), key=lambda kv: -kv[1]["ms"])]
    n_relax = sum(1 for r in rows if r["ms"] is None)
    out.append({"part": f"rest (non-conv ops, {n_relax} relax layers, VM)", "layers": n_relax, "ms": other,
                "pct": 100 * other / model_ms, "dense_ms": other})
    out.append({"part": "whole model (measured)", "layers": len(rows), "ms": model_ms, "pct": 100.0,
                "dense_ms": sum(c["dense_ms"] for c in cats.values()) + other})
    return out


def in_model_rows(cm: Any, rows: list[dict[str, Any]], prof: VmProfile) -> list[dict[str, Any]]:
    kernel_cat = {p.kernel.name: r["category"] for p, r in zip(cm.plans, rows) if p.kernel is not None}
    in_cats: dict[str, float] = {}
    other_ops: dict[str, float] = {}
    for sym, ms in prof.ms.items():
        if sym in kernel_cat:
            in_cats[kernel_cat[sym]] = in_cats.get(kernel_cat[sym], 0.0) + ms
        else:
            other_ops[sym] = ms
    tot = prof.total_ms
    out = [{"part": k, "ms": v, "pct": 100 * v / tot} for k, v in sorted(in_cats.items(), key=lambda kv: -kv[1])]
    out.append({"part": "non-kernel ops (all)", "ms": sum(other_ops.values()), "pct": 100 * sum(other_ops.values()) / tot})
    for sym, v in sorted(other_ops.items(), key=lambda kv: -kv[1])[:8]:
        out.append({"part": f"  {sym} (x{prof.calls.get(sym, 0)})", "ms": v, "pct": 100 * v / tot})
    out.append({"part": "VM / between calls", "ms": prof.between_calls_ms, "pct": 100 * prof.between_calls_ms / tot})
    out.append({"part": "whole model (instrumented run)", "ms": tot, "pct": 100.0})
    return out


def per_layer(model: str, pattern: str, cm: Any, model_ms: float, target: Any, repeat: int) -> dict[str, Any]:
    """Print the three tables for one compiled model and return them as a record."""
    prof = profile_vm(cm.executable, cm.input_shape, max(repeat, 5))
    rows = layer_rows(cm, target, repeat, prof)
    print(format_table(rows, [("layer", "layer"), ("shape", "shape"), ("fmt", "format"), ("density", "density"),
                              ("gflop", "dense GFLOP"), ("ms", "kernel ms"), ("dense_ms", "dense kernel ms"),
                              ("speedup", "x vs dense"), ("in_model_ms", "in-model ms")]))
    summary = category_summary(rows, model_ms)
    print(f"\n{model} {pattern}: where the time goes (kernels timed alone; 'rest' = whole model - sum of kernels)")
    print(format_table(summary, [("part", "part"), ("layers", "layers"), ("ms", "ms"), ("pct", "% of model"),
                                 ("dense_ms", "ms if dense")]))
    inside = in_model_rows(cm, rows, prof)
    print(f"\n{model} {pattern}: the same split inside the whole model (VM instrument hook)")
    print(format_table(inside, [("part", "part"), ("ms", "ms"), ("pct", "% of model")]))
    return {"model": model, "pattern": pattern, "model_ms": model_ms, "layers": rows, "summary": summary,
            "in_model": inside}
