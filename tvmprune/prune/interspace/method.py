"""``interspace@RATE[+1xN][+global]`` in the pattern registry (:mod:`tvmprune.prune.registry`).

Pruning is :func:`.prune.prune_in_place`; :meth:`InterspaceMethod.restore` converts the listed
convs of a freshly built model back to :class:`.module.InterspaceConv2d` so the saved state_dict
(coefficients, basis, mask) loads into it.
"""

from __future__ import annotations

from torch import nn

from ...errors import PruneConfigError
from ..context import LoadContext, PruneContext
from ..criteria import check_block_size
from ..graph import DependencyGraph
from ..pattern import Option, PrunePattern
from ..registry import GLOBAL, PruningMethod
from ..result import PruneResult
from .convert import rebuild_interspace_layers
from .prune import KIND, prune_in_place

__all__ = ["InterspaceMethod", "BLOCKS"]

BLOCKS = Option("1xN", "prune coefficients in blocks of N output channels (N in 2, 4, 8, 16, 32)", regex=r"1x\d+")


def block_n_of(pattern: PrunePattern) -> int:
    """N of the ``+1xN`` option, 1 without it."""
    tok = next((o for o in pattern.options if BLOCKS.matches(o)), None)
    return 1 if tok is None else int(tok[2:])


class InterspaceMethod(PruningMethod):
    """Interspace pruning (Wimmer et al., CVPR 2022): KxK filters as sparse combinations of a learned basis."""

    kind = KIND
    syntax = "interspace@RATE[+1xN]"
    options = (BLOCKS, GLOBAL)
    default_rate = 0.9

    def validate(self, pattern: PrunePattern) -> None:
        super().validate(pattern)
        if sum(BLOCKS.matches(o) for o in pattern.options) > 1:
            raise PruneConfigError("interspace takes at most one +1xN option")
        n = block_n_of(pattern)
        if n != 1:
            check_block_size(n, "interspace block size N (+1xN)")

    def apply(self, model: nn.Module, pattern: PrunePattern, graph: DependencyGraph,
              ctx: PruneContext) -> PruneResult:
        return prune_in_place(model, graph, pattern.rate, pattern.global_, block_n_of(pattern), ctx.max_layer_rate)

    def restore(self, model: nn.Module, config: dict, ctx: LoadContext) -> nn.Module:
        return rebuild_interspace_layers(model, config)
