"""``gator@RATIO[+latency|+flops|+memory][+epochsN][+finetuneN]`` in the pattern registry.

Unlike the other kinds, RATIO is the *cost kept* (the pruned model's cost over the dense
model's), in (0, 1).  Needs training data; uses the compile target for ``+latency``
(``x86`` when none is given).
"""

from __future__ import annotations

from torch import nn

from ..context import LoadContext, PruneContext
from ..graph import DependencyGraph
from ..pattern import Option, PrunePattern
from ..registry import PruningMethod
from ..result import PruneResult
from . import MissingDataError, apply_gator, check_ratio, parse_gator_options, rebuild_gator, train_loader_of

__all__ = ["GatorMethod"]


class GatorMethod(PruningMethod):
    kind = "gator"
    syntax = "gator@RATIO"
    options = (
        Option("latency", "cost = latency of tvmprune's kernels measured on the target (default)", group="cost",
               default=True),
        Option("flops", "cost = FLOPs", group="cost"),
        Option("memory", "cost = weight memory", group="cost"),
        Option("epochsN", "train the gates at most N epochs (default 40)", regex=r"epochs\d+", group="epochs"),
        Option("finetuneN", "fine-tune the sliced model N epochs (default 8)", regex=r"finetune\d+",
               group="finetune"),
        Option("roundsN", "+latency on a target that runs here: at most N more gate-training rounds while the "
               "compiled model's measured latency misses RATIO (default 2; 0 = no measurement)", regex=r"rounds\d+",
               group="rounds"),
    )
    default_rate = 0.5
    needs_data = True
    sparse = False
    fine_tunes = True

    def validate(self, pattern: PrunePattern) -> None:
        check_ratio(pattern.rate)
        if pattern.n != 1:
            super().validate(pattern)

    def check_context(self, pattern: PrunePattern, ctx: PruneContext) -> None:
        if ctx.data is None:
            try:
                train_loader_of(None)
            except MissingDataError as e:
                raise MissingDataError(f"pattern {pattern.label}: {e}") from None

    def apply(self, model: nn.Module, pattern: PrunePattern, graph: DependencyGraph,
              ctx: PruneContext) -> PruneResult:
        opts = parse_gator_options(pattern.rate, pattern.options)
        return apply_gator(model, graph, opts, ctx.example_input, train_loader_of(ctx.data), ctx.target,
                           ctx.progress)

    def restore(self, model: nn.Module, config: dict, ctx: LoadContext) -> nn.Module:
        return rebuild_gator(model, ctx.example_input(), config)
