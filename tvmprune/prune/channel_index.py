"""Re-indexing the channels of one module: a registry of re-indexers per module type.

:meth:`DependencyGraph.apply_channel_index <tvmprune.prune.graph.DependencyGraph.apply_channel_index>`
permutes or subsets channel groups; for each module it touches it calls the re-indexer
registered for the module's type (looked up along the MRO), with the module's entries:

* ``out_entries`` -- ``(offset, mult, group size, index)`` for its output-side dimension
  (weight rows + bias for producers and depthwise convs, the features of a BatchNorm);
* ``in_entries`` -- the same for its input-side dimension (weight columns of consumers).

Built in: ``nn.Conv2d`` (incl. depthwise), ``nn.Linear``, ``nn.BatchNorm2d``.  A method that
introduces a new module type (e.g. a basis conv) registers one with :func:`register_reindexer`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..errors import TraceError

__all__ = ["is_depthwise", "Entry", "register_reindexer", "reindex_module", "full_index", "new_param"]

Entry = tuple[int, int, int, torch.Tensor]  # (offset, mult, group size, index into the group)
Reindexer = Callable[[nn.Module, list[Entry], list[Entry]], None]

_REINDEXERS: dict[type, Reindexer] = {}


def is_depthwise(m: nn.Module) -> bool:
    """``groups == in_channels == out_channels > 1``."""
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels


def register_reindexer(module_type: type) -> Callable[[Reindexer], Reindexer]:
    """Decorator: ``fn(module, out_entries, in_entries)`` re-indexes modules of ``module_type`` in place."""
    def deco(fn: Reindexer) -> Reindexer:
        _REINDEXERS[module_type] = fn
        return fn
    return deco


def reindex_module(name: str, module: nn.Module, out_entries: list[Entry], in_entries: list[Entry]) -> None:
    """Apply the registered re-indexer of ``module``'s type (nearest base class first)."""
    for cls in type(module).__mro__:
        if cls in _REINDEXERS:
            _REINDEXERS[cls](module, out_entries, in_entries)
            return
    raise TraceError(f"cannot re-index channels of {name} ({type(module).__name__}): no re-indexer registered "
                     "for that module type (see tvmprune.prune.channel_index.register_reindexer)")


def full_index(total: int, entries: list[tuple[int, int, int, torch.Tensor]]) -> torch.Tensor | None:
    """Index over a dimension of ``total`` entries; ``None`` when it is the identity."""
    if not entries:
        return None
    parts = []
    pos = 0
    for off, mult, size, idx in sorted(entries, key=lambda e: e[0]):
        if off > pos:
            parts.append(torch.arange(pos, off))
        idx = idx.long()
        if mult == 1:
            parts.append(off + idx)
        else:
            parts.append((off + idx[:, None] * mult + torch.arange(mult)[None, :]).reshape(-1))
        pos = off + size * mult
    if pos < total:
        parts.append(torch.arange(pos, total))
    full = torch.cat(parts)
    if full.numel() == total and torch.equal(full, torch.arange(total)):
        return None
    return full


def new_param(t: torch.Tensor, like: nn.Parameter) -> nn.Parameter:
    return nn.Parameter(t.detach().clone().contiguous(), requires_grad=like.requires_grad)


@register_reindexer(nn.Conv2d)
def _reindex_conv(mod: nn.Conv2d, out_entries, in_entries) -> None:
    oi = full_index(mod.out_channels, out_entries)
    dw = is_depthwise(mod)
    with torch.no_grad():
        if oi is not None:
            mod.weight = new_param(mod.weight[oi], mod.weight)
            if mod.bias is not None:
                mod.bias = new_param(mod.bias[oi], mod.bias)
            mod.out_channels = int(oi.numel())
            if dw:
                mod.in_channels = mod.groups = int(oi.numel())
        if not dw:
            ii = full_index(mod.in_channels, in_entries)
            if ii is not None:
                if mod.groups != 1:
                    raise TraceError("internal error: grouped conv input re-indexed")
                mod.weight = new_param(mod.weight[:, ii], mod.weight)
                mod.in_channels = int(ii.numel())


@register_reindexer(nn.Linear)
def _reindex_linear(mod: nn.Linear, out_entries, in_entries) -> None:
    oi = full_index(mod.out_features, out_entries)
    ii = full_index(mod.in_features, in_entries)
    with torch.no_grad():
        if oi is not None:
            mod.weight = new_param(mod.weight[oi], mod.weight)
            if mod.bias is not None:
                mod.bias = new_param(mod.bias[oi], mod.bias)
            mod.out_features = int(oi.numel())
        if ii is not None:
            mod.weight = new_param(mod.weight[:, ii], mod.weight)
            mod.in_features = int(ii.numel())


@register_reindexer(nn.BatchNorm2d)
def _reindex_bn(mod: nn.BatchNorm2d, entries, in_entries=()) -> None:
    oi = full_index(mod.num_features, entries)
    if oi is None:
        return
    with torch.no_grad():
        if mod.weight is not None:
            mod.weight = new_param(mod.weight[oi], mod.weight)
        if mod.bias is not None:
            mod.bias = new_param(mod.bias[oi], mod.bias)
        if mod.running_mean is not None:
            mod.running_mean = mod.running_mean[oi].clone()
            mod.running_var = mod.running_var[oi].clone()
    mod.num_features = int(oi.numel())
