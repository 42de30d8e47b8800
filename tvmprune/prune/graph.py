"""Channel dependency graph of a CNN, built from a ``torch.fx`` trace.

Every tensor's channel axis (dim 1 of NCHW, the last axis of a channels-last tensor) is
described as a concatenation of *channel spaces*.  A space is created by a producer (the
output channels of a Conv2d / Linear) or by something tvmprune does not understand (the
model input, an unknown op).  Following the traced graph (:mod:`.channel_trace`):

* element-wise ops, activations, pooling, dropout and BatchNorm pass the description
  through (a BatchNorm is recorded as a member of the spaces it normalises);
* ``permute`` / ``transpose`` move the channel axis; a LayerNorm over exactly the channel
  axis (``nn.LayerNorm`` channels-last, torchvision's ``LayerNorm2d``) is a member; a
  ``Linear`` on a channels-last tensor consumes and produces channels like a 1x1 conv;
* a parameter used directly in the forward and indexed by the channels (ConvNeXt's
  ``layer_scale``, ``LayerNorm2d``'s weight and bias) is a ``param`` member;
* a depthwise conv (``groups == in_channels == out_channels > 1``) passes channels
  through too, and is recorded as a member (its weight rows / bias follow the channels);
* a grouped conv consumes and produces channels; both groups get ``strata = groups``:
  each of the conv's groups must lose the same number of channels (``groups`` is kept);
* a binary op of two tensors (``+``, ``*``, ...) *couples* the spaces of both operands:
  they are unified into one channel group (residual adds, squeeze-excitation scales);
* ``torch.cat`` on the channel axis concatenates the descriptions (consumers see offsets);
  ``chunk`` / ``split`` on it hand each piece the segments it covers (a cut inside a space
  freezes that space: the pieces start fresh frozen spaces);
* ``flatten`` / ``view`` / ``reshape`` from ``[N, C, H, W]`` to ``[N, C*H*W]`` maps channel
  ``c`` to features ``c*H*W .. c*H*W + H*W - 1`` (multiplicity ``H*W``; 1 after a global pool);
  a reshape that splits the channel axis (ShuffleNet's channel shuffle) freezes its spaces here;
  :mod:`.shuffle_region` follows them (``DependencyGraph.regions``);
* conv / linear layers consume their input description (their weight *columns* follow).

A *channel group* is a set of unified spaces.  A group is *frozen* (never permuted or
pruned) when it reaches the model output, comes from the model input, passes through an
op tvmprune does not understand, or is broadcast / mismatched in a binary op.  Nothing is
specific to an architecture.  Removing channels normalised by a LayerNorm changes the
statistics of the remaining ones: there the smaller model is not the masked one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import InvalidInputShapeError, TraceError
from .channel_index import is_depthwise, reindex_module, reindex_tensor

__all__ = ["Member", "ChannelGroup", "DependencyGraph", "build_graph", "is_depthwise", "default_example_input"]


@dataclass
class Member:
    """A module whose parameters are indexed by the channels of a group.

    role: ``out`` (producer: weight dim 0 and bias), ``bn`` (BatchNorm params and stats),
    ``dw`` (depthwise conv in a pass-through chain: weight dim 0 and bias),
    ``ln`` (LayerNorm over the channels: weight and bias), ``in`` (consumer: weight dim 1),
    ``param`` (a parameter or buffer used directly in the forward, e.g. ConvNeXt's layer
    scale: ``module`` is its qualified name, ``dim`` the dimension the channels index).
    ``offset`` is the position of the group's first
    channel in that dimension, in features (already multiplied by ``mult``);
    ``mult`` is how many consecutive features one channel covers (``H*W`` after flatten).
    """

    module: str
    role: str
    offset: int = 0
    mult: int = 1
    dim: int = 0

    def to_dict(self) -> dict:
        d = {"module": self.module, "role": self.role, "offset": self.offset, "mult": self.mult}
        if self.role == "param":
            d["dim"] = self.dim
        return d


@dataclass
class ChannelGroup:
    """Unified channel spaces: ``size`` channels that are pruned / permuted together.

    ``strata``: the channels form that many equal consecutive blocks (the groups of a
    grouped conv) which must each lose the same number of channels, and may only be
    permuted within a block.
    """

    gid: int
    size: int
    members: list[Member] = field(default_factory=list)
    frozen: bool = False
    reason: str | None = None
    strata: int = 1

    @property
    def producers(self) -> list[str]:
        return [m.module for m in self.members if m.role == "out"]

    @property
    def coupled(self) -> bool:
        return len(self.producers) > 1

    @property
    def name(self) -> str:
        p = self.producers
        return p[0] if p else f"group{self.gid}"

    @property
    def prunable(self) -> bool:
        """Can be permuted / filter-pruned: not frozen and has at least one producer."""
        return not self.frozen and bool(self.producers)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "size": self.size,
            "producers": self.producers,
            "frozen": self.frozen,
            "reason": self.reason,
            "strata": self.strata,
            "members": [m.to_dict() for m in self.members],
        }


# ops that keep a tensor's channels (also read by gator.slicing); channel_trace splits them further
_PASS_FUNCS = {
    torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.nn.functional.relu, torch.nn.functional.relu6,
    torch.nn.functional.hardtanh, torch.nn.functional.dropout, torch.nn.functional.silu, torch.nn.functional.gelu,
    torch.nn.functional.hardswish, torch.nn.functional.hardsigmoid, torch.nn.functional.leaky_relu,
    torch.nn.functional.adaptive_avg_pool2d, torch.nn.functional.adaptive_max_pool2d,
    torch.nn.functional.max_pool2d, torch.nn.functional.avg_pool2d, torch.nn.functional.sigmoid,
    torch.nn.functional.tanh,
}
_PASS_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "detach", "float", "clamp", "clamp_",
                 "hardtanh", "hardtanh_"}


def default_example_input(model: nn.Module) -> torch.Tensor:
    """``1 x C x 224 x 224`` zeros, C from the first Conv2d (3 when there is none)."""
    c = 3
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            c = m.in_channels
            break
    return torch.zeros(1, c, 224, 224)


class DependencyGraph:
    """Channel groups of a traced model.  Build with :func:`build_graph`."""

    def __init__(self, model: nn.Module, groups: list[ChannelGroup], layers: list[str], input_consumers: set[str],
                 output_groups: set[int]) -> None:
        self.groups = groups
        self.layers = layers  # conv / linear modules in trace order
        self.input_consumers = input_consumers
        self.output_groups = output_groups
        self.modules = dict(model.named_modules())
        self.regions: list = []  # ShuffleRegions (.shuffle_region): groups followed through channel shuffles
        self._by_module: dict[str, list[tuple[ChannelGroup, Member]]] = {}
        for g in groups:
            for m in g.members:
                self._by_module.setdefault(m.module, []).append((g, m))

    # --- queries -------------------------------------------------------------------------
    def entries(self, module: str) -> list[tuple[ChannelGroup, Member]]:
        return self._by_module.get(module, [])

    def out_group(self, module: str) -> ChannelGroup | None:
        """The group of a producer's output channels."""
        for g, m in self.entries(module):
            if m.role == "out":
                return g
        return None

    def group_by_name(self, name: str) -> ChannelGroup | None:
        for g in self.groups:
            if g.name == name:
                return g
        return None

    def coupled_groups(self) -> list[ChannelGroup]:
        """Groups with more than one producer (residual adds, ...)."""
        return [g for g in self.groups if g.coupled]

    def prunable_groups(self) -> list[ChannelGroup]:
        return [g for g in self.groups if g.prunable]

    def region_of(self, gid: int):
        """The :class:`~.shuffle_region.ShuffleRegion` whose producer owns group ``gid``, or None."""
        for r in self.regions:
            if gid in r.producers.values():
                return r
        return None

    def reindexable(self, gid: int) -> bool:
        """Prunable, or a producer group of a channel-shuffle region."""
        return self.groups[gid].prunable or self.region_of(gid) is not None

    def is_depthwise(self, module: str) -> bool:
        return is_depthwise(self.modules[module])

    def summary(self) -> str:
        lines = []
        for g in self.groups:
            if not g.producers:
                continue
            state = f"frozen ({g.reason})" if g.frozen else "prunable"
            lines.append(f"{g.name}: {g.size} ch, {state}, producers={g.producers}")
        return "\n".join(lines)

    # --- rewriting -----------------------------------------------------------------------
    def apply_channel_index(self, model: nn.Module, index: dict[int, torch.Tensor]) -> nn.Module:
        """Re-index (permute or select a subset of) the channels of groups, in place.

        ``index`` maps a group id to a 1-D LongTensor of channel indices into that group
        (a permutation, or a sorted subset to keep).  Producers' weight rows and biases,
        BatchNorms, LayerNorms, depthwise convs, consumers' weight columns and ``param``
        members (along their ``dim``) are re-indexed; modules
        whose sizes change are resized (``in_channels`` etc. updated) by the per-module-type
        re-indexers of :mod:`.channel_index`.  A producer group of a channel-shuffle region
        (:mod:`.shuffle_region`) takes its kept rows in the order the region's ``select`` gave;
        the region re-indexes its readers.  Returns ``model``.
        """
        mods = dict(model.named_modules())
        touched: set[str] = set()
        params: dict[tuple[str, int], list] = {}
        regional = {gid: idx for gid, idx in index.items() if self.region_of(gid) is not None}
        index = {gid: idx for gid, idx in index.items() if gid not in regional}
        for gid in index:
            g = self.groups[gid]
            for m in g.members:
                if m.role == "param":
                    params.setdefault((m.module, m.dim), []).append((m.offset, m.mult, g.size, index[gid]))
                else:
                    touched.add(m.module)
        for (qualname, dim), entries in sorted(params.items()):
            reindex_tensor(model, qualname, dim, entries)
        for name in sorted(touched):
            mod = mods[name]
            out_entries, in_entries = [], []
            for g, m in self.entries(name):
                if g.gid not in index:
                    continue
                (in_entries if m.role == "in" else out_entries).append((m.offset, m.mult, g.size, index[g.gid]))
            reindex_module(name, mod, out_entries, in_entries)
        for region in self.regions:
            rows = {p: regional[gid] for p, gid in region.producers.items() if gid in regional}
            if rows:
                region.apply(model, rows)
        return model


