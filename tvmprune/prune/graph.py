"""Channel dependency graph of a CNN, built from a ``torch.fx`` trace.

Every tensor's channel dimension (dim 1) is described as a concatenation of *channel
spaces*.  A space is created by a producer (the output channels of a Conv2d / Linear) or
by something tvmprune does not understand (the model input, an unknown op).  Following
the traced graph:

* element-wise ops, activations, pooling, dropout and BatchNorm pass the description
  through (a BatchNorm is recorded as a member of the spaces it normalises);
* a depthwise conv (``groups == in_channels == out_channels > 1``) passes channels
  through too, and is recorded as a member (its weight rows / bias follow the channels);
  a conv with one channel or with a channel multiplier is a normal / grouped conv;
* a binary op of two tensors (``+``, ``*``, ...) *couples* the spaces of both operands:
  they are unified into one channel group (residual adds, squeeze-excitation scales);
* ``torch.cat(..., dim=1)`` concatenates the descriptions (consumers see offsets);
* ``flatten`` / ``view`` / ``reshape`` from ``[N, C, H, W]`` to ``[N, C*H*W]`` maps channel
  ``c`` to features ``c*H*W .. c*H*W + H*W - 1`` (multiplicity ``H*W``; 1 after a global pool);
* conv / linear layers consume their input description (their weight *columns* follow).

A *channel group* is a set of unified spaces.  A group is *frozen* (never permuted or
pruned) when it reaches the model output, comes from the model input, passes through an
op tvmprune does not understand, through a grouped (non-depthwise) conv, or is
broadcast / mismatched in a binary op.  Nothing is specific to an architecture.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import InvalidInputShapeError, TraceError
from .channel_index import is_depthwise, reindex_module

__all__ = ["Member", "ChannelGroup", "DependencyGraph", "build_graph", "is_depthwise", "default_example_input"]


@dataclass
class Member:
    """A module whose parameters are indexed by the channels of a group.

    role: ``out`` (producer: weight dim 0 and bias), ``bn`` (BatchNorm params and stats),
    ``dw`` (depthwise conv in a pass-through chain: weight dim 0 and bias),
    ``in`` (consumer: weight dim 1).  ``offset`` is the position of the group's first
    channel in that dimension, in features (already multiplied by ``mult``);
    ``mult`` is how many consecutive features one channel covers (``H*W`` after flatten).
    """

    module: str
    role: str
    offset: int = 0
    mult: int = 1

    def to_dict(self) -> dict:
        return {"module": self.module, "role": self.role, "offset": self.offset, "mult": self.mult}


@dataclass
class ChannelGroup:
    gid: int
    size: int
    members: list[Member] = field(default_factory=list)
    frozen: bool = False
    reason: str | None = None

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
            "members": [m.to_dict() for m in self.members],
        }


class _UF:
    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.frozen: dict[int, str] = {}

    def new(self, size: int, frozen: str | None = None) -> int:
        i = len(self.parent)
        self.parent.append(i)
        self.size.append(int(size))
        if frozen:
            self.frozen[i] = frozen
        return i

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def freeze(self, i: int, reason: str) -> None:
        r = self.find(i)
        self.frozen.setdefault(r, reason)

    def union(self, a: int, b: int, reason: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] != self.size[rb]:
            self.freeze(ra, reason)
            self.freeze(rb, reason)
            return
        lo, hi = min(ra, rb), max(ra, rb)
        self.parent[hi] = lo
        if hi in self.frozen:
            self.frozen.setdefault(lo, self.frozen.pop(hi))


@dataclass
class _Desc:
    """Channel description of a tensor: segments (space id, channels) and multiplicity."""

    segs: list[tuple[int, int]]
    mult: int = 1
    ndim: int = 4

    @property
    def channels(self) -> int:
        return sum(n for _, n in self.segs)


_PASS_MODULES = (
    nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid,
    nn.LeakyReLU, nn.ELU, nn.PReLU, nn.Mish, nn.Dropout, nn.Dropout2d, nn.Dropout1d, nn.AlphaDropout, nn.Identity,
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.ZeroPad2d, nn.ConstantPad2d,
)
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
_BINARY_FUNCS = {operator.add, operator.iadd, operator.mul, operator.imul, operator.sub, operator.isub,
                 operator.truediv, torch.add, torch.mul, torch.sub}
_BINARY_METHODS = {"add", "add_", "mul", "mul_", "sub", "sub_", "div", "div_"}
_RESHAPE_FUNCS = {torch.flatten, torch.reshape}
_RESHAPE_METHODS = {"flatten", "view", "reshape"}
_SHAPE_ONLY_METHODS = {"size", "dim"}


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
        BatchNorms, depthwise convs and consumers' weight columns are re-indexed; modules
        whose sizes change are resized (``in_channels`` etc. updated) by the per-module-type
        re-indexers of :mod:`.channel_index`.  Returns ``model``.
        """
        mods = dict(model.named_modules())
        touched: set[str] = set()
        for gid in index:
            for m in self.groups[gid].members:
                touched.add(m.module)
        for name in sorted(touched):
            mod = mods[name]
            out_entries, in_entries = [], []
            for g, m in self.entries(name):
                if g.gid not in index:
                    continue
                (in_entries if m.role == "in" else out_entries).append((m.offset, m.mult, g.size, index[g.gid]))
            reindex_module(name, mod, out_entries, in_entries)
        return model


