"""Per-layer latency table measured with tvmprune's own dense conv kernels on the target.

For each conv of the model, the kernel the compiler would use for it
(:func:`tvmprune.kernels.dense_conv2d.dense_conv2d`, or
:func:`tvmprune.kernels.grouped_conv2d.grouped_conv2d` for a grouped conv, whose channel
counts are then multiples of its groups; default schedule, bias + ReLU epilogue)
is built and timed at several (input, output) channel counts:
``(1, 1), (1, .5), (.5, 1), (.5, .5), (.25, .25)`` of the layer's channels (depthwise:
``1, .5, .25``).  A least-squares fit ``t = a + b*cin*cout + c*cin + d*cout`` (depthwise
``a + b*c``) interpolates between them for the cost model.

Measurements are cached as JSON per target and layer shape under
``$TVMPRUNE_CACHE_DIR/latency/<target>/`` (default ``~/.cache/tvmprune``), so a second
run (or another model with the same layer shapes) measures nothing.  Only host targets are
timed (timing on a board over RPC is not implemented here: use ``+flops`` for those).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from ...cache_dir import cache_dir, target_key
from ...errors import PruneConfigError
from ...target import NamedTarget, get_target
from .cost import LayerGeometry

__all__ = ["LatencyFit", "latency_cache_dir", "latency_fits", "latency_cost_fn", "CONV_FRACTIONS"]

CONV_FRACTIONS = ((1.0, 1.0), (1.0, 0.5), (0.5, 1.0), (0.5, 0.5), (0.25, 0.25))
DEPTHWISE_FRACTIONS = (1.0, 0.5, 0.25)


class LatencyFit:
    """``t(cin, cout)`` in ms from measured points ``[(cin, cout, ms), ...]``."""

    def __init__(self, points: list[tuple[int, int, float]], depthwise: bool) -> None:
        self.points = [(int(a), int(b), float(t)) for a, b, t in points]
        self.depthwise = depthwise
        p = np.array(self.points, dtype=np.float64)
        if depthwise:
            a = np.stack([np.ones(len(p)), p[:, 1]], 1)
        else:
            a = np.stack([np.ones(len(p)), p[:, 0] * p[:, 1], p[:, 0], p[:, 1]], 1)
        self.coef = _nonnegative_fit(a, p[:, 2])

    def __call__(self, n_in: torch.Tensor, n_out: torch.Tensor) -> torch.Tensor:
        c = self.coef
        if self.depthwise:
            t = c[0] + c[1] * n_out
        else:
            t = c[0] + c[1] * n_in * n_out + c[2] * n_in + c[3] * n_out
        return torch.clamp(t, min=0.0)


def _nonnegative_fit(a: np.ndarray, t: np.ndarray) -> list[float]:
    """Least squares with every coefficient >= 0 (a cost that never falls as channels are added).

    Noisy timings on a shared machine can otherwise give negative terms that extrapolate to
    nonsense; a negative coefficient is dropped and the rest refitted (active set).
    """
    active = list(range(a.shape[1]))
    coef = np.zeros(a.shape[1])
    while active:
        sol = np.linalg.lstsq(a[:, active], t, rcond=None)[0]
        if (sol >= 0).all():
            coef[active] = sol
            break
        active.pop(int(np.argmin(sol)))
    return [float(c) for c in coef]


def latency_cache_dir(target: NamedTarget) -> Path:
    """``$TVMPRUNE_CACHE_DIR/latency/<target name>-<hash of the target JSON>``."""
    return cache_dir("latency", target_key(target))


def _shape_key(lg: LayerGeometry, batch: int) -> str:
    dw = "_dw" if lg.kind == "depthwise" else (f"_g{lg.groups}" if lg.groups > 1 else "")
    return (f"conv{dw}_b{batch}_{lg.in_hw[0]}x{lg.in_hw[1]}_{lg.cin}to{lg.cout}_k{lg.kernel[0]}x{lg.kernel[1]}"
            f"_s{lg.stride[0]}x{lg.stride[1]}_p{lg.padding[0]}x{lg.padding[1]}")


def _points(lg: LayerGeometry, quantum: int = 1) -> list[tuple[int, int]]:
    def n(f: float, c: int) -> int:  # grouped convs: a multiple of the groups (each keeps as many)
        q = math.lcm(quantum, lg.groups)
        q = q if c >= q and (lg.groups == 1 or c % q == 0) else lg.groups
        return max(q, int(round(f * c / q)) * q)
    if lg.kind == "depthwise":
        return sorted({(n(f, lg.cin), n(f, lg.cout)) for f in DEPTHWISE_FRACTIONS})
    return sorted({(n(fi, lg.cin), n(fo, lg.cout)) for fi, fo in CONV_FRACTIONS})


def _time_conv(lg: LayerGeometry, cin: int, cout: int, batch: int, target: NamedTarget) -> float:
    from ...kernels.base import ConvSpec
    from ...kernels.dense_conv2d import dense_conv2d
    from ...kernels.grouped_conv2d import grouped_conv2d
    from ...measure.kernel import time_kernel

    dw = lg.kind == "depthwise"
    ph, pw = lg.padding
    spec = ConvSpec(batch, lg.in_hw[0], lg.in_hw[1], cin, cout, lg.kernel[0], lg.kernel[1], lg.stride,
                    (ph, pw, ph, pw), groups=cin if dw else lg.groups, bias=True, activation="relu")
    rng = np.random.default_rng(0)
    w = rng.standard_normal(spec.weight_shape).astype(np.float32)
    build = grouped_conv2d if lg.groups > 1 and not dw else dense_conv2d
    inst = build(spec, w, np.zeros(cout, np.float32), target)
    return time_kernel(inst, spec.in_shape, target, repeat=3, min_repeat_ms=5)


def latency_fits(layers: list[LayerGeometry], target: "NamedTarget | str", batch: int = 1,
                 progress: bool = False, quantum: int = 1) -> dict[str, LatencyFit]:
    """A :class:`LatencyFit` per conv layer (linear layers are left out), measured or from the cache.

    Channel counts are measured at multiples of ``quantum`` (see :meth:`ChannelGates.quantize`).

    Raises:
        PruneConfigError: the target's code cannot run on this machine.
    """
    t = get_target(target)
    if not t.runs_on_host:
        raise PruneConfigError(f"gator +latency times kernels on the target, and {t.name} code cannot run on this "
                               "machine (RPC timing is not supported for the latency table): use +flops or +memory")
    cache = latency_cache_dir(t)
    todo: dict[str, LayerGeometry] = {}
    for lg in layers:
        if lg.kind != "linear":
            todo.setdefault(_shape_key(lg, batch) + (f"_q{quantum}" if quantum > 1 else ""), lg)
    tables: dict[str, list] = {}
    missing = []
    for key, lg in todo.items():
        f = cache / f"{key}.json"
        try:
            tables[key] = [tuple(p) for p in json.loads(f.read_text())["points"]]
        except (OSError, ValueError, KeyError, TypeError):
            missing.append(key)
    if missing:
        from tqdm import tqdm

        n = sum(len(_points(todo[k], quantum)) for k in missing)
        bar = tqdm(total=n, desc="gator latency table", unit="kernel",
                   disable=not (progress and sys.stderr.isatty()))
        for key in missing:
            lg = todo[key]
            pts = []
            for cin, cout in _points(lg, quantum):
                pts.append((cin, cout, _time_conv(lg, cin, cout, batch, t)))
                bar.update(1)
            tables[key] = pts
            try:
                cache.mkdir(parents=True, exist_ok=True)
                (cache / f"{key}.json").write_text(json.dumps({"target": t.name, "layer": key, "unit": "ms",
                                                               "points": pts}))
            except OSError:
                pass  # a cache that cannot be written only costs time
        bar.close()
    sfx = f"_q{quantum}" if quantum > 1 else ""
    return {lg.name: LatencyFit(tables[_shape_key(lg, batch) + sfx], lg.kind == "depthwise")
            for lg in layers if lg.kind != "linear"}


def latency_cost_fn(fits: dict[str, LatencyFit]):
    """A layer cost for :class:`~.cost.CostModel`: the fitted ms (linear layers cost 0)."""
    def cost(lg: LayerGeometry, n_in: torch.Tensor, n_out: torch.Tensor) -> torch.Tensor:
        fit = fits.get(lg.name)
        return fit(n_in, n_out) if fit is not None else n_in * 0.0
    return cost
