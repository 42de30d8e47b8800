"""Per-layer density bounds of Guided Sparsity Learning (Park et al., ICLR 2017), read off the perf model.

For one layer and the sparse format that would run it (CSR for unstructured weights, the best
of 1xN / 1xN-spatial / CSR for 1xN block weights), the target's roofline model predicts a
sparse time ``t_s(x)`` for every density ``x`` (fraction of weights, or blocks, kept) next to
the dense time ``t_d``. Two densities bound the range where pruning the layer pays:

* ``breakeven`` (Park's *lower bound of usefulness*, as a density): ``t_s(x) = t_d``; sparse
  beats dense only below it. 0 when no density in (0, 1) lets sparse win (the layer has no
  speedup potential and stays dense).
* ``saturation`` (Park's *upper bound*, as a density): below it the layer is bandwidth
  bound and more sparsity buys (almost) nothing. Found as the density where the slope
  ``dt_s/dx`` falls below half its value just under ``breakeven`` (the roofline's kink from
  the compute- to the memory-bound side); 0 when there is no such kink.

Both are found by bisection on the model's own predictions (``t_s`` is non-decreasing in ``x``:
every format's compute and traffic terms grow with density), so they follow whatever the
model and the target's calibration say. :func:`predict_layer_ms` is the one place that calls
the performance model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ...plan.layer import LayerInfo
from ...kernels.base import ConvSpec
from ...plan.planners import predict_ms
from ...plan.roofline import PerfParams, params_for
from ...target import NamedTarget

__all__ = ["LayerGeometry", "LayerBounds", "layer_geometries", "predict_layer_ms", "sparse_ms", "layer_bounds",
           "MIN_DENSITY", "SLOPE_DROP"]

MIN_DENSITY = 1e-4  # the sparsest density the bounds are searched at
SLOPE_DROP = 0.5  # saturation: the slope of t_s(x) has fallen below this fraction of its value near breakeven
_BISECT_STEPS = 40


@dataclass(frozen=True)
class LayerGeometry:
    """What the performance model needs of one conv / linear layer of a PyTorch model.

    ``weight_shape`` is PyTorch's (conv ``[Cout, Cin/groups, KH, KW]``, linear ``[out, in]``);
    ``spec`` the NHWC conv shape (conv only); ``batch`` the rows a linear layer multiplies.
    """

    name: str
    op: str  # "conv2d" | "linear"
    weight_shape: tuple[int, ...]
    spec: ConvSpec | None = None
    batch: int = 1


@dataclass
class _ProbeLayer(LayerInfo):
    """A :class:`LayerInfo` whose density and block size are given instead of read from a weight."""

    probe_density: float = 1.0
    probe_block_n: int = 0

    @property
    def density(self) -> float:  # type: ignore[override]
        return self.probe_density

    @property
    def block_n(self) -> int:  # type: ignore[override]
        return self.probe_block_n


def predict_layer_ms(geom: LayerGeometry, density: float, block_n: int, target: NamedTarget,
                     params: PerfParams | None = None) -> dict[str, float]:
    """The perf model's predicted ms per format (``dense``, ``csr``, ``1xN`` ...) of ``geom`` at ``density``.

    ``block_n`` > 1: the weight is 1xN block-sparse with that N (1xN formats are candidates);
    0 or 1: unstructured. The only call into the planners (:func:`tvmprune.plan.planners.predict_ms`).
    """
    weight = np.broadcast_to(np.float32(0), geom.weight_shape)  # shape and size only, no memory
    info = _ProbeLayer(0, geom.name, geom.op, weight, spec=geom.spec, batch=geom.batch,
                       probe_density=float(density), probe_block_n=int(block_n) if block_n > 1 else 0)
    return predict_ms(info, target, params or params_for(target))


def sparse_ms(geom: LayerGeometry, density: float, block_n: int, target: NamedTarget,
              params: PerfParams | None = None) -> tuple[float, str]:
    """Predicted ms and name of the fastest sparse format at ``density`` (``inf``, ``""`` when none exists)."""
    pred = predict_layer_ms(geom, density, block_n, target, params)
    sparse = {k: v for k, v in pred.items() if k != "dense"}
    if not sparse:
        return float("inf"), ""
    best = min(sparse, key=sparse.get)
    return sparse[best], best


@dataclass(frozen=True)
class LayerBounds:
    """Useful density range of one layer on one target (densities are kept fractions in [0, 1]).

    ``breakeven``: sparse is predicted faster than dense below it (0: never, no potential).
    ``saturation``: below it more sparsity buys almost nothing (0: no bandwidth floor).
    ``dense_ms``: predicted dense time; ``format``: sparse format at half the breakeven density.
    """

    breakeven: float
    saturation: float
    dense_ms: float
    format: str = ""

    @property
    def has_potential(self) -> bool:
        return self.breakeven > 0.0

    def to_json(self) -> dict:
        return {"breakeven": self.breakeven, "saturation": self.saturation, "dense_ms": self.dense_ms,
                "format": self.format}


def _bisect(pred, lo: float, hi: float) -> float:
    """Boundary in [lo, hi] between ``pred`` False (below) and True (above); ``pred(hi)`` must hold."""
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        if pred(mid):
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def layer_bounds(geom: LayerGeometry, block_n: int, target: NamedTarget,
                 params: PerfParams | None = None) -> LayerBounds:
    """Breakeven and saturation densities of ``geom`` (module docstring) by bisection on the model."""
    params = params or params_for(target)
    dense = predict_layer_ms(geom, 1.0, block_n, target, params)["dense"]

    def t_s(x: float) -> float:
        return sparse_ms(geom, x, block_n, target, params)[0]

    if t_s(MIN_DENSITY) >= dense:
        return LayerBounds(0.0, 0.0, dense)
    if t_s(1.0) < dense:
        breakeven = 1.0
    else:
        breakeven = _bisect(lambda x: t_s(x) >= dense, MIN_DENSITY, 1.0)
    h = max(MIN_DENSITY, 1e-3 * breakeven)

    def slope(x: float) -> float:
        return (t_s(x + h) - t_s(x)) / h

    x_ref = max(MIN_DENSITY, breakeven - 2 * h)
    s_ref = slope(x_ref)

    def steep(x: float) -> bool:
        return slope(x) >= SLOPE_DROP * s_ref

    if s_ref <= 0 or steep(MIN_DENSITY):
        saturation = 0.0
    else:
        saturation = _bisect(steep, MIN_DENSITY, x_ref)
    return LayerBounds(breakeven, saturation, dense, sparse_ms(geom, 0.5 * breakeven, block_n, target, params)[1])


def layer_geometries(model: nn.Module, example_input: torch.Tensor, names: list[str]) -> dict[str, LayerGeometry]:
    """Shapes of the named ``nn.Conv2d`` / ``nn.Linear`` modules, recorded in one forward pass of ``example_input``.

    Layers the pass does not reach are left out of the result.
    """
    mods = dict(model.named_modules())
    out: dict[str, LayerGeometry] = {}
    handles = []

    def hook(name: str):
        def record(mod: nn.Module, inputs, output) -> None:
            x = inputs[0]
            if isinstance(mod, nn.Conv2d):
                out[name] = LayerGeometry(name, "conv2d", tuple(mod.weight.shape), spec=_conv_spec(mod, x))
            else:
                out[name] = LayerGeometry(name, "linear", tuple(mod.weight.shape), batch=int(x.numel() // x.shape[-1]))
        return record

    for n in names:
        if isinstance(mods.get(n), (nn.Conv2d, nn.Linear)):
            handles.append(mods[n].register_forward_hook(hook(n)))
    try:
        with torch.no_grad():
            model.eval()(example_input)
    finally:
        for h in handles:
            h.remove()
    return out


def _conv_spec(mod: nn.Conv2d, x: torch.Tensor) -> ConvSpec:
    b, c, h, w = x.shape
    kh, kw = mod.kernel_size
    if isinstance(mod.padding, str):  # 'same' / 'valid'
        ph, pw = ((kh - 1) // 2, (kw - 1) // 2) if mod.padding == "same" else (0, 0)
    else:
        ph, pw = mod.padding
    return ConvSpec(int(b), int(h), int(w), int(c), mod.out_channels, kh, kw, stride=tuple(mod.stride),
                    padding=(ph, pw, ph, pw), groups=mod.groups)