# ----------------------------------------------------------------------------------------
def build_graph(model: nn.Module, example_input: torch.Tensor | None = None) -> DependencyGraph:
    """Trace ``model`` with ``torch.fx`` and build its channel dependency graph.

    Raises:
        TraceError: the model cannot be traced symbolically (data-dependent control flow...).
        InvalidInputShapeError: ``example_input`` does not fit the model.
    """
    from torch.fx import symbolic_trace
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        gm = symbolic_trace(model)
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        raise TraceError(
            f"cannot trace model {type(model).__name__} with torch.fx.symbolic_trace: {type(e).__name__}: {msg}. "
            "Pruning needs a traceable forward (no data-dependent Python control flow on tensor values)."
        ) from None
    if example_input is None:
        example_input = default_example_input(model)
    was_training = model.training
    gm.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(example_input)
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        raise InvalidInputShapeError(
            f"example input of shape {'x'.join(map(str, example_input.shape))} does not fit model "
            f"{type(model).__name__}: {type(e).__name__}: {msg}"
        ) from None
    finally:
        model.train(was_training)
    return _Builder(model, gm).run()


class _Builder:
    def __init__(self, model: nn.Module, gm) -> None:
        self.model = model
        self.gm = gm
        self.mods = dict(gm.named_modules())
        self.uf = _UF()
        self.desc: dict = {}
        # (space, module, role, offset-in-channels, mult) records
        self.records: list[tuple[int, str, str, int, int]] = []
        self.layers: list[str] = []
        self.input_spaces: set[int] = set()
        self.input_consumers: set[str] = set()
        self.module_out: dict[str, _Desc] = {}
        self.module_in: dict[str, _Desc] = {}

    # helpers
    @staticmethod
    def _shape(node) -> tuple[int, ...] | None:
        tm = node.meta.get("tensor_meta") if hasattr(node, "meta") else None
        if tm is None or not hasattr(tm, "shape"):
            return None
        return tuple(tm.shape)

    def _fresh(self, node, reason: str | None) -> _Desc | None:
        shp = self._shape(node)
        if shp is None or len(shp) < 2:
            return None
        return _Desc([(self.uf.new(shp[1], reason), shp[1])], 1, len(shp))

    def _freeze_desc(self, d: _Desc | None, reason: str) -> None:
        if d is None:
            return
        for s, _ in d.segs:
            self.uf.freeze(s, reason)

    def _tensor_args(self, node) -> list:
        import torch.fx as fx

        out = []

        def visit(a):
            if isinstance(a, fx.Node):
                if a in self.desc and self.desc[a] is not None:
                    out.append(a)
            elif isinstance(a, (list, tuple)):
                for x in a:
                    visit(x)
            elif isinstance(a, dict):
                for x in a.values():
                    visit(x)

        visit(node.args)
        visit(node.kwargs)
        return out

    def _couple(self, a: _Desc, b: _Desc, reason: str) -> bool:
        if [n for _, n in a.segs] != [n for _, n in b.segs] or a.mult != b.mult:
            self._freeze_desc(a, reason)
            self._freeze_desc(b, reason)
            return False
        for (sa, _), (sb, _) in zip(a.segs, b.segs):
            self.uf.union(sa, sb, reason)
        return True

    def _record(self, d: _Desc, module: str, role: str) -> None:
        off = 0
        for s, n in d.segs:
            self.records.append((s, module, role, off * d.mult, d.mult))
            off += n

    def _unknown(self, node, what: str) -> _Desc | None:
        ins = self._tensor_args(node)
        reason = f"passes through unsupported op {what}"
        for a in ins:
            self._freeze_desc(self.desc[a], reason)
        return self._fresh(node, reason) if ins else None

    # main loop
    def run(self) -> DependencyGraph:
        out_descs: list[_Desc] = []
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                d = self._fresh(node, "model input")
                if d is not None:
                    self.input_spaces.update(s for s, _ in d.segs)
                self.desc[node] = d
            elif node.op == "get_attr":
                self.desc[node] = self._fresh(node, f"constant tensor {node.target}")
            elif node.op == "output":
                for a in self._tensor_args(node):
                    self._freeze_desc(self.desc[a], "model output")
                    out_descs.append(self.desc[a])
            elif node.op == "call_module":
                self.desc[node] = self._module(node)
            elif node.op == "call_function":
                self.desc[node] = self._function(node)
            elif node.op == "call_method":
                self.desc[node] = self._method(node)
            else:
                self.desc[node] = self._unknown(node, node.op)
        return self._finish(out_descs)

    def _arg0(self, node) -> _Desc | None:
        a = node.args[0] if node.args else None
        return self.desc.get(a) if a is not None and not isinstance(a, (int, float)) else None

    def _module(self, node) -> _Desc | None:
        name = node.target
        mod = self.mods[name]
        x = self._arg0(node)
        shp = self._shape(node)
        if isinstance(mod, nn.Conv2d):
            if name not in self.layers:
                self.layers.append(name)
            if x is None:
                return self._unknown(node, f"conv {name} on untracked input")
            if any(s in self.input_spaces for s, _ in x.segs):
                self.input_consumers.add(name)
            if is_depthwise(mod):
                self._record(x, name, "dw")
                return _Desc(list(x.segs), 1, 4)
            if mod.groups != 1:
                reason = f"grouped conv {name}"
                self._freeze_desc(x, reason)
                d = self._fresh(node, reason)
            else:
                self._consume(name, x)
                d = self._produce(name, node)
            return d
        if isinstance(mod, nn.Linear):
            if name not in self.layers:
                self.layers.append(name)
            if x is None or x.ndim != 2:
                if x is not None:
                    self._freeze_desc(x, f"linear {name} on a {x.ndim}-D tensor")
                return self._fresh(node, f"linear {name} on a non-2-D tensor")
            if any(s in self.input_spaces for s, _ in x.segs):
                self.input_consumers.add(name)
            self._consume(name, x)
            return self._produce(name, node)
        if isinstance(mod, nn.BatchNorm2d):
            if x is None:
                return self._unknown(node, f"batchnorm {name}")
            self._record(x, name, "bn")
            return x
        if isinstance(mod, _PASS_MODULES):
            if x is None:
                return self._unknown(node, type(mod).__name__)
            xs = self._shape(node.args[0])
            if shp is None or xs is None or shp[:2] != xs[:2]:
                return self._unknown(node, f"{type(mod).__name__} ({name}) changing the channel count")
            return x
        if isinstance(mod, nn.Flatten):
            return self._reshape(node, x)
        return self._unknown(node, f"{type(mod).__name__} ({name})")

    def _consume(self, name: str, x: _Desc) -> None:
        prev = self.module_in.get(name)
        if prev is not None:  # a module called more than once: inputs must share channel order
            self._couple(prev, x, f"module {name} called on several inputs")
            return
        self.module_in[name] = x
        self._record(x, name, "in")

    def _produce(self, name: str, node) -> _Desc | None:
        prev = self.module_out.get(name)
        shp = self._shape(node)
        if prev is not None:
            d = _Desc(list(prev.segs), 1, len(shp) if shp else prev.ndim)
            return d
        d = self._fresh(node, None)
        if d is None:
            return None
        self.module_out[name] = d
        self._record(d, name, "out")
        return d

    def _reshape(self, node, x: _Desc | None) -> _Desc | None:
        if x is None:
            return self._unknown(node, "reshape")
        xs = self._shape(node.args[0])
        shp = self._shape(node)
        if xs is None or shp is None:
            return self._unknown(node, "reshape")
        if xs == shp:
            return x
        if len(xs) == 4 and len(shp) == 2 and shp[0] == xs[0] and shp[1] == xs[1] * xs[2] * xs[3] and x.mult == 1:
            return _Desc(list(x.segs), xs[2] * xs[3], 2)
        if len(xs) == 4 and len(shp) == 4 and shp[:2] == xs[:2]:
            return x
        return self._unknown(node, f"reshape {list(xs)} -> {list(shp)}")

    def _binary(self, node, what: str) -> _Desc | None:
        ins = self._tensor_args(node)
        shp = self._shape(node)
        if len(ins) == 1:
            xs = self._shape(ins[0])
            if shp is not None and xs is not None and shp[:2] == xs[:2]:
                return self.desc[ins[0]]
            return self._unknown(node, what)
        if len(ins) != 2:
            return self._unknown(node, what)
        a, b = (self.desc[i] for i in ins)
        sa, sb = self._shape(ins[0]), self._shape(ins[1])
        if sa is None or sb is None or len(sa) < 2 or len(sb) < 2 or sa[1] != sb[1] or shp is None or shp[1] != sa[1]:
            return self._unknown(node, f"{what} broadcasting over channels")
        self._couple(a, b, f"{what} of tensors with different channel layouts")
        return a

    def _function(self, node) -> _Desc | None:
        fn = node.target
        name = getattr(fn, "__name__", str(fn))
        if fn in _PASS_FUNCS:
            x = self._arg0(node)
            xs, shp = self._shape(node.args[0]), self._shape(node)
            if x is None or xs is None or shp is None or xs[:2] != shp[:2]:
                return self._unknown(node, name)
            return x
        if fn in _BINARY_FUNCS:
            return self._binary(node, name)
        if fn in _RESHAPE_FUNCS:
            return self._reshape(node, self._arg0(node))
        if fn is torch.cat:
            tensors = node.args[0]
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
            ds = [self.desc.get(t) for t in tensors]
            shp = self._shape(node)
            if shp is not None and dim in (1, 1 - len(shp)) and all(d is not None and d.mult == 1 for d in ds):
                return _Desc([s for d in ds for s in d.segs], 1, len(shp))
            return self._unknown(node, "torch.cat (not on the channel dim)")
        if fn is operator.getitem and self._shape(node) is None:
            return None
        if self._shape(node) is None and not self._tensor_args(node):
            return None
        return self._unknown(node, name)

    def _method(self, node) -> _Desc | None:
        m = node.target
        if m in _SHAPE_ONLY_METHODS:
            return None
        if m in _PASS_METHODS:
            x = self._arg0(node)
            xs, shp = self._shape(node.args[0]), self._shape(node)
            if x is None or xs is None or shp is None or xs[:2] != shp[:2]:
                return self._unknown(node, f".{m}()")
            return x
        if m in _BINARY_METHODS:
            return self._binary(node, f".{m}()")
        if m in _RESHAPE_METHODS:
            return self._reshape(node, self._arg0(node))
        if m == "mean":
            x = self._arg0(node)
            xs, shp = self._shape(node.args[0]), self._shape(node)
            if x is not None and xs is not None and shp is not None and len(xs) == 4 and shp[:2] == xs[:2] \
                    and x.mult == 1:
                return _Desc(list(x.segs), 1, len(shp))
        return self._unknown(node, f".{m}()")

    def _finish(self, out_descs) -> DependencyGraph:
        uf = self.uf
        roots: dict[int, ChannelGroup] = {}
        order: list[int] = []
        for s in range(len(uf.parent)):
            r = uf.find(s)
            if r not in roots:
                roots[r] = ChannelGroup(gid=-1, size=uf.size[r])
                order.append(r)
        for r in order:
            if r in uf.frozen:
                roots[r].frozen = True
                roots[r].reason = uf.frozen[r]
        seen = set()
        for s, module, role, off, mult in self.records:
            r = uf.find(s)
            key = (r, module, role, off)
            if key in seen:
                continue
            seen.add(key)
            roots[r].members.append(Member(module, role, off, mult))
        groups = []
        for r in order:
            g = roots[r]
            if not g.members:
                continue
            g.gid = len(groups)
            groups.append(g)
        out_groups = {roots[uf.find(s)].gid for d in out_descs if d is not None for s, _ in d.segs}
        return DependencyGraph(self.model, groups, self.layers, self.input_consumers, out_groups)