# ----------------------------------------------------------------------------------------
def build_graph(model: nn.Module, example_input: torch.Tensor | None = None) -> DependencyGraph:
    """Trace ``model`` with ``torch.fx`` and build its channel dependency graph.

    The model is traced in eval mode and, when its forward differs there, in train mode too
    (GoogLeNet's and Inception's auxiliary heads run only in training): the groups hold the
    constraints of both forwards, so a pruned model runs (and fine-tunes) in either mode.

    Raises:
        TraceError: the model cannot be traced symbolically (data-dependent control flow...).
        InvalidInputShapeError: ``example_input`` does not fit the model.
    """
    if example_input is None:
        example_input = default_example_input(model)
    was_training = model.training
    try:
        gms = [_propagated(_traced(model, training=False), model, example_input)]
        try:
            train_gm = _traced(model, training=True)
            if train_gm.code != gms[0].code:  # eval is what is compiled; train mode is a bonus
                gms.append(_propagated(train_gm, model, example_input))
        except (TraceError, InvalidInputShapeError):
            pass
    finally:
        model.train(was_training)
    from .channel_trace import trace_channels
    from .shuffle_region import find_regions

    graph = trace_channels(model, gms)
    graph.regions = find_regions(graph, gms[0])
    return graph


def _traced(model: nn.Module, training: bool):
    """``symbolic_trace`` of ``model`` in train / eval mode (it shares ``model``'s submodules)."""
    from torch.fx import symbolic_trace

    model.train(training)
    try:
        return symbolic_trace(model)
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        raise TraceError(
            f"cannot trace model {type(model).__name__} with torch.fx.symbolic_trace: {type(e).__name__}: {msg}. "
            "Pruning needs a traceable forward (no data-dependent Python control flow on tensor values)."
        ) from None


def _propagated(gm, model: nn.Module, example_input: torch.Tensor):
    """``gm`` with shapes propagated, every module in eval mode (BatchNorm statistics are not updated).
    Leaves ``model`` in eval mode."""
    from torch.fx.passes.shape_prop import ShapeProp

    gm.eval()
    model.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(example_input)
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        raise InvalidInputShapeError(
            f"example input of shape {'x'.join(map(str, example_input.shape))} does not fit model "
            f"{type(model).__name__}: {type(e).__name__}: {msg}"
        ) from None
    return gm
