"""`tvmprune calibrate`: measure the roofline parameters of this machine and store them.

Every registered conv family with a :class:`~tvmprune.kernels.family.Probe` is timed on two
probe layers (a 3x3 64->64 @28x28 and a 1x1 256->64 @14x14) at one density; the dense
family's times give ``dense_efficiency``, each sparse family's time is solved for its
parameter at the measured dense throughput.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable

import numpy as np

from ..errors import TvmpruneError
from ..kernels.base import ConvSpec
from ..kernels.family import KernelFamily
from ..kernels.format import Format, LayerOp
from ..kernels.registry import families
from ..target import NamedTarget
from .layer import LayerInfo
from .roofline import DEFAULT_PARAMS, PerfParams, calibration_path

PROBE_LAYERS = {
    "3x3": ConvSpec(1, 28, 28, 64, 64, 3, 3, padding=(1, 1, 1, 1)),
    "1x1": ConvSpec(1, 14, 14, 256, 64, 1, 1),
}


def probe_weight(spec: ConvSpec, density: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Random conv weight ``[Cout, Cin, KH, KW]`` at ``density``: 1xN blocks over output
    channels for ``n`` > 1, unstructured for ``n`` <= 1, dense for ``density`` >= 1."""
    w = rng.standard_normal(spec.weight_shape).astype("float32")
    if density >= 1.0:
        return w
    if n > 1:
        blocks = rng.random((spec.cout // n, spec.cin * spec.kh * spec.kw)) < density
        mask = np.repeat(blocks, n, axis=0).reshape(spec.weight_shape)
    else:
        mask = rng.random(spec.weight_shape) < density
    return w * mask


def probe_families() -> tuple[KernelFamily, ...]:
    """The conv families calibration measures, dense first."""
    return tuple(f for f in families(LayerOp.CONV2D) if f.probe is not None)


def time_family(fam: KernelFamily, spec: ConvSpec, weight: np.ndarray, n: int, target: NamedTarget,
                remote: Any = None) -> float:
    """Median ms of ``fam``'s kernel (default schedule) for a conv layer, on this machine or on the
    RPC board of ``remote`` (a :class:`tvmprune.tune.measure.RemoteSpec`, bounded waits)."""
    info = LayerInfo(0, "probe", LayerOp.CONV2D, weight, spec=spec)
    inst = fam.build(info, n, target)
    if remote is not None:
        from ..tune.measure import time_kernel as time_on_board

        return 1e3 * time_on_board(inst.scheduled(), list(inst.consts), target, remote)
    from ..measure.kernel import time_kernel

    return time_kernel(inst, spec.in_shape, target)


def _measure(target: NamedTarget, density: float, rng: np.random.Generator,
             say: Callable[[str], None], remote: Any = None) -> dict[str, dict[str, float]]:
    from ..console import progress

    meas: dict[str, dict[str, float]] = {}
    for key, spec in progress(PROBE_LAYERS.items(), total=len(PROBE_LAYERS), desc="probe layers", unit="layer"):
        m: dict[str, float] = {}
        parts = []
        for fam in probe_families():
            n = fam.probe.block_n(target)
            d = 1.0 if fam.format == Format.DENSE else density
            m[f"{fam.format}_ms"] = time_family(fam, spec, probe_weight(spec, d, n, rng), n, target, remote)
            parts.append(f"{fam.format.label(n)} {m[f'{fam.format}_ms']:.3f} ms")
        m["flops"] = spec.dense_flops
        meas[key] = m
        say(f"  {key} layer: {', '.join(parts)} at density {density}")
    return meas


def _fit(meas: dict[str, dict[str, float]], target: NamedTarget, density: float) -> PerfParams:
    """Solve each family's measurements for its parameter, averaged per parameter: the dense
    family's give ``dense_efficiency``, the sparse ones are fitted at the dense throughput."""
    dense, *sparse = probe_families()
    if dense.format != Format.DENSE:
        raise TvmpruneError("the kernel registry must list the dense conv family first")
    peak = target.peak_gflops * 1e9
    fits: dict[str, list[float]] = {"dense_efficiency": [
        dense.probe.fit(spec, 1.0, meas[key]["dense_ms"], 0, target, peak) for key, spec in PROBE_LAYERS.items()]}
    peak_eff = peak * float(np.mean(fits["dense_efficiency"]))
    for fam in sparse:
        n = fam.probe.block_n(target)
        for key, spec in PROBE_LAYERS.items():
            value = fam.probe.fit(spec, density, meas[key][f"{fam.format}_ms"], n, target, peak_eff)
            fits.setdefault(fam.probe.param(spec), []).append(value)
    return PerfParams(**{k: float(np.mean(v)) for k, v in fits.items()}, source="calibrated (this run)")


def calibrate(target: NamedTarget, density: float = 0.2, save: bool = True,
              log: Callable[[str], None] | None = None, remote: Any = None) -> PerfParams:
    """Measure the roofline parameters with a short probe (~1 min here) and store them.

    On this machine for targets it runs, or on the board of ``remote`` (an RPC tracker key,
    :class:`tvmprune.tune.measure.RemoteSpec`) for any target, ARM boards included.
    """
    if remote is None and not target.runs_on_host:
        raise TvmpruneError(
            f"calibration measures on this machine, which cannot run {target.name} code; give "
            "--tracker HOST:PORT --key KEY of a board registered at an RPC tracker (or keep the built-in parameters)")
    say = log or (lambda s: None)
    meas = _measure(target, density, np.random.default_rng(0), say, remote)
    params = _fit(meas, target, density)
    if save:
        path = calibration_path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"target": target.to_json(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "density": density,
                "block_n": {str(f.format): f.probe.block_n(target) for f in probe_families()},
                "measured_on": f"rpc:{remote.tracker_host}:{remote.tracker_port}/{remote.key}" if remote else "host",
                "measurements": meas, "params": {k: getattr(params, k) for k in DEFAULT_PARAMS}}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=2), encoding="utf-8")
        os.replace(tmp, path)  # atomic: a crash never leaves half a file
        say(f"stored in {path}")
    return params
