"""Hyper-edges: the channel sets Gator gates, read from tvmprune's dependency graph.

A hyper-edge is one prunable channel group of :mod:`tvmprune.prune.graph`: the output
channels of every producer coupled by residual adds (a ResNet stage's "highway": stem or
downsample output, every block's last conv output), the BatchNorms and depthwise convs
that pass those channels through, and the input channels of every consumer.  Gates act
on the consumers' inputs, so a closed channel is invisible to the rest of the network
whatever sits between producer and consumer (BN shifts, depthwise convs, activations).

An edge is *removable* when all its channels may close: every consumer is a conv that
reads only this edge, and what those consumers then output (a per-channel constant:
their bias pushed through BN / activations) only meets live tensors at an add or
multiply, where it is kept as a constant.  A residual block's inner edge is removable
(the block is then its shortcut plus a constant); a highway edge is not, and keeps at
least one channel open.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..graph import DependencyGraph

__all__ = ["HyperEdge", "ConsumerSlot", "find_hyper_edges", "ungated_reasons"]


@dataclass(frozen=True)
class ConsumerSlot:
    """Where an edge's channels sit in a consumer's input: features ``offset + c*mult .. + mult``."""

    module: str
    offset: int
    mult: int


@dataclass
class HyperEdge:
    """One gated channel group.

    ``index`` is the position of the edge's gate vector in :class:`~.gates.ChannelGates`;
    ``gid`` the group id in the dependency graph; ``name`` its first producer.
    ``strata``: the channels form that many equal consecutive blocks (the groups of a grouped
    conv, :attr:`ChannelGroup.strata`); each block must keep the same number of channels.
    """

    index: int
    gid: int
    name: str
    size: int
    producers: list[str]
    consumers: list[ConsumerSlot]
    depthwise: list[str] = field(default_factory=list)
    removable: bool = False
    why_not_removable: str | None = None
    strata: int = 1

    @property
    def is_highway(self) -> bool:
        """Coupled through residual adds (more than one producer)."""
        return len(self.producers) > 1


def find_hyper_edges(model: nn.Module, graph: DependencyGraph) -> list[HyperEdge]:
    """The gateable channel groups of ``model``: prunable groups that some layer consumes.

    Removability is decided with :func:`tvmprune.prune.gator.slicing.removal_check`.
    """
    from .slicing import removal_check

    edges: list[HyperEdge] = []
    for g in graph.prunable_groups():
        consumers = [ConsumerSlot(m.module, m.offset, m.mult) for m in g.members if m.role == "in"]
        if not consumers:
            continue
        e = HyperEdge(len(edges), g.gid, g.name, g.size, list(g.producers), consumers,
                      [m.module for m in g.members if m.role == "dw"], strata=g.strata)
        e.why_not_removable = removal_check(model, graph, g.gid)
        e.removable = e.why_not_removable is None
        edges.append(e)
    return edges


def ungated_reasons(graph: DependencyGraph, edges: list[HyperEdge]) -> dict[str, str]:
    """Why a conv / linear layer's output channels are not gated (layer name -> reason)."""
    gated = {p for e in edges for p in e.producers}
    out: dict[str, str] = {}
    for name in graph.layers:
        if name in gated:
            continue
        g = graph.out_group(name)
        if graph.is_depthwise(name):
            out[name] = "depthwise conv (its channels follow the gates of its input edge)"
        elif g is None:
            out[name] = "output channels not tracked (grouped conv or unknown op)"
        elif g.frozen:
            out[name] = f"frozen channels ({g.reason})"
        else:
            out[name] = "output channels consumed by no layer"
    return out


def gate_logit(keep_prob: float) -> float:
    """The logit whose sigmoid is ``keep_prob``."""
    p = torch.tensor(float(keep_prob))
    return float(torch.log(p) - torch.log1p(-p))
