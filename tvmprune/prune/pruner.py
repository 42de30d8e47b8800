""":func:`prune_model`: check the request, trace the model, run the pattern's method, add the
common config entries.  Everything kind-specific lives in the method (:mod:`.registry`)."""

from __future__ import annotations

import copy
from typing import Any, Iterable

import torch
from torch import nn

from ..errors import PruneConfigError
from .context import PruneContext
from .graph import DependencyGraph, build_graph, default_example_input
from .pattern import PrunePattern, parse_pattern
from .registry import get_method, resolve_method
from .result import PruneResult
from .selection import MAX_LAYER_RATE

__all__ = ["prune_model", "check_request"]


def check_request(model: nn.Module, pattern: PrunePattern | str, example_input) -> PrunePattern:
    """The validated pattern; :class:`PruneConfigError` naming the bad argument otherwise."""
    if not isinstance(model, nn.Module):
        raise PruneConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(pattern, str):
        pattern = parse_pattern(pattern)
    if not isinstance(pattern, PrunePattern):
        raise PruneConfigError(f"pattern must be a PrunePattern or a pattern string, got {type(pattern).__name__}")
    get_method(pattern.kind).validate(pattern)  # again: a frozen dataclass can be changed behind its back
    if example_input is not None and not isinstance(example_input, torch.Tensor):
        raise PruneConfigError(f"example_input must be a torch.Tensor or None, got {type(example_input).__name__}")
    return pattern


def _common_config(pattern: PrunePattern, graph: DependencyGraph, ctx: PruneContext) -> dict:
    return {
        "pattern": pattern.label,
        "kind": pattern.kind,
        "n": pattern.n,
        "rate": pattern.rate,
        "options": list(pattern.options),
        "rearrange": False,
        "global": pattern.global_,
        "max_layer_rate": ctx.max_layer_rate,
        "coupled_groups": [g.producers for g in graph.coupled_groups()],
    }


def prune_model(model: nn.Module, pattern: PrunePattern | str, example_input: torch.Tensor | None = None, *,
                max_layer_rate: float = MAX_LAYER_RATE, skip_coupled: bool = False, data: Iterable | None = None,
                target: Any = None, progress: bool = False) -> PruneResult:
    """Prune a copy of ``model`` with ``pattern``; the input model is not modified.

    Args:
        model: the dense model.
        pattern: a :class:`PrunePattern` or a pattern string (``1x8@0.8``).
        example_input: NCHW tensor used to trace shapes (default ``1xCx224x224`` zeros).
        max_layer_rate: per-layer cap of global selection (``+global``).
        skip_coupled: filter pruning leaves channel groups coupled by residual adds dense.
        data: training batches ``(inputs, targets)``, for methods that need data.
        target: the compile target, for methods that optimise for it.
        progress: show progress on long work.

    Returns a :class:`PruneResult` whose ``.model`` is in eval mode: the original
    architecture with zeros for masked patterns (``1xN``, ``unstructured``), a physically
    smaller model for ``filter``.

    Raises:
        PruneConfigError: bad pattern, rate or block size (naming the argument / layer), or a
            method that needs data / a target not given.
        TraceError: the model cannot be traced with torch.fx.
    """
    pattern = check_request(model, pattern, example_input)
    method = resolve_method(pattern)
    m = copy.deepcopy(model).eval()
    x = example_input if example_input is not None else default_example_input(m)
    ctx = PruneContext(x, data=data, target=target, progress=progress, max_layer_rate=max_layer_rate,
                       skip_coupled=skip_coupled)
    method.check_context(pattern, ctx)
    graph = build_graph(m, x)
    result = method.apply(m, pattern, graph, ctx)
    result.config = {**_common_config(pattern, graph, ctx), **result.config}
    result.graph = graph
    result.model = result.model.eval()
    return result
