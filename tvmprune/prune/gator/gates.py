"""Gator's channel gates: one logit per channel, logistic noise, hard 0/1 with a straight-through gradient.

Per training sample and channel: ``s = sigmoid((theta + L) / T)``, ``L ~ Logistic(0, 1)``;
the gate is ``g = 1[s > 0.5]`` in the forward pass and ``ds/dtheta`` in the backward pass
(straight-through).  In eval mode ``g = 1[theta > 0]``.  A channel whose
``sigmoid(theta)`` falls below 0.5 is *closed for good* (:meth:`ChannelGates.close_settled`):
its gate is 0 in every later forward pass, and its logit gets no gradient.
After training, edges through grouped convs get the same open count in every group
(:meth:`ChannelGates.even_strata`).

Gates multiply the *inputs* of the consumers of each hyper-edge (forward pre-hooks, see
:func:`attach_gates`), so a closed channel is removed from the network's function exactly.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from .hyper_edges import HyperEdge, gate_logit

__all__ = ["ChannelGates", "attach_gates", "INIT_KEEP_PROB"]

INIT_KEEP_PROB = 0.995


class ChannelGates(nn.Module):
    """Gate logits of a list of hyper-edges.

    ``logits[i]`` has shape ``[edges[i].size]``; ``closed_<i>`` is a bool buffer of the same
    shape.  :meth:`sample` draws the gates of one batch; :attr:`current` holds them as
    ``[N, C]`` (training) or ``[1, C]`` (eval) float tensors for the hooks to read.
    """

    def __init__(self, edges: list[HyperEdge], init_keep_prob: float = INIT_KEEP_PROB,
                 temperature: float = 1.0) -> None:
        super().__init__()
        self.edges = edges
        self.temperature = float(temperature)
        theta0 = gate_logit(init_keep_prob)
        self.logits = nn.ParameterList([nn.Parameter(torch.full((e.size,), theta0)) for e in edges])
        for i, e in enumerate(edges):
            self.register_buffer(f"closed_{i}", torch.zeros(e.size, dtype=torch.bool))
        self.current: list[torch.Tensor] = []

    def closed(self, i: int) -> torch.Tensor:
        return getattr(self, f"closed_{i}")

    def sample(self, batch: int) -> list[torch.Tensor]:
        """Draw gates for a batch of ``batch`` samples (noisy in training mode, deterministic in eval)."""
        gates = []
        for i, theta in enumerate(self.logits):
            live = (~self.closed(i)).float()
            if self.training:
                u = torch.rand(batch, theta.numel()).clamp_(1e-6, 1 - 1e-6)
                noise = torch.log(u) - torch.log1p(-u)
                s = torch.sigmoid((theta + noise) / self.temperature)
                hard = (s > 0.5).float()
                g = hard + (s - s.detach())  # exactly 0 or 1 forward, ds/dtheta backward
            else:
                g = (theta.detach() > 0).float()[None]
            gates.append(g * live)
        self.current = gates
        return gates

    def open_mask(self, i: int) -> torch.Tensor:
        """Bool ``[C]``: channels of edge ``i`` open in eval mode (``theta > 0`` and not closed)."""
        return (self.logits[i].detach() > 0) & ~self.closed(i)

    def open_counts(self) -> list[int]:
        return [int(self.open_mask(i).sum()) for i in range(len(self.edges))]

    @torch.no_grad()
    def close_settled(self, keep_one: bool = True) -> int:
        """Close for good every channel with ``theta <= 0``; returns how many closed now.

        An edge that is not removable keeps its most open channel (``keep_one``).
        """
        newly = 0
        for i, (e, theta) in enumerate(zip(self.edges, self.logits)):
            closed = self.closed(i)
            now = (theta <= 0) | closed
            if keep_one and not e.removable and bool(now.all()):
                best = int(torch.argmax(torch.where(closed, torch.full_like(theta, -1e9), theta)))
                now[best] = False
                theta[best] = max(float(theta[best]), 1e-3)
            newly += int((now & ~closed).sum())
            closed.copy_(now)
            theta[now] = torch.minimum(theta[now], torch.zeros_like(theta[now]))
        return newly

    @torch.no_grad()
    def quantize(self, quantum: int) -> None:
        """Round each edge's open count to the nearest multiple of ``quantum`` (by logit rank).

        Kernels vectorise over output channels: a count that is not a multiple of the SIMD
        width runs much slower than the next multiple.  Edges smaller than ``quantum`` and
        removed edges are left alone; a non-removable edge keeps at least ``quantum``, a removable
        one with fewer than ``quantum / 2`` open channels closes (its block is removed).
        """
        if quantum <= 1:
            return
        for i, (e, theta) in enumerate(zip(self.edges, self.logits)):
            open_ = self.open_mask(i)
            n = int(open_.sum())
            if e.size < quantum or n == 0 or n % quantum == 0:
                continue
            floor = 0 if e.removable else quantum  # a removable edge with a few channels left goes
            want = min(max(int(round(n / quantum)) * quantum, floor), e.size)
            order = torch.argsort(theta, descending=True)
            keep = torch.zeros_like(open_)
            keep[order[:want]] = True
            keep |= open_ if want > n else torch.zeros_like(open_)
            if want < n:  # close the lowest-logit open channels
                ranked = [int(c) for c in order if bool(open_[c])]
                keep = torch.zeros_like(open_)
                if want:
                    keep[torch.tensor(ranked[:want], dtype=torch.long)] = True
            self.closed(i).copy_(~keep)
            theta[keep] = torch.clamp(theta[keep], min=1e-3)

    @torch.no_grad()
    def even_strata(self, quantum: int = 1) -> None:
        """Give every stratum of an edge with ``strata > 1`` (grouped convs) the same open count.

        Rule: ``k = round(open / strata)`` channels stay open in each stratum, rounded to a
        multiple of ``quantum / gcd(quantum, strata)`` when that fits in a stratum (so the
        total stays a multiple of ``quantum``); a non-removable edge keeps at least one per
        stratum.  In each stratum the open channels rank first, then by logit; the top ``k``
        are open afterwards, the rest closed.  Applied once after training (gates are free
        during training), so the sliced model is valid and equals the gated one.
        """
        for i, (e, theta) in enumerate(zip(self.edges, self.logits)):
            if e.strata <= 1:
                continue
            per = e.size // e.strata
            open_ = self.open_mask(i)
            step = quantum // math.gcd(quantum, e.strata) if quantum > 1 else 1
            step = step if step <= per else 1
            k = int(round(int(open_.sum()) / e.strata / step)) * step
            k = min(max(k, 0 if e.removable else 1), per)
            rank = (theta + open_.float() * 1e6).reshape(e.strata, per)
            keep = torch.zeros(e.strata, per, dtype=torch.bool)
            if k:
                keep.scatter_(1, torch.topk(rank, k, dim=1).indices, True)
            keep = keep.reshape(-1)
            self.closed(i).copy_(~keep)
            theta[keep] = torch.clamp(theta[keep], min=1e-3)

    def mask_gradients(self) -> None:
        """Zero the logit gradients of closed channels (they stay closed)."""
        for i, theta in enumerate(self.logits):
            if theta.grad is not None:
                theta.grad[self.closed(i)] = 0


def _consumer_mask(gates: ChannelGates, slots: list[tuple[int, int, int]], width: int) -> torch.Tensor:
    """``[N or 1, width]`` multiplier of one consumer's input features from its edges' gates."""
    cur = gates.current
    n = max(cur[i].shape[0] for i, _, _ in slots)
    parts: list[torch.Tensor] = []
    pos = 0
    for i, off, mult in sorted(slots, key=lambda s: s[1]):
        if off > pos:
            parts.append(torch.ones(n, off - pos))
        g = cur[i].expand(n, -1)
        parts.append(g.repeat_interleave(mult, dim=1) if mult > 1 else g)
        pos = off + gates.edges[i].size * mult
    if pos < width:
        parts.append(torch.ones(n, width - pos))
    return torch.cat(parts, dim=1)


@contextmanager
def attach_gates(model: nn.Module, gates: ChannelGates) -> Iterator[ChannelGates]:
    """Gate ``model`` while the context is open: sample at each forward, multiply consumer inputs.

    ``model``'s forward input must be the batch (dim 0 = samples).
    """
    mods = dict(model.named_modules())
    per_module: dict[str, list[tuple[int, int, int]]] = {}
    for i, e in enumerate(gates.edges):
        for c in e.consumers:
            per_module.setdefault(c.module, []).append((i, c.offset, c.mult))

    def sample_hook(_mod: nn.Module, args: tuple) -> None:
        gates.sample(int(args[0].shape[0]))

    def make_hook(slots: list[tuple[int, int, int]]):
        def hook(_mod: nn.Module, args: tuple) -> tuple:
            x = args[0]
            m = _consumer_mask(gates, slots, x.shape[1])
            m = m.reshape(m.shape[0], m.shape[1], *([1] * (x.dim() - 2)))
            return (x * m, *args[1:])
        return hook

    handles = [model.register_forward_pre_hook(sample_hook)]
    handles += [mods[name].register_forward_pre_hook(make_hook(slots)) for name, slots in per_module.items()]
    try:
        yield gates
    finally:
        for h in handles:
            h.remove()
