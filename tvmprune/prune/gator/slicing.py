"""Slicing a gated model into a physically smaller dense model, and removing dead edges.

Partially closed edges are sliced exactly like ``filter@`` does
(:meth:`DependencyGraph.apply_channel_index`: producer rows, BN, depthwise convs, consumer
columns).  A fully closed, removable edge (see :mod:`.hyper_edges`) is *removed*: every
consumer conv then reads zeros, so its output is its bias (or 0) at every pixel; that
per-channel constant is pushed through the BatchNorms and activations after it, and where
it meets a live tensor (a residual add) it is stored as a ``[1, C, 1, 1]`` buffer.  The
producers, BNs and consumers of the edge disappear from the ``torch.fx`` graph: a
residual block whose inner edge is closed becomes ``relu(shortcut + constant)``.
"""

from __future__ import annotations

import copy
import operator
from typing import TYPE_CHECKING

import torch
from torch import fx, nn

from ...errors import PruneConfigError
from ..graph import DependencyGraph, _PASS_FUNCS, _PASS_METHODS

if TYPE_CHECKING:
    from .gates import ChannelGates

__all__ = ["removal_check", "slice_by_gates", "gate_keep_indices", "DEAD_CONSTANT_PREFIX"]

DEAD_CONSTANT_PREFIX = "gator_constant_"
_CONST_MODULES = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.SiLU, nn.GELU,
                  nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU, nn.Identity, nn.Dropout, nn.Dropout2d)
_MEET_FUNCS = {operator.add, operator.iadd, operator.mul, operator.imul, operator.sub, operator.isub,
               torch.add, torch.mul, torch.sub}
_MEET_METHODS = {"add", "add_", "mul", "mul_", "sub", "sub_"}


class _NotRemovable(Exception):
    pass


def _dead_consumers(model: nn.Module, graph: DependencyGraph, gid: int) -> list[str]:
    """Consumer convs of group ``gid``; raises :class:`_NotRemovable` unless each reads only this group."""
    mods = dict(model.named_modules())
    g = graph.groups[gid]
    names = []
    for m in g.members:
        if m.role != "in":
            continue
        mod = mods[m.module]
        if not isinstance(mod, nn.Conv2d) or mod.groups != 1:
            raise _NotRemovable(f"consumer {m.module} is not a plain conv")
        if len([1 for gg, mm in graph.entries(m.module) if mm.role == "in"]) != 1 or mod.in_channels != g.size:
            raise _NotRemovable(f"consumer {m.module} also reads other channels")
        names.append(m.module)
    if not names:
        raise _NotRemovable("no consumer")
    return names


def _is_const_op(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), _CONST_MODULES)
    if node.op == "call_function":
        return node.target in _PASS_FUNCS
    if node.op == "call_method":
        return node.target in _PASS_METHODS
    return False


def _is_meet_op(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target in _MEET_FUNCS) or \
        (node.op == "call_method" and node.target in _MEET_METHODS)


def _fold_constants(gm: fx.GraphModule, dead: set[str]) -> dict[fx.Node, torch.Tensor]:
    """Per-channel constants ``[1, C, 1, 1]`` of the nodes fed only by dead consumers.

    Raises :class:`_NotRemovable` when such a constant reaches anything but an add / multiply
    with a live tensor.
    """
    const: dict[fx.Node, torch.Tensor] = {}
    for node in gm.graph.nodes:
        ins = [a for a in node.all_input_nodes]
        if node.op == "call_module" and node.target in dead:
            conv = gm.get_submodule(node.target)
            b = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
            const[node] = b.reshape(1, -1, 1, 1).clone()
            continue
        cin = [a for a in ins if a in const]
        if not cin:
            continue
        if len(cin) == len(ins) and _is_const_op(gm, node):
            args = tuple(const.get(a, a) if isinstance(a, fx.Node) else a for a in node.args)
            with torch.no_grad():
                if node.op == "call_module":
                    mod = gm.get_submodule(node.target)
                    was = mod.training
                    mod.eval()
                    const[node] = mod(*args)
                    mod.train(was)
                elif node.op == "call_function":
                    const[node] = node.target(*args, **node.kwargs)
                else:
                    const[node] = getattr(args[0], node.target)(*args[1:], **node.kwargs)
            continue
        if _is_meet_op(node) and len(cin) < len(ins):
            continue
        raise _NotRemovable(f"the constant left by the removed convs reaches {node.op} {node.target}")
    return const


def removal_check(model: nn.Module, graph: DependencyGraph, gid: int) -> str | None:
    """None when group ``gid`` can close entirely (see module docstring), else why not."""
    try:
        dead = set(_dead_consumers(model, graph, gid))
        _fold_constants(fx.symbolic_trace(model), dead)
    except _NotRemovable as e:
        return str(e)
    return None


def _remove_dead(model: nn.Module, dead: set[str]) -> fx.GraphModule:
    gm = fx.symbolic_trace(model)
    const = _fold_constants(gm, dead)
    n_buf = 0
    for node in list(gm.graph.nodes):
        if node in const or not any(a in const for a in node.all_input_nodes):
            continue
        for a in [a for a in node.all_input_nodes if a in const]:
            name = f"{DEAD_CONSTANT_PREFIX}{n_buf}"
            n_buf += 1
            gm.register_buffer(name, const[a].detach().clone())
            with gm.graph.inserting_before(node):
                attr = gm.graph.get_attr(name)
            node.replace_input_with(a, attr)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def slice_by_gates(model: nn.Module, graph: DependencyGraph, keep: dict[int, torch.Tensor],
                   dead: set[int]) -> nn.Module:
    """A physically smaller copy of ``model``.

    ``keep`` maps group ids to the sorted channel indices to keep (partially closed edges);
    ``dead`` holds the ids of removable groups whose channels are all closed.  Without
    dead groups the result has ``model``'s class; with them it is a ``torch.fx.GraphModule``.

    Raises:
        PruneConfigError: a dead group that cannot be removed.
    """
    small = copy.deepcopy(model)
    graph.apply_channel_index(small, {g: k for g, k in keep.items() if g not in dead})
    if not dead:
        return small
    consumers: set[str] = set()
    for gid in dead:
        try:
            consumers |= set(_dead_consumers(model, graph, gid))
        except _NotRemovable as e:
            raise PruneConfigError(f"channel group {graph.groups[gid].name} cannot be removed: {e}") from None
    try:
        return _remove_dead(small, consumers)
    except _NotRemovable as e:
        raise PruneConfigError(f"closed channel groups cannot be removed: {e}") from None


def gate_keep_indices(gates: ChannelGates) -> tuple[dict[int, torch.Tensor], set[int]]:
    """(kept channel indices per partially closed group id, ids of fully closed groups)."""
    keep: dict[int, torch.Tensor] = {}
    dead: set[int] = set()
    for i, e in enumerate(gates.edges):
        mask = gates.open_mask(i)
        if bool(mask.all()):
            continue
        if not bool(mask.any()):
            dead.add(e.gid)
        keep[e.gid] = torch.nonzero(mask).reshape(-1)
    return keep, dead
