"""The cost Gator trains against: per-layer cost as a function of the open channels on each side.

Every conv / linear layer of the graph is a :class:`LayerGeometry`: which hyper-edges feed
its input, which edge its output belongs to (or fixed channel counts where ungated), and its
spatial sizes.  A :class:`CostModel` turns expected open-channel counts per edge (scalar
tensors, differentiable through the straight-through gates) into the model's cost as a
fraction of the dense model's:

* ``flops``: ``2 * KH*KW * H_out*W_out * open_in * open_out`` (depthwise: ``* open``;
  a grouped conv: ``/ groups``);
* ``memory``: weights, ``KH*KW * open_in * open_out`` (depthwise: ``KH*KW * open``; grouped: ``/ groups``);
* ``latency``: a fit of times measured with tvmprune's own kernels on the target
  (:mod:`.latency_table`): ``a + b*open_in*open_out + c*open_in + d*open_out`` per conv.

A layer with no open input or output channel costs 0 (it is removed).  The gradient of the
bilinear terms w.r.t. one edge's count is Gator's edge weight ``w_e`` (factor x open channels
on the other side, over the total), recomputed at every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from ..graph import DependencyGraph, is_depthwise
from .hyper_edges import HyperEdge

__all__ = ["LayerGeometry", "CostModel", "layer_geometries", "COSTS"]

COSTS = ("latency", "flops", "memory")


@dataclass
class LayerGeometry:
    """One conv / linear layer as the cost sees it.

    ``in_edges``: (edge index, channels) pairs gated on the input; ``fixed_in``: ungated input
    channels.  ``out_edge`` / ``fixed_out`` likewise for the output (depthwise convs: the
    edge they pass through, on both sides).  ``in_hw`` / ``out_hw`` are (H, W); linear: (1, 1).
    """

    name: str
    kind: str  # conv | depthwise | linear
    cin: int
    cout: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    in_edges: list[tuple[int, int]] = field(default_factory=list)
    fixed_in: int = 0
    out_edge: int | None = None
    fixed_out: int = 0
    groups: int = 1  # a grouped (not depthwise) conv: each output reads cin / groups inputs

    @property
    def k2(self) -> int:
        return self.kernel[0] * self.kernel[1]


def _spatial_sizes(model: nn.Module, names: list[str], example_input: torch.Tensor) -> dict[str, tuple]:
    mods = dict(model.named_modules())
    sizes: dict[str, tuple] = {}
    hooks = []
    for n in names:
        def hook(_m, args, out, n=n):
            x = args[0]
            sizes[n] = (tuple(x.shape[2:]) or (1, 1), tuple(out.shape[2:]) or (1, 1))
        hooks.append(mods[n].register_forward_hook(hook))
    try:
        with torch.no_grad():
            was = model.training
            model.eval()
            model(example_input)
            model.train(was)
    finally:
        for h in hooks:
            h.remove()
    return sizes


def layer_geometries(model: nn.Module, graph: DependencyGraph, edges: list[HyperEdge],
                     example_input: torch.Tensor) -> list[LayerGeometry]:
    """A :class:`LayerGeometry` for each conv / linear layer of ``graph`` (trace order)."""
    mods = dict(model.named_modules())
    by_gid = {e.gid: e.index for e in edges}
    sizes = _spatial_sizes(model, graph.layers, example_input)
    out: list[LayerGeometry] = []
    for name in graph.layers:
        mod = mods[name]
        in_hw, out_hw = sizes.get(name, ((1, 1), (1, 1)))
        if isinstance(mod, nn.Conv2d):
            kind = "depthwise" if is_depthwise(mod) else "conv"
            lg = LayerGeometry(name, kind, mod.in_channels, mod.out_channels, tuple(mod.kernel_size),
                               tuple(mod.stride), tuple(mod.padding) if not isinstance(mod.padding, str) else (0, 0),
                               in_hw, out_hw, groups=1 if kind == "depthwise" else mod.groups)
        else:
            lg = LayerGeometry(name, "linear", mod.in_features, mod.out_features, (1, 1), (1, 1), (0, 0),
                               (1, 1), (1, 1))
        gated_in = 0
        for g, m in graph.entries(name):
            if m.role == "in" and g.gid in by_gid:
                lg.in_edges.append((by_gid[g.gid], g.size * m.mult))
                gated_in += g.size * m.mult
            elif m.role in ("out", "dw") and g.gid in by_gid:
                lg.out_edge = by_gid[g.gid]
        if kind_is_dw(lg):
            lg.in_edges, lg.fixed_in = [], lg.cin
            lg.fixed_out = 0 if lg.out_edge is not None else lg.cout
        else:
            lg.fixed_in = lg.cin - gated_in
            lg.fixed_out = 0 if lg.out_edge is not None else lg.cout
        out.append(lg)
    return out


def kind_is_dw(lg: LayerGeometry) -> bool:
    return lg.kind == "depthwise"


LayerCostFn = Callable[[LayerGeometry, torch.Tensor, torch.Tensor], torch.Tensor]


def flops_cost(lg: LayerGeometry, n_in: torch.Tensor, n_out: torch.Tensor) -> torch.Tensor:
    hw = lg.out_hw[0] * lg.out_hw[1]
    if lg.kind == "depthwise":
        return 2.0 * lg.k2 * hw * n_out
    return 2.0 * lg.k2 * hw * n_in * n_out / lg.groups


def memory_cost(lg: LayerGeometry, n_in: torch.Tensor, n_out: torch.Tensor) -> torch.Tensor:
    if lg.kind == "depthwise":
        return lg.k2 * n_out * 1.0
    return lg.k2 * n_in * n_out / lg.groups


class CostModel:
    """Model cost from open channel counts.

    ``layer_cost(geometry, open_in, open_out)`` gives one layer's cost (scalar tensors in, a
    scalar tensor out).  :meth:`ratio` is the cost over the dense model's (all edges open).
    """

    def __init__(self, layers: list[LayerGeometry], sizes: Sequence[int], layer_cost: LayerCostFn,
                 kind: str) -> None:
        self.layers = layers
        self.sizes = [int(s) for s in sizes]
        self.layer_cost = layer_cost
        self.kind = kind
        self.dense = float(self.total([torch.tensor(float(s)) for s in self.sizes]))

    def _sides(self, lg: LayerGeometry, opened: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        n_in = torch.tensor(float(lg.fixed_in))
        for i, width in lg.in_edges:
            n_in = n_in + opened[i] * (width / self.sizes[i])
        n_out = opened[lg.out_edge] if lg.out_edge is not None else torch.tensor(float(lg.fixed_out))
        if lg.kind == "depthwise":
            n_in = n_out
        return n_in, n_out

    def per_layer(self, opened: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for lg in self.layers:
            n_in, n_out = self._sides(lg, opened)
            alive = float(n_in.detach() > 0) * float(n_out.detach() > 0)
            out[lg.name] = self.layer_cost(lg, n_in, n_out) * alive
        return out

    def total(self, opened: Sequence[torch.Tensor]) -> torch.Tensor:
        return sum(self.per_layer(opened).values(), torch.tensor(0.0))

    def ratio(self, opened: Sequence[torch.Tensor]) -> torch.Tensor:
        """Cost of the model with ``opened[i]`` channels open on edge ``i``, over the dense cost."""
        return self.total(opened) / max(self.dense, 1e-12)

    def ratio_of_counts(self, counts: Sequence[int]) -> float:
        return float(self.ratio([torch.tensor(float(c)) for c in counts]))
