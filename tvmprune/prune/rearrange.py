"""Filter rearrangement (Lin et al. 2021, "1xN pattern for pruning CNNs").

Before 1xN block pruning, the output channels of every layer are sorted by the L1 norm of
their filters (descending), so that filters of similar magnitude share a block.  The same
permutation is applied to everything indexed by those channels (BatchNorm, depthwise
convs and their BatchNorms in pass-through chains, the input channels of every consumer,
a Linear after ``flatten``), so the rearranged model computes exactly the same function.

Channel groups coupled through residual adds are permuted as one group: one permutation
computed from the *summed* L1 norms of all producers in the group.  Frozen groups (the
model output, anything passing an op the dependency graph does not understand) are left
alone.  Channels feeding or leaving a grouped conv are sorted within each of its groups.
"""

from __future__ import annotations

import torch
from torch import nn

from .criteria import FilterL1
from .graph import ChannelGroup, DependencyGraph

__all__ = ["group_channel_scores", "rearrange_permutations", "rearrange_filters"]


def group_channel_scores(model: nn.Module, group: ChannelGroup, normalize: bool = False) -> torch.Tensor:
    """Summed L1 norm of the group's producers' filters, one value per channel (:class:`~.criteria.FilterL1`).

    With ``normalize`` each producer's norms are divided by its fan-in first (mean |w|),
    so that groups of different layers can be ranked against each other.
    """
    return FilterL1(normalize).scores(model, group)


def rearrange_permutations(model: nn.Module, graph: DependencyGraph) -> dict[int, torch.Tensor]:
    """One permutation (descending summed filter L1) per prunable channel group."""
    perms = {}
    for g in graph.prunable_groups():
        scores = group_channel_scores(model, g).reshape(g.strata, -1)  # grouped convs: sort within each group
        local = torch.sort(scores, descending=True, stable=True).indices
        perm = (local + torch.arange(g.strata)[:, None] * scores.shape[1]).reshape(-1)
        if not torch.equal(perm, torch.arange(g.size)):
            perms[g.gid] = perm
    return perms


def rearrange_filters(model: nn.Module, graph: DependencyGraph) -> dict[int, torch.Tensor]:
    """Permute ``model``'s filters in place by descending L1; returns ``{group id: permutation}``."""
    perms = rearrange_permutations(model, graph)
    graph.apply_channel_index(model, perms)
    return perms
