"""The cost target held by what is shipped: the rounded gates, not the soft ones.

Training stops when the eval-mode gates reach the target, but the rounding after it (open
counts to multiples of the channel quantum, :meth:`~.gates.ChannelGates.quantize`, and equal
counts per group, :meth:`~.gates.ChannelGates.even_strata`) rounds to the *nearest* multiple
and can push the cost back above it (0.5 -> ~0.66 on a tiny net).  :func:`round_to_target`
rounds, then closes more channels until the predicted cost of the rounded gates is at most
the target: one step at a time (a quantum of channels on one edge, or ``step`` channels in
every group of a grouped edge), the step that saves the most cost per unit of logit closed,
and within an edge the lowest-logit open channels.  Where rounding (or a large closing
step) went well *under* the target (a removable edge with a few channels left closes, counts
round down), steps of the highest-logit closed channels reopen while the cost stays at most the target, cheapest first:
the shipped model spends what it was allowed.  The sliced model is fine-tuned afterwards.
"""

from __future__ import annotations

import math

import torch

from .cost import CostModel
from .gates import ChannelGates

__all__ = ["round_to_target", "closing_step", "opening_step"]


def _edge_step(gates: ChannelGates, i: int, quantum: int) -> tuple[int, int]:
    """(channels closed per stratum in one step, least open channels per stratum) for edge ``i``."""
    e = gates.edges[i]
    per = e.size // max(e.strata, 1)
    if e.strata > 1:
        step = quantum // math.gcd(quantum, e.strata) if quantum > 1 else 1
        step = step if step <= per else 1
        return step, 0 if e.removable else 1
    step = quantum if e.size >= quantum else 1
    return step, 0 if e.removable else step


@torch.no_grad()
def closing_step(gates: ChannelGates, i: int, quantum: int) -> torch.Tensor | None:
    """Bool ``[C]``: the open channels of edge ``i`` that one closing step would close, or None.

    In each stratum (the whole edge when ``strata == 1``) the ``step`` lowest-logit open
    channels; None when that would leave fewer than the edge's floor (a non-removable edge
    keeps one step, a grouped one a channel per group; a removable edge may close entirely).
    """
    e = gates.edges[i]
    step, floor = _edge_step(gates, i, quantum)
    strata = max(e.strata, 1)
    open_ = gates.open_mask(i).reshape(strata, -1)
    counts = open_.sum(1)
    if int(counts.min()) - step < floor or int(counts.min()) == 0:
        return None
    theta = gates.logits[i].detach().reshape(strata, -1)
    rank = torch.where(open_, theta, torch.full_like(theta, float("inf")))
    close = torch.zeros_like(open_)
    close.scatter_(1, torch.topk(rank, step, dim=1, largest=False).indices, True)
    return (close & open_).reshape(-1)


@torch.no_grad()
def opening_step(gates: ChannelGates, i: int, quantum: int) -> torch.Tensor | None:
    """Bool ``[C]``: the closed channels of edge ``i`` one reopening step would open (the ``step``
    highest-logit closed channels of each stratum), or None when a stratum has fewer closed."""
    e = gates.edges[i]
    step, _ = _edge_step(gates, i, quantum)
    strata = max(e.strata, 1)
    shut = ~gates.open_mask(i).reshape(strata, -1)
    if int(shut.sum(1).min()) < step:
        return None
    theta = gates.logits[i].detach().reshape(strata, -1)
    rank = torch.where(shut, theta, torch.full_like(theta, -float("inf")))
    opening = torch.zeros_like(shut)
    opening.scatter_(1, torch.topk(rank, step, dim=1).indices, True)
    return (opening & shut).reshape(-1)


def _step_candidates(gates: ChannelGates, cost: CostModel, quantum: int, opening: bool):
    """Each edge's next opening (or closing) step: ``(edge index, channel mask, cost ratio after it)``."""
    counts = gates.open_counts()
    step_fn, sign = (opening_step, 1) if opening else (closing_step, -1)
    for i in range(len(gates.edges)):
        mask = step_fn(gates, i, quantum)
        if mask is None:
            continue
        after = list(counts)
        after[i] += sign * int(mask.sum())
        yield i, mask, cost.ratio_of_counts(after)


def _cheapest_reopening(gates: ChannelGates, cost: CostModel, target: float,
                        quantum: int) -> tuple[int, torch.Tensor] | None:
    fits = [(c, i, m) for i, m, c in _step_candidates(gates, cost, quantum, opening=True) if c <= target]
    if not fits:
        return None
    _, i, mask = min(fits, key=lambda f: (f[0], f[1]))
    return i, mask


def _best_step(gates: ChannelGates, cost: CostModel, quantum: int) -> tuple[int, torch.Tensor] | None:
    now = cost.ratio_of_counts(gates.open_counts())
    best: tuple[float, int, torch.Tensor] | None = None
    for i, close, after in _step_candidates(gates, cost, quantum, opening=False):
        saved = now - after
        if saved <= 0:
            continue
        lost = float(gates.logits[i].detach()[close].clamp(min=0).sum()) + 1e-3 * int(close.sum())
        if best is None or saved / lost > best[0]:
            best = (saved / lost, i, close)
    return None if best is None else (best[1], best[2])


@torch.no_grad()
def round_to_target(gates: ChannelGates, cost: CostModel, target: float, quantum: int) -> list[dict]:
    """Round the gates for slicing, then close channels until ``cost`` of the open counts <= ``target``.

    Returns one entry per step (``edge``, ``closed`` channels, negative when reopened,
    ``cost_ratio`` after it); empty when rounding alone landed on the target.  Stops early
    (target missed) only when no edge can close further without going below its floor.
    """
    gates.quantize(quantum)
    gates.even_strata(quantum)  # grouped convs: the same number of channels in each group
    steps: list[dict] = []
    while cost.ratio_of_counts(gates.open_counts()) > target:
        found = _best_step(gates, cost, quantum)
        if found is None:
            break
        i, close = found
        closed = gates.closed(i)
        closed |= close
        theta = gates.logits[i]
        theta[close] = torch.minimum(theta[close], torch.zeros_like(theta[close]))
        steps.append({"edge": gates.edges[i].name, "closed": int(close.sum()),
                      "cost_ratio": cost.ratio_of_counts(gates.open_counts())})
    return steps + _reopen(gates, cost, target, quantum)  # a closing step may have gone well under


def _reopen(gates: ChannelGates, cost: CostModel, target: float, quantum: int) -> list[dict]:
    steps: list[dict] = []
    while (found := _cheapest_reopening(gates, cost, target, quantum)) is not None:
        i, opening = found
        gates.closed(i)[opening] = False
        theta = gates.logits[i]
        theta[opening] = torch.clamp(theta[opening], min=1e-3)
        steps.append({"edge": gates.edges[i].name, "closed": -int(opening.sum()),
                      "cost_ratio": cost.ratio_of_counts(gates.open_counts())})
    return steps
