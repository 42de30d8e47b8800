"""``filter@RATE+params``: read a filter pruning rate as a parameter budget.

A uniform channel rate ``r`` keeps ``(1 - r)**2`` of the weights of every layer whose
inputs *and* outputs lose channels, but ``1 - r`` of a layer fixed on one side: the stem
(it reads the 3 image channels) and the classifier (its 1000 outputs are the model output).
In small models that classifier holds 30-45 % of the parameters (mobilenet_v2 36 %,
squeezenet1_0 41 %, shufflenet_v2_x1_0 45 %), so ``filter@0.3`` keeps 0.56-0.59 of them
where ResNets keep 0.49 -- measured per layer, every other conv / linear is pruned on both
sides (issue 19).

``+params`` takes the budget instead of the rate: keep at most ``(1 - RATE)**2`` of the
model's parameters (what the uniform rate keeps of a layer pruned on both sides), using the
*smallest* channel rate that meets it.  Layer-wise, that rate is again one uniform rate for
every channel group (and every channel-shuffle producer), just higher than ``RATE`` where
layers that cannot shrink on both sides hold many parameters (squeezenet1_0: 0.38 for
``filter@0.3+params``); with ``+global`` it is the global rate of one normalised-L1
ranking over all channels (Li et al. 2016 / Torch-Pruning global pruning), whose
parameter count decides how many channels go.  This is the parameter-target convention
of budgeted pruning (e.g. Torch-Pruning's benchmarks pruning to a parameter / MAC
reduction), with the target tied to the rate so ``filter@0.3`` and ``filter@0.3+params``
mean the same on a ResNet.

The search is a bisection over the rate in ``[0, max_layer_rate]`` (kept parameters fall as
the rate grows; 12 halvings, i.e. to 1/4096 of the range); each step counts the parameters
of the re-indexed model on the ``meta`` device, so no weights are copied.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from ..errors import PruneConfigError
from .graph import DependencyGraph
from .pattern import Option

__all__ = ["PARAMS", "params_budget", "kept_param_fraction", "rate_for_budget"]

PARAMS = Option("params", "the rate is a parameter budget: keep (1-rate)^2 of the parameters, "
                          "at the smallest channel rate that does")

BISECTION_STEPS = 12


def params_budget(rate: float) -> float:
    """Fraction of the parameters ``+params`` keeps at most: ``(1 - rate)**2``."""
    return (1.0 - float(rate)) ** 2


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def kept_param_fraction(model: nn.Module, graph: DependencyGraph) -> Callable[[dict[int, torch.Tensor]], float]:
    """``f(keep) -> kept fraction of model's parameters`` after ``graph.apply_channel_index(keep)``.

    Counts on a ``meta``-device skeleton of ``model`` (shapes only); ``model`` is not changed.
    """
    total = n_params(model)
    skeleton = copy.deepcopy(model).to("meta")

    def fraction(keep: dict[int, torch.Tensor]) -> float:
        small = graph.apply_channel_index(copy.deepcopy(skeleton), keep)
        return n_params(small) / max(1, total)

    return fraction


def rate_for_budget(kept_at: Callable[[float], float], budget: float, max_rate: float,
                    what: str = "pattern", steps: int = BISECTION_STEPS) -> tuple[float, float]:
    """``(smallest rate in [0, max_rate] with kept_at(rate) <= budget, kept_at(that rate))`` by bisection.

    ``kept_at(rate)`` is the kept parameter fraction at a channel rate (non-increasing in it).

    Raises:
        PruneConfigError: even ``max_rate`` keeps more than ``budget``; names ``what`` and the best reachable.
    """
    kept_hi = kept_at(max_rate)
    if kept_hi > budget:
        raise PruneConfigError(
            f"{what}: even a channel rate of {max_rate:g} keeps {kept_hi:.3f} of the parameters, over the budget "
            f"{budget:.3f} = (1-rate)^2 (layers that cannot shrink on both sides hold too many of them); "
            "give a lower rate, or prune without +params")
    lo, hi = 0.0, float(max_rate)
    if budget >= 1.0:  # rate 0: nothing to remove
        return lo, 1.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        kept = kept_at(mid)
        if kept <= budget:
            hi, kept_hi = mid, kept
        else:
            lo = mid
    return hi, kept_hi
