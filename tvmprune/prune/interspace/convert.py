"""Swap a model's KxK convs for :class:`InterspaceConv2d` and back.

* :func:`interspace_targets` -- which convs get a filter basis: ``nn.Conv2d`` with a kernel
  larger than 1x1, groups 1, zero padding, that does not consume the model input (the
  first layer stays dense, as in unstructured pruning).
* :func:`to_interspace` -- in place, each named conv becomes an ``InterspaceConv2d`` with
  the spatial basis (same function).
* :func:`reconstruct_dense` -- a copy where every ``InterspaceConv2d`` is a plain
  ``nn.Conv2d`` with the filters ``w = c * B`` (what the compiler imports by default).
* :func:`rebuild_interspace_layers` -- the architecture a saved interspace model needs
  before ``load_state_dict`` (names from ``pruning.json``).
"""

from __future__ import annotations

import copy

from torch import nn

from ...errors import PruneConfigError
from ..graph import DependencyGraph, is_depthwise
from .module import InterspaceConv2d

__all__ = ["interspace_targets", "to_interspace", "reconstruct_dense", "interspace_layers",
           "rebuild_interspace_layers", "has_interspace_layers"]


def interspace_targets(model: nn.Module, graph: DependencyGraph) -> dict[str, str | None]:
    """``{conv / linear layer name: None if it gets a filter basis, else why not}`` in graph order."""
    mods = dict(model.named_modules())
    out: dict[str, str | None] = {}
    for name in graph.layers:
        m = mods[name]
        if not isinstance(m, nn.Conv2d):
            out[name] = "not a conv"
        elif m.kernel_size[0] * m.kernel_size[1] == 1:
            out[name] = "1x1 conv"
        elif name in graph.input_consumers:
            out[name] = "first layer (consumes the model input)"
        elif is_depthwise(m) or m.groups != 1:
            out[name] = "grouped / depthwise conv"
        elif m.padding_mode != "zeros" or isinstance(m.padding, str):
            out[name] = f"padding {m.padding!r} / {m.padding_mode}"
        else:
            out[name] = None
    return out


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def to_interspace(model: nn.Module, names: list[str]) -> nn.Module:
    """Replace the named ``nn.Conv2d`` modules of ``model`` (in place) by their interspace form."""
    mods = dict(model.named_modules())
    for name in names:
        _replace(model, name, InterspaceConv2d.from_conv(mods[name]))
    return model


def interspace_layers(model: nn.Module) -> dict[str, InterspaceConv2d]:
    """``{name: module}`` of the model's ``InterspaceConv2d`` layers, in module order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, InterspaceConv2d)}


def has_interspace_layers(model: nn.Module) -> bool:
    return any(isinstance(m, InterspaceConv2d) for m in model.modules())


def reconstruct_dense(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``InterspaceConv2d`` replaced by an ``nn.Conv2d`` of its filters.

    The result has the original architecture (and state_dict keys) and is in the input's mode.
    """
    out = copy.deepcopy(model)
    for name, m in interspace_layers(out).items():
        _replace(out, name, m.to_conv2d())
    return out


def rebuild_interspace_layers(model: nn.Module, config: dict) -> nn.Module:
    """Convert the convs listed in ``config["interspace"]`` (a pruning config) in place.

    Raises:
        PruneConfigError: a listed layer is missing or its shape differs from the saved one.
    """
    layers = config.get("interspace") or {}
    mods = dict(model.named_modules())
    for name, ent in layers.items():
        m = mods.get(name)
        want = [int(d) for d in ent.get("shape", [])]
        if not isinstance(m, nn.Conv2d) or [m.out_channels, m.in_channels // m.groups,
                                            m.kernel_size[0] * m.kernel_size[1]] != want:
            raise PruneConfigError(f"interspace layer {name!r} (coefficients {want}) does not match the rebuilt model")
    return to_interspace(model, list(layers))
