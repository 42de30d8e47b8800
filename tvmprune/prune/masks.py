"""Weight masks that stay applied: ``{module name: bool keep-mask shaped like its weight}``.

:func:`attach_masks` registers a forward pre-hook on each masked module that multiplies
the weight by its mask before every forward, and a gradient hook that zeroes the masked
gradients, so optimizer steps (even with momentum / weight decay) cannot revive pruned
weights in any computation.  :func:`apply_masks` zeroes the weights once;
:func:`detach_masks` removes the hooks.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import PruneConfigError

__all__ = ["apply_masks", "attach_masks", "detach_masks", "masks_from_zeros", "check_masks"]

_HANDLES = "_tvmprune_mask_handles"


def check_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, nn.Module]:
    mods = dict(model.named_modules())
    out = {}
    for name, mask in masks.items():
        mod = mods.get(name)
        if mod is None or getattr(mod, "weight", None) is None:
            raise PruneConfigError(f"mask for {name!r}: the model has no module with a weight of that name")
        if tuple(mask.shape) != tuple(mod.weight.shape):
            raise PruneConfigError(
                f"mask for layer {name!r} has shape {tuple(mask.shape)}, weight has {tuple(mod.weight.shape)}"
            )
        out[name] = mod
    return out


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    for name, mod in check_masks(model, masks).items():
        mod.weight.mul_(masks[name].to(mod.weight.device, mod.weight.dtype))
    return model


def attach_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Keep ``masks`` applied through training (forward pre-hooks + gradient masking)."""
    detach_masks(model)
    handles = []
    for name, mod in check_masks(model, masks).items():
        keep = masks[name].to(mod.weight.device).bool()

        def pre_hook(m, inputs, keep=keep):
            with torch.no_grad():
                m.weight.mul_(keep.to(m.weight.dtype))

        handles.append(mod.register_forward_pre_hook(pre_hook))
        handles.append(mod.weight.register_hook(lambda g, keep=keep: g * keep.to(g.dtype)))
    setattr(model, _HANDLES, handles)
    apply_masks(model, masks)
    return model


def detach_masks(model: nn.Module) -> nn.Module:
    for h in getattr(model, _HANDLES, []):
        h.remove()
    if hasattr(model, _HANDLES):
        delattr(model, _HANDLES)
    return model


def masks_from_zeros(model: nn.Module, names) -> dict[str, torch.Tensor]:
    """Keep-masks from the nonzero pattern of the named modules' weights."""
    mods = dict(model.named_modules())
    return {n: mods[n].weight.detach() != 0 for n in names}
