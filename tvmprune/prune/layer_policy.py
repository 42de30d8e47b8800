"""Which conv / linear layers the masked (sparse) patterns prune, and why others stay dense.

Skipped: the first layer (any layer consuming the model input), depthwise convs and
grouped convs.  Everything else, including the final Linear, is pruned.
"""

from __future__ import annotations

from torch import nn

from .graph import DependencyGraph, is_depthwise

__all__ = ["skip_reason", "sparse_targets"]


def skip_reason(graph: DependencyGraph, name: str, module: nn.Module) -> str | None:
    """Why masked pruning leaves layer ``name`` dense, or None when it prunes it."""
    if name in graph.input_consumers:
        return "first layer (consumes the model input)"
    if is_depthwise(module):
        return "depthwise conv"
    if isinstance(module, nn.Conv2d) and module.groups != 1:
        return "grouped conv"
    return None


def sparse_targets(model: nn.Module, graph: DependencyGraph) -> tuple[list[str], dict[str, str | None]]:
    """``(layers to prune in trace order, {layer: skip reason or None} for all layers)``."""
    mods = dict(model.named_modules())
    skipped = {n: skip_reason(graph, n, mods[n]) for n in graph.layers}
    return [n for n in graph.layers if skipped[n] is None], skipped
