"""The ``measured`` planner: each pruned layer's candidate kernels timed on this machine, the fastest kept.

The roofline model (:func:`.planners.predict_ms`) stays the prior and the explanation: it names
the candidates (dense, plus the ``MEASURE_TOP`` sparse formats it predicts fastest) and the
measurement decides. So a layer gets a sparse kernel only where that kernel is measured faster
than the dense kernel for it, on the target the model is compiled for. Times are cached per
target and kernel workload (computation + sparsity structure) under
``$TVMPRUNE_CACHE_DIR/kernel_times/``, so recompiling (or another model with the same layer)
measures nothing. Targets whose code cannot run here fall back to the prediction, and say so.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..cache_dir import cache_dir, target_key
from ..kernels.base import KernelInstance
from ..kernels.format import Format
from ..kernels.registry import family
from ..target import NamedTarget
from .layer import LayerInfo, LayerPlan
from .planners import choose_format, predict_ms

MEASURE_TOP = 2  # sparse formats timed besides dense: the ones predicted fastest


def kernel_times_dir(target: NamedTarget) -> Path:
    return cache_dir("kernel_times", f"{target_key(target)}-{target.cores}c")


def _cache_key(inst: KernelInstance, target: NamedTarget) -> str:
    tgt = json.dumps(target.to_json(), sort_keys=True, default=str)
    return hashlib.sha1(f"{inst.workload_key}|{tgt}".encode()).hexdigest()[:20]


def measured_kernel_ms(inst: KernelInstance, info: LayerInfo, target: NamedTarget) -> float:
    """Median ms of ``inst`` (default schedule) on this machine, from the cache when measured before."""
    from ..measure.kernel import time_kernel

    f = kernel_times_dir(target) / f"{_cache_key(inst, target)}.json"
    try:
        return float(json.loads(f.read_text())["ms"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    residual = bool(info.op == "conv2d" and info.spec.residual)
    ms = time_kernel(inst, info.data_shape, target, residual=residual, repeat=5)
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps({"ms": ms, "kernel": inst.name, "format": str(inst.format)}))
    except OSError:
        pass  # an unwritable cache only costs time
    return ms


def _candidates(pred: dict[Format, float]) -> list[Format]:
    sparse = sorted((f for f in pred if f != Format.DENSE), key=pred.get)[:MEASURE_TOP]
    return [Format.DENSE] + sparse


def measured_format(info: LayerInfo, target: NamedTarget) -> LayerPlan:
    """Time dense and the best predicted sparse kernels of one pruned layer; keep the fastest."""
    if info.groups > 1 or (info.density >= 1.0 and info.interspace is None):  # interspace: zeros in c
        return choose_format(info, target)
    if not target.runs_on_host:
        p = choose_format(info, target)
        p.reason += f" (predicted: {target.name} code cannot be timed on this machine)"
        return p
    pred = predict_ms(info, target)
    times: dict[Format, float] = {}
    for fmt in _candidates(pred):
        n = info.block_n if fmt.blocked else 0
        times[fmt] = measured_kernel_ms(family(fmt, info.op).build(info, n, target), info, target)
    best = min(times, key=times.get)
    n = info.block_n if best.blocked else 0
    why = "measured fastest: " + ", ".join(f"{f.label(info.block_n if f.blocked else 0)} {ms:.3f} ms"
                                           for f, ms in sorted(times.items(), key=lambda kv: kv[1]))
    return LayerPlan(info, best, n=n, reason=why, predicted_ms=pred, measured_ms=times)
