"""Re-indexing the channels of one module: a registry of re-indexers per module type.

:meth:`DependencyGraph.apply_channel_index <tvmprune.prune.graph.DependencyGraph.apply_channel_index>`
permutes or subsets channel groups; for each module it touches it calls the re-indexer
registered for the module's type (looked up along the MRO), with the module's entries:

* ``out_entries`` -- ``(offset, mult, group size, index)`` for its output-side dimension
  (weight rows + bias for producers and depthwise convs, the features of a BatchNorm);
* ``in_entries`` -- the same for its input-side dimension (weight columns of consumers).

Built in: ``nn.Conv2d`` (incl. depthwise and grouped: each group keeps as many channels as
the others, ``groups`` stays), ``nn.Linear``, BatchNorm, ``nn.LayerNorm`` (over the
channels).  :func:`reindex_tensor` re-indexes a parameter / buffer used directly in a
forward (``param`` members: ConvNeXt's layer scale, ``LayerNorm2d``'s affine).  A method that
introduces a new module type (e.g. a basis conv) registers one with :func:`register_reindexer`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..errors import TraceError

__all__ = ["is_depthwise", "Entry", "register_reindexer", "reindex_module", "reindex_tensor", "full_index",
           "new_param"]

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


def reindex_tensor(model: nn.Module, qualname: str, dim: int, entries: list[Entry]) -> None:
    """Re-index dimension ``dim`` of the parameter or buffer ``qualname`` of ``model`` in place."""
    owner_name, _, attr = qualname.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    t = getattr(owner, attr)
    idx = full_index(t.shape[dim], entries)
    if idx is None:
        return
    with torch.no_grad():
        new = t.detach().index_select(dim, idx).clone().contiguous()
    if isinstance(t, nn.Parameter):
        setattr(owner, attr, new_param(new, t))
    else:
        setattr(owner, attr, new)
    if isinstance(owner, nn.LayerNorm) and attr in ("weight", "bias"):  # traced through, e.g. LayerNorm2d
        owner.normalized_shape = (int(idx.numel()),)


def _check_even_groups(idx: torch.Tensor, total: int, groups: int, what: str) -> torch.Tensor:
    """``[groups, k]`` local indices of a per-group index over ``total`` channels (equal count, in group)."""
    per = total // groups
    if idx.numel() % groups:
        raise TraceError(f"{what} of a grouped conv ({groups} groups) keeps {idx.numel()} channels, not the same "
                         "number per group: select channels of groups with ChannelGroup.strata > 1 evenly per "
                         "block (tvmprune.prune.selection.even_over_blocks)")
    local = idx.view(groups, -1) - (torch.arange(groups) * per)[:, None]
    if bool((local < 0).any() or (local >= per).any()):
        raise TraceError(f"{what} of a grouped conv moves channels between its {groups} groups or keeps an uneven "
                         "number per group: use even_over_blocks for groups with ChannelGroup.strata > 1")
    return local


@register_reindexer(nn.Conv2d)
def _reindex_conv(mod: nn.Conv2d, out_entries, in_entries) -> None:
    oi = full_index(mod.out_channels, out_entries)
    dw = is_depthwise(mod)
    with torch.no_grad():
        if oi is not None:
            if mod.groups != 1 and not dw:
                _check_even_groups(oi, mod.out_channels, mod.groups, "output index")
            mod.weight = new_param(mod.weight[oi], mod.weight)
            if mod.bias is not None:
                mod.bias = new_param(mod.bias[oi], mod.bias)
            mod.out_channels = int(oi.numel())
            if dw:
                mod.in_channels = mod.groups = int(oi.numel())
        if not dw:
            ii = full_index(mod.in_channels, in_entries)
            if ii is not None:
                mod.weight = new_param(_select_input_columns(mod, ii), mod.weight)
                mod.in_channels = int(ii.numel())


def _select_input_columns(mod: nn.Conv2d, ii: torch.Tensor) -> torch.Tensor:
    """``weight[:, ii]`` for a dense conv; per group (row ``o`` sees its own group's kept inputs) when grouped."""
    if mod.groups == 1:
        return mod.weight[:, ii]
    local = _check_even_groups(ii, mod.in_channels, mod.groups, "input index")
    rows = torch.arange(mod.weight.shape[0])
    row_group = rows // (mod.weight.shape[0] // mod.groups)
    return mod.weight[rows[:, None], local[row_group]]


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


def _index_affine(mod: nn.Module, oi: torch.Tensor) -> None:
    """Keep the channels ``oi`` of a norm layer's per-channel weight and bias (where it has them)."""
    with torch.no_grad():
        if mod.weight is not None:
            mod.weight = new_param(mod.weight[oi], mod.weight)
        if mod.bias is not None:
            mod.bias = new_param(mod.bias[oi], mod.bias)


@register_reindexer(nn.modules.batchnorm._BatchNorm)
def _reindex_bn(mod: nn.BatchNorm2d, entries, in_entries=()) -> None:
    oi = full_index(mod.num_features, entries)
    if oi is None:
        return
    _index_affine(mod, oi)
    if mod.running_mean is not None:
        mod.running_mean = mod.running_mean[oi].clone()
        mod.running_var = mod.running_var[oi].clone()
    mod.num_features = int(oi.numel())


@register_reindexer(nn.LayerNorm)
def _reindex_layer_norm(mod: nn.LayerNorm, entries, in_entries=()) -> None:
    """A LayerNorm over the channels alone: ``normalized_shape == (C,)``."""
    oi = full_index(mod.normalized_shape[-1], entries)
    if oi is None:
        return
    _index_affine(mod, oi)
    mod.normalized_shape = (int(oi.numel()),)
