"""The one-shot guided planner: per-layer densities that spend a pruning budget where the target gains most.

Units: an *element* is one weight (unstructured) or one 1xN block; a layer's density is the
fraction of its elements kept. The budget is ``round(rate x prunable elements)``, the number
the unguided pattern removes, and is spent in three phases (all per the target's perf model,
via :mod:`.bounds`):

1. Layers without speedup potential (sparse never beats dense) keep every element.
2. Admission: layers predicted less than ``MIN_SPEEDUP`` (1.1x) faster even at their floor
   density are left dense too (pruning them would spend budget for nothing); the others are ranked by predicted ms saved per pruned element when pruned
   to their floor density ``max(saturation, 1 - max_layer_rate)``; in that order each is
   admitted while the budget still covers its entry cost (the elements to prune to get just
   below ``breakeven``, where it starts to pay).
3. Water-filling over the admitted layers, by ``objective``:

   * ``level`` (default): one common density level is lowered over them (each layer between
     its entry and its floor) until the budget is spent: like the uniform pattern, but only on
     layers where sparsity pays, and never above a layer's breakeven or below its floor;
   * ``time``: the rest of the budget goes, in steps of ~0.5% of a layer, to the layer whose
     next step saves the most predicted ms per element, down to its floor (the roofline is
     piecewise linear and flattens below saturation, so the marginal gain falls as a layer
     gets sparser and the greedy choice is optimal for the model). It drives the layers with
     the most work per weight (large feature maps) to the floor first, which minimises the
     predicted time but costs more accuracy than ``level``.
4. Leftover budget (more than the useful ranges absorb) is spent where it costs no time:
   admitted layers below their saturation, then the non-admitted layers with potential, both
   up to ``max_layer_rate``; what still remains is reported as ``unspent``.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import asdict, dataclass, field

from ...errors import PruneConfigError
from ...plan.roofline import PerfParams, params_for
from ...target import NamedTarget
from .bounds import LayerBounds, LayerGeometry, layer_bounds, predict_layer_ms, sparse_ms

__all__ = ["GuidedLayer", "GuidedPlan", "plan_guided", "layer_elements", "format_plan_table", "FILL_STEPS"]

FILL_STEPS = 200  # water-filling step: 1/FILL_STEPS of a layer's elements
MIN_SPEEDUP = 1.1  # a layer is pruned only if its floor density is predicted at least this much faster
OBJECTIVES = ("level", "time")
DEFAULT_OBJECTIVE = "level"


@dataclass
class GuidedLayer:
    """The planner's choice for one prunable layer.

    ``elements``: weights (unstructured) or 1xN blocks of the layer; ``pruned``: how many of
    them are removed; ``density = 1 - pruned / elements``; ``dense_ms`` / ``predicted_ms``:
    the model's dense time and its time at ``density`` (the faster of dense and sparse).
    """

    name: str
    elements: int
    bounds: LayerBounds
    pruned: int = 0
    predicted_ms: float = 0.0
    format: str = "dense"
    reason: str = ""

    @property
    def density(self) -> float:
        return 1.0 - self.pruned / self.elements if self.elements else 1.0

    @property
    def speedup(self) -> float:
        return self.bounds.dense_ms / self.predicted_ms if self.predicted_ms > 0 else 1.0

    def to_json(self) -> dict:
        return {"name": self.name, "elements": self.elements, "pruned": self.pruned, "density": self.density,
                "bounds": self.bounds.to_json(), "predicted_ms": self.predicted_ms, "format": self.format,
                "reason": self.reason}

    @staticmethod
    def from_json(d: dict) -> "GuidedLayer":
        return GuidedLayer(d["name"], int(d["elements"]), LayerBounds(**d["bounds"]), int(d["pruned"]),
                           float(d["predicted_ms"]), d.get("format", "dense"), d.get("reason", ""))


@dataclass
class GuidedPlan:
    """Per-layer pruning counts for one target. ``kind``: ``unstructured`` or ``1xN`` (block size ``n``)."""

    target: str
    kind: str
    n: int
    rate: float
    budget: int
    layers: list[GuidedLayer] = field(default_factory=list)
    params_source: str = ""
    max_layer_rate: float = 0.95
    objective: str = DEFAULT_OBJECTIVE

    @property
    def spent(self) -> int:
        return sum(layer.pruned for layer in self.layers)

    @property
    def unspent(self) -> int:
        return self.budget - self.spent

    @property
    def densities(self) -> dict[str, float]:
        return {layer.name: layer.density for layer in self.layers}

    def layer(self, name: str) -> GuidedLayer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def to_json(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "layers"}
        d["layers"] = [layer.to_json() for layer in self.layers]
        return d

    @staticmethod
    def from_json(d: dict) -> "GuidedPlan":
        try:
            return GuidedPlan(d["target"], d["kind"], int(d["n"]), float(d["rate"]), int(d["budget"]),
                              [GuidedLayer.from_json(x) for x in d["layers"]], d.get("params_source", ""),
                              float(d.get("max_layer_rate", 0.95)), d.get("objective", DEFAULT_OBJECTIVE))
        except (KeyError, TypeError, ValueError) as e:
            raise PruneConfigError(f"damaged guided plan in pruning config ({type(e).__name__}: {e})") from None


def layer_elements(weight_shape: tuple[int, ...], n: int) -> int:
    """Weights (``n`` <= 1) or 1xN blocks (``ceil(Cout / n) x Cin*KH*KW``) of a weight."""
    k = math.prod(weight_shape[1:])
    return weight_shape[0] * k if n <= 1 else -(-weight_shape[0] // n) * k


class _Timer:
    """Predicted ms of one layer at a pruned count (the faster of dense and sparse)."""

    def __init__(self, geom: LayerGeometry, elements: int, n: int, target: NamedTarget, params: PerfParams):
        self.geom, self.elements, self.n, self.target, self.params = geom, elements, n, target, params
        self.dense = predict_layer_ms(geom, 1.0, n, target, params)["dense"]

    def ms(self, pruned: int) -> tuple[float, str]:
        if pruned <= 0:
            return self.dense, "dense"
        t, fmt = sparse_ms(self.geom, 1.0 - pruned / self.elements, self.n, self.target, self.params)
        return (t, fmt) if t < self.dense else (self.dense, "dense")


def plan_guided(geoms: dict[str, LayerGeometry], kind: str, rate: float, target: NamedTarget, n: int = 1,
                params: PerfParams | None = None, max_layer_rate: float = 0.95,
                objective: str = DEFAULT_OBJECTIVE) -> GuidedPlan:
    """Plan per-layer pruned counts for the prunable layers ``geoms`` (module docstring).

    ``objective``: ``level`` (phase 3 by a common density level) or ``time`` (greedy ms per element).
    """
    if kind not in ("unstructured", "1xN"):
        raise PruneConfigError(f"+guided applies to unstructured and 1xN patterns, not {kind!r}")
    if objective not in OBJECTIVES:
        raise PruneConfigError(f"guided objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    params = params or params_for(target)
    bn = n if kind == "1xN" else 0
    layers, timers = {}, {}
    for name, g in geoms.items():
        elems = layer_elements(g.weight_shape, bn)
        layers[name] = GuidedLayer(name, elems, layer_bounds(g, bn, target, params))
        timers[name] = _Timer(g, elems, bn, target, params)
    budget = int(round(rate * sum(gl.elements for gl in layers.values())))
    cap = {k: int(math.floor(max_layer_rate * gl.elements)) for k, gl in layers.items()}
    floor_ = {k: min(cap[k], int(math.floor((1 - gl.bounds.saturation) * gl.elements))) for k, gl in layers.items()}
    entry = {k: _entry_count(gl, timers[k]) for k, gl in layers.items()}
    best = {k: layers[k].bounds.dense_ms / max(timers[k].ms(floor_[k])[0], 1e-12) for k in layers}
    useful = [k for k, gl in layers.items()
              if gl.bounds.has_potential and entry[k] <= floor_[k] and best[k] >= MIN_SPEEDUP]
    for k, gl in layers.items():
        if not gl.bounds.has_potential:
            gl.reason = f"no speedup potential on {target.name}: sparse never beats dense"
        elif entry[k] > floor_[k]:
            gl.reason = f"breakeven density {gl.bounds.breakeven:.3f} is below the {1 - max_layer_rate:.2f} floor"
        elif k not in useful:
            gl.reason = f"too little to gain: at most {best[k]:.2f}x at the floor density"

    def gain_at_floor(k: str) -> float:
        return (timers[k].dense - timers[k].ms(floor_[k])[0]) / max(floor_[k], 1)

    left = budget
    admitted = []
    for k in sorted(useful, key=gain_at_floor, reverse=True):
        if entry[k] <= left:
            layers[k].pruned, left = entry[k], left - entry[k]
            admitted.append(k)
            layers[k].reason = "pruned where it pays"
    if objective == "time":
        left = _water_fill(layers, timers, admitted, floor_, left)
    else:
        left = _level_fill(layers, admitted, floor_, left)
    for k in admitted:
        if layers[k].pruned >= floor_[k] and floor_[k] < cap[k]:
            layers[k].reason = f"at saturation density {layers[k].bounds.saturation:.3f} (bandwidth bound below)"
    for pool, why in ((admitted, "below saturation to spend the budget (no predicted cost)"),
                      ([k for k in sorted(useful, key=gain_at_floor, reverse=True) if k not in admitted],
                       "budget left over: pruned without predicted gain")):
        for k in pool:
            take = min(left, cap[k] - layers[k].pruned)
            if take > 0:
                layers[k].pruned += take
                left -= take
                layers[k].reason = why
    for k in useful:
        if k not in admitted and layers[k].pruned == 0:
            layers[k].reason = "not admitted: the budget went to layers saving more ms per pruned weight"
    for k, gl in layers.items():
        gl.predicted_ms, gl.format = timers[k].ms(gl.pruned)
    return GuidedPlan(target.name, kind, n if kind == "1xN" else 1, float(rate), budget, list(layers.values()),
                      params.source, max_layer_rate, objective)


def _entry_count(gl: GuidedLayer, timer: _Timer) -> int:
    """Fewest elements to prune for the layer to be predicted faster than dense (just below breakeven)."""
    if not gl.bounds.has_potential:
        return gl.elements
    k = int(math.floor((1 - gl.bounds.breakeven) * gl.elements)) + 1
    while k < gl.elements and timer.ms(k)[1] == "dense":  # bisection rounding: a few steps at most
        k += 1
    return k


def _water_fill(layers: dict[str, GuidedLayer], timers: dict[str, _Timer], admitted: list[str],
                floor_: dict[str, int], left: int) -> int:
    """Spend ``left`` elements in steps on the admitted layer with the best ms saved per element; returns the rest."""
    heap = []

    def push(k: str) -> None:
        gl = layers[k]
        step = min(max(1, gl.elements // FILL_STEPS), floor_[k] - gl.pruned)
        if step > 0:
            gain = (timers[k].ms(gl.pruned)[0] - timers[k].ms(gl.pruned + step)[0]) / step
            heapq.heappush(heap, (-gain, k, step))

    for k in admitted:
        push(k)
    while heap and left > 0:
        _, k, step = heapq.heappop(heap)
        take = min(step, left)
        layers[k].pruned += take
        left -= take
        push(k)
    return left


def _level_fill(layers: dict[str, GuidedLayer], admitted: list[str], floor_: dict[str, int], left: int) -> int:
    """Lower one common density level over the admitted layers (each stays between its entry and its floor)
    until ``left`` elements are spent; returns the rest."""
    start = {k: layers[k].pruned for k in admitted}

    def counts(level: float) -> dict[str, int]:
        return {k: min(floor_[k], max(start[k], int(round((1 - level) * layers[k].elements)))) for k in admitted}

    def spent(level: float) -> int:
        return sum(counts(level).values()) - sum(start.values())

    if not admitted:
        return left
    lo, hi = 0.0, 1.0  # spent(hi) = 0 <= left; find the lowest level that does not overspend
    if spent(lo) <= left:
        hi = lo
    for _ in range(60):
        if hi - lo < 1e-12:
            break
        mid = 0.5 * (lo + hi)
        if spent(mid) <= left:
            hi = mid
        else:
            lo = mid
    chosen = counts(hi)
    left -= sum(chosen.values()) - sum(start.values())
    for k in admitted:
        layers[k].pruned = chosen[k]
    for k in sorted(admitted, key=lambda k: floor_[k] - chosen[k], reverse=True):  # rounding remainder
        take = min(left, floor_[k] - layers[k].pruned)
        layers[k].pruned += take
        left -= take
    return left


def format_plan_table(plan: GuidedPlan) -> str:
    """Per layer: breakeven / saturation densities, chosen density, format, predicted speedup, reason."""
    head = ("layer", "breakeven", "saturation", "density", "format", "dense ms", "pred ms", "speedup", "reason")
    rows = [head]
    for gl in plan.layers:
        b = gl.bounds
        rows.append((gl.name, f"{b.breakeven:.3f}" if b.has_potential else "-", f"{b.saturation:.3f}",
                     f"{gl.density:.3f}", gl.format, f"{b.dense_ms:.3f}", f"{gl.predicted_ms:.3f}",
                     f"{gl.speedup:.2f}x", gl.reason))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    tot_d = sum(gl.bounds.dense_ms for gl in plan.layers)
    tot_p = sum(gl.predicted_ms for gl in plan.layers)
    unit = "weights" if plan.kind == "unstructured" else f"1x{plan.n} blocks"
    lines.append(f"guided for {plan.target} ({plan.params_source}): pruned {plan.spent:,} of the budget "
                 f"{plan.budget:,} {unit}; predicted {tot_d:.2f} -> {tot_p:.2f} ms over these layers "
                 f"({tot_d / tot_p if tot_p else 1:.2f}x)")
    if plan.unspent:
        lines.append(f"  {plan.unspent:,} {unit} of the budget could not be placed (every layer at max_layer_rate "
                     f"{plan.max_layer_rate})")
    return "\n".join(lines)
