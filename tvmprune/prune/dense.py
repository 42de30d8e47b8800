"""``dense``: no pruning (the baseline of every comparison); reports the layers as they are."""

from __future__ import annotations

from torch import nn

from .context import PruneContext
from .graph import DependencyGraph
from .layer_policy import sparse_targets
from .pattern import PrunePattern
from .registry import PruningMethod
from .result import PruneResult, layer_reports

__all__ = ["DenseMethod"]


class DenseMethod(PruningMethod):
    kind = "dense"
    syntax = "dense"
    takes_rate = False
    sparse = False

    def apply(self, model: nn.Module, pattern: PrunePattern, graph: DependencyGraph,
              ctx: PruneContext) -> PruneResult:
        _, skipped = sparse_targets(model, graph)
        return PruneResult(model, layer_reports(model, graph.layers, "dense", skipped), {})
