"""Propagating channel descriptions through a shape-propagated ``torch.fx`` graph.

The builder behind :func:`tvmprune.prune.graph.build_graph`.  Every tensor gets a
:class:`_Desc`: the axis holding its channels (``cdim``: 1 for NCHW, the last axis after a
channels-last ``permute``), and that axis as a concatenation of *channel spaces* (one per
producer, unified by union-find when ops couple them), each channel covering ``mult``
consecutive entries (``H*W`` after ``flatten``).  Each op either passes descriptions on,
records which module parameters the channels index (members), or -- when it is not
understood -- freezes the spaces of its inputs and starts a fresh frozen one.

A reshape that splits the channel axis, e.g. ShuffleNet's channel shuffle (``view(N, 2, C/2, H, W)`` /
``transpose`` / ``view``), freezes the spaces it touches here: where a trunk channel lands depends on
the trunk's width.  :mod:`.shuffle_region` then follows those frozen groups exactly, by running the
graph on channel labels at the original and at the pruned widths.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .channel_index import is_depthwise
from .graph import _PASS_FUNCS, _PASS_METHODS, ChannelGroup, DependencyGraph, Member

__all__ = ["trace_channels"]

F_ = torch.nn.functional
_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid,
    nn.LeakyReLU, nn.ELU, nn.Mish, nn.Dropout, nn.Dropout1d, nn.AlphaDropout, nn.Identity,
)
# ops over the spatial axes of an NCHW tensor: channels must be dim 1
_SPATIAL_MODULES = (nn.PReLU, nn.Dropout2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
                    nn.ZeroPad2d, nn.ConstantPad2d)
_SPATIAL_FUNCS = {F_.adaptive_avg_pool2d, F_.adaptive_max_pool2d, F_.max_pool2d, F_.avg_pool2d}
_ELEMENTWISE_FUNCS = _PASS_FUNCS - _SPATIAL_FUNCS
try:  # an fx leaf (torch.fx.wrap): identity in eval, zeroes whole samples in training -- channels kept
    from torchvision.ops import stochastic_depth as _stochastic_depth

    _ELEMENTWISE_FUNCS = _ELEMENTWISE_FUNCS | {_stochastic_depth}
except ImportError:  # pragma: no cover - torchvision is a dependency
    pass
_ELEMENTWISE_METHODS = _PASS_METHODS
_BINARY_FUNCS = {operator.add, operator.iadd, operator.mul, operator.imul, operator.sub, operator.isub,
                 operator.truediv, torch.add, torch.mul, torch.sub}
_BINARY_METHODS = {"add", "add_", "mul", "mul_", "sub", "sub_", "div", "div_"}
_RESHAPE_FUNCS = {torch.flatten, torch.reshape}
_RESHAPE_METHODS = {"flatten", "view", "reshape"}
_SHAPE_ONLY_METHODS = {"size", "dim"}
_SPLIT_FUNCS = {torch.chunk, torch.split}
_SPLIT_METHODS = {"chunk", "split"}


class _UF:
    """Union-find over channel spaces: size, frozen reason and strata per root."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.frozen: dict[int, str] = {}
        self.strata: dict[int, int] = {}

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
        self.frozen.setdefault(self.find(i), reason)

    def add_strata(self, i: int, n: int, reason: str) -> None:
        """The space must lose the same number of channels in each of ``n`` equal consecutive blocks."""
        r = self.find(i)
        s = math.lcm(self.strata.get(r, 1), int(n))
        if self.size[r] % s:
            self.freeze(r, reason)
            return
        self.strata[r] = s

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
        if hi in self.strata:
            self.add_strata(lo, self.strata.pop(hi), reason)


@dataclass
class _Desc:
    """Channel description of a tensor: segments (space id, channels) along axis ``cdim``."""

    segs: list[tuple[int, int]]
    mult: int = 1
    ndim: int = 4
    cdim: int = 1

    @property
    def channels(self) -> int:
        return sum(n for _, n in self.segs)

    def moved(self, ndim: int, cdim: int, mult: int | None = None) -> "_Desc":
        return _Desc(list(self.segs), self.mult if mult is None else mult, ndim, cdim)


@dataclass
class _Pieces:
    """Descriptions of the tensors of a tuple (the result of ``chunk`` / ``split``), by position."""

    parts: list[_Desc | None]


def _norm_dim(d, ndim: int) -> int | None:
    return d + ndim if isinstance(d, int) and d < 0 else d if isinstance(d, int) else None


def _int_list(args) -> list | None:
    """``(0, 2, 3, 1)`` or ``([0, 2, 3, 1],)`` -> a list of ints, None when not all ints."""
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        args = args[0]
    return list(args) if all(isinstance(a, int) for a in args) else None


def trace_channels(model: nn.Module, gms) -> DependencyGraph:
    """Channel groups of ``gms``: ``symbolic_trace``s of ``model`` after ``ShapeProp`` (one GraphModule or a
    list, e.g. the eval- and the train-mode forward).  Every graph adds its constraints to the same groups: a
    module reached in several graphs has one output space, its inputs there are coupled."""
    return _Builder(model, gms if isinstance(gms, (list, tuple)) else [gms]).run()


class _Builder:
    def __init__(self, model: nn.Module, gms: list) -> None:
        self.model = model
        self.gms = gms
        self.mods: dict = {}
        self.uf = _UF()
        self.desc: dict = {}
        # (space, module, role, offset-in-features, mult, dim) records
        self.records: list[tuple[int, str, str, int, int, int]] = []
        self.layers: list[str] = []
        self.input_spaces: set[int] = set()
        self.input_consumers: set[str] = set()
        self.module_out: dict[str, _Desc] = {}
        self.module_in: dict[str, _Desc] = {}
        self.params: dict = {}  # get_attr node -> qualified name of the tensor
        self.param_in: dict[tuple[str, int], _Desc] = {}
        self.param_users: dict = {}  # get_attr node -> users whose channel use was recorded

    # --- helpers -------------------------------------------------------------------------
    @staticmethod
    def _shape(node) -> tuple[int, ...] | None:
        tm = node.meta.get("tensor_meta") if hasattr(node, "meta") else None
        if tm is None or not hasattr(tm, "shape"):
            return None
        return tuple(tm.shape)

    def _fresh(self, node, reason: str | None, cdim: int = 1) -> _Desc | None:
        shp = self._shape(node)
        if shp is None or len(shp) < 2:
            return None
        cdim = cdim % len(shp)
        return _Desc([(self.uf.new(shp[cdim], reason), shp[cdim])], 1, len(shp), cdim)

    def _freeze_desc(self, d, reason: str) -> None:
        for x in (d.parts if isinstance(d, _Pieces) else [d]):
            if x is not None:
                for s, _ in x.segs:
                    self.uf.freeze(s, reason)

    def _tensor_args(self, node) -> list:
        import torch.fx as fx

        out = []

        def visit(a):
            if isinstance(a, fx.Node):
                if self.desc.get(a) is not None:
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

    def _record(self, d: _Desc, module: str, role: str, dim: int = 0) -> None:
        off = 0
        for s, n in d.segs:
            self.records.append((s, module, role, off * d.mult, d.mult, dim))
            off += n

    def _unknown(self, node, what: str) -> _Desc | None:
        ins = self._tensor_args(node)
        reason = f"passes through unsupported op {what}"
        for a in ins:
            self._freeze_desc(self.desc[a], reason)
        return self._fresh(node, reason) if ins else None

    def _arg0(self, node) -> _Desc | None:
        a = node.args[0] if node.args else None
        d = self.desc.get(a) if a is not None and not isinstance(a, (int, float)) else None
        return d if isinstance(d, _Desc) else None

    # --- main loop -----------------------------------------------------------------------
    def run(self) -> DependencyGraph:
        out_descs: list[_Desc] = []
        for gm in self.gms:
            self.mods = dict(gm.named_modules())
            self.desc = {}
            self._run_graph(gm, out_descs)
        self._freeze_params_used_elsewhere()
        return self._finish(out_descs)

    def _run_graph(self, gm, out_descs: list) -> None:
        for node in gm.graph.nodes:
            if node.op == "placeholder":
                d = self._fresh(node, "model input")
                if d is not None:
                    self.input_spaces.update(s for s, _ in d.segs)
                self.desc[node] = d
            elif node.op == "get_attr":
                self.params[node] = node.target
                self.desc[node] = self._fresh(node, f"constant tensor {node.target}")
            elif node.op == "output":
                for a in self._tensor_args(node):
                    d = self.desc[a]
                    self._freeze_desc(d, "model output")
                    out_descs.extend(d.parts if isinstance(d, _Pieces) else [d])
            elif node.op == "call_module":
                self.desc[node] = self._module(node)
            elif node.op == "call_function":
                self.desc[node] = self._function(node)
            elif node.op == "call_method":
                self.desc[node] = self._method(node)
            else:
                self.desc[node] = self._unknown(node, node.op)

    # --- modules -------------------------------------------------------------------------
    def _module(self, node) -> _Desc | None:
        name = node.target
        mod = self.mods[name]
        x = self._arg0(node)
        if isinstance(mod, nn.Conv2d):
            return self._conv(node, name, mod, x)
        if isinstance(mod, nn.Linear):
            return self._linear(node, name, x)
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if x is None or x.cdim != 1:
                return self._unknown(node, f"batchnorm {name} not over dim 1")
            self._record(x, name, "bn")
            return x
        if isinstance(mod, nn.LayerNorm):
            return self._layer_norm(node, x, tuple(mod.normalized_shape),
                                    name if mod.elementwise_affine else None, f"LayerNorm {name}")
        if isinstance(mod, _ELEMENTWISE_MODULES):
            return self._elementwise(node, x, f"{type(mod).__name__} ({name})")
        if isinstance(mod, _SPATIAL_MODULES):
            return self._spatial(node, x, f"{type(mod).__name__} ({name})")
        if isinstance(mod, nn.Flatten):
            return self._reshape(node, x)
        return self._unknown(node, f"{type(mod).__name__} ({name})")

    def _note_layer(self, name: str, x: _Desc | None) -> None:
        if name not in self.layers:
            self.layers.append(name)
        if x is not None and any(s in self.input_spaces for s, _ in x.segs):
            self.input_consumers.add(name)

    def _conv(self, node, name: str, mod: nn.Conv2d, x: _Desc | None) -> _Desc | None:
        self._note_layer(name, x)
        if x is None or x.cdim != 1 or x.ndim != 4 or x.mult != 1:
            return self._unknown(node, f"conv {name} on untracked or non-NCHW input")
        if is_depthwise(mod):
            self._record(x, name, "dw")
            return x.moved(4, 1)
        if mod.groups == 1:
            self._consume(name, x)
            return self._produce(name, node)
        reason = f"grouped conv {name} whose input mixes channel groups"
        if len(x.segs) != 1 or name in self.module_in:
            self._freeze_desc(x, reason)
            return self._fresh(node, reason)
        # grouped conv: each of its groups must lose as many input (and output) channels as the others
        self.uf.add_strata(x.segs[0][0], mod.groups, f"grouped conv {name} (groups do not divide the channels)")
        self._consume(name, x)
        d = self._produce(name, node)
        if d is not None:
            self.uf.add_strata(d.segs[0][0], mod.groups, f"grouped conv {name} (groups do not divide the channels)")
        return d

    def _linear(self, node, name: str, x: _Desc | None) -> _Desc | None:
        """A Linear acts on the last axis: channels there (2-D after flatten, or channels-last)."""
        self._note_layer(name, x)
        shp = self._shape(node)
        if x is None or x.cdim != x.ndim - 1:
            if x is not None:
                self._freeze_desc(x, f"linear {name} not over the channel axis")
            return self._fresh(node, f"linear {name} not over the channel axis", cdim=-1)
        self._consume(name, x)
        return self._produce(name, node, cdim=len(shp) - 1 if shp else 1)

    def _consume(self, name: str, x: _Desc) -> None:
        prev = self.module_in.get(name)
        if prev is not None:  # a module called more than once: inputs must share channel order
            self._couple(prev, x, f"module {name} called on several inputs")
            return
        self.module_in[name] = x
        self._record(x, name, "in")

    def _produce(self, name: str, node, cdim: int = 1) -> _Desc | None:
        prev = self.module_out.get(name)
        shp = self._shape(node)
        if prev is not None:
            return prev.moved(len(shp) if shp else prev.ndim, prev.cdim, 1)
        d = self._fresh(node, None, cdim)
        if d is None:
            return None
        self.module_out[name] = d
        self._record(d, name, "out")
        return d

    def _layer_norm(self, node, x: _Desc | None, normalized: tuple, member: str | None, what: str,
                    params: tuple = ()) -> _Desc | None:
        """LayerNorm over exactly the channel axis (channels last); its affine params follow the channels."""
        shp = self._shape(node)
        if x is None or shp is None or x.cdim != x.ndim - 1 or x.mult != 1 or normalized != (shp[-1],):
            return self._unknown(node, f"{what} not over the channels alone")
        if any(p is not None and p not in self.params for p in params):
            return self._unknown(node, f"{what} with computed affine parameters")
        if member is not None:
            self._record(x, member, "ln")
        for p in params:
            if p is not None:
                self._record_param(p, node, x, 0)
        return x

    def _record_param(self, pnode, user, x: _Desc, dim: int) -> None:
        target = self.params[pnode]
        self.param_users.setdefault(pnode, set()).add(user)
        prev = self.param_in.get((target, dim))
        if prev is not None:
            self._couple(prev, x, f"parameter {target} used with several channel layouts")
            return
        self.param_in[(target, dim)] = x
        self._record(x, target, "param", dim)

    def _freeze_params_used_elsewhere(self) -> None:
        for pnode, ok in self.param_users.items():
            if set(pnode.users) - ok:
                for (target, _), d in self.param_in.items():
                    if target == self.params[pnode]:
                        self._freeze_desc(d, f"parameter {target} used by an op tvmprune does not follow")

    # --- shape-preserving ops ------------------------------------------------------------
    def _same_shape(self, node, x: _Desc | None) -> bool:
        xs, shp = (self._shape(node.args[0]) if node.args else None), self._shape(node)
        return x is not None and xs is not None and shp is not None and len(xs) == len(shp) \
            and xs[x.cdim] == shp[x.cdim]

    def _elementwise(self, node, x: _Desc | None, what: str) -> _Desc | None:
        if not self._same_shape(node, x):
            return self._unknown(node, f"{what} changing the channel count")
        return x

    def _spatial(self, node, x: _Desc | None, what: str) -> _Desc | None:
        if not self._same_shape(node, x) or x.cdim != 1:
            return self._unknown(node, f"{what} not on an NCHW tensor with its channels kept")
        return x

    # --- layout ops ----------------------------------------------------------------------
    def _reshape(self, node, x: _Desc | None) -> _Desc | None:
        xs = self._shape(node.args[0]) if node.args else None
        shp = self._shape(node)
        if x is None or xs is None or shp is None:
            return self._unknown(node, "reshape")
        c = x.cdim
        if xs == shp:
            return x
        if shp[:c + 1] == xs[:c + 1]:  # only axes after the channels change
            return x.moved(len(shp), c)
        if len(shp) == c + 1 and shp[:c] == xs[:c] and shp[c] == math.prod(xs[c:]):  # flatten into the channels
            return x.moved(len(shp), c, x.mult * math.prod(xs[c + 1:]))
        if c == len(xs) - 1 and shp[-1] == xs[-1]:  # channels last and kept, leading axes reshaped
            return x.moved(len(shp), len(shp) - 1)
        return self._unknown(node, f"reshape {list(xs)} -> {list(shp)}")

    def _permute(self, node, x: _Desc | None, dims: list | None) -> _Desc | None:
        if x is None or dims is None or len(dims) != x.ndim:
            return self._unknown(node, "permute")
        dims = [_norm_dim(d, x.ndim) for d in dims]
        return x.moved(x.ndim, dims.index(x.cdim))

    def _transpose(self, node, x: _Desc | None, d0, d1) -> _Desc | None:
        if x is None or not isinstance(d0, int) or not isinstance(d1, int):
            return self._unknown(node, "transpose")
        d0, d1 = _norm_dim(d0, x.ndim), _norm_dim(d1, x.ndim)
        c = d1 if x.cdim == d0 else d0 if x.cdim == d1 else x.cdim
        return x.moved(x.ndim, c)

    def _cat(self, node) -> _Desc | None:
        tensors = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        shp = self._shape(node)
        if not isinstance(tensors, (list, tuple)) or shp is None:
            return self._unknown(node, "torch.cat")
        ds = [self.desc.get(t) for t in tensors]
        if all(isinstance(d, _Desc) and d.mult == 1 and d.cdim == _norm_dim(dim, len(shp)) for d in ds):
            return _Desc([s for d in ds for s in d.segs], 1, len(shp), ds[0].cdim)
        return self._unknown(node, "torch.cat (not on the channel axis)")

    def _split(self, node, x: _Desc | None, dim) -> _Pieces | None:
        """``chunk`` / ``split``: pieces along the channel axis take the segments they cover."""
        metas = node.meta.get("tensor_meta")
        if x is None or not isinstance(metas, (list, tuple)) or not all(hasattr(m, "shape") for m in metas):
            self._unknown(node, f"{node.target}")
            return None
        shapes = [tuple(m.shape) for m in metas]
        dim = _norm_dim(dim, x.ndim)
        if dim != x.cdim:
            return _Pieces([x.moved(len(s), x.cdim) for s in shapes])
        if x.mult != 1:
            return self._split_unaligned(x, shapes, dim)
        parts, segs = [], list(x.segs)
        for s in shapes:
            want, got = s[dim], []
            while segs and want > 0 and segs[0][1] <= want:
                want -= segs[0][1]
                got.append(segs.pop(0))
            if want:
                return self._split_unaligned(x, shapes, dim)
            parts.append(_Desc(got, 1, x.ndim, dim))
        return _Pieces(parts)

    def _split_unaligned(self, x: _Desc, shapes: list, dim: int) -> _Pieces:
        reason = "split inside a channel group"
        self._freeze_desc(x, reason)
        return _Pieces([_Desc([(self.uf.new(s[dim], reason), s[dim])], 1, len(s), dim) for s in shapes])

    # --- binary ops ----------------------------------------------------------------------
    def _binary(self, node, what: str) -> _Desc | None:
        ins = self._tensor_args(node)
        shp = self._shape(node)
        if len(ins) == 1:
            x = self.desc[ins[0]]
            return x if isinstance(x, _Desc) and self._same_shape_as(ins[0], node, x) else self._unknown(node, what)
        if len(ins) != 2 or not all(isinstance(self.desc[i], _Desc) for i in ins):
            return self._unknown(node, what)
        pa, pb = (i in self.params for i in ins)
        if pa != pb:
            pnode, tnode = (ins[0], ins[1]) if pa else (ins[1], ins[0])
            return self._scale_by_param(node, pnode, tnode, what)
        a, b = (self.desc[i] for i in ins)
        sa, sb = self._shape(ins[0]), self._shape(ins[1])
        if sa is None or sb is None or shp is None or a.cdim != b.cdim or len(sa) != len(sb) \
                or sa[a.cdim] != sb[a.cdim] or shp[a.cdim] != sa[a.cdim]:
            return self._unknown(node, f"{what} broadcasting over channels")
        self._couple(a, b, f"{what} of tensors with different channel layouts")
        return a

    def _same_shape_as(self, src, node, x: _Desc) -> bool:
        xs, shp = self._shape(src), self._shape(node)
        return xs is not None and shp is not None and len(xs) == len(shp) and xs[x.cdim] == shp[x.cdim]

    def _scale_by_param(self, node, pnode, tnode, what: str) -> _Desc | None:
        """``tensor (op) parameter`` (layer scale, ...): the parameter's axis aligned with the channels follows them."""
        x, ts, ps, shp = self.desc[tnode], self._shape(tnode), self._shape(pnode), self._shape(node)
        if ts is None or ps is None or shp != ts or len(ps) > len(ts):
            return self._unknown(node, f"{what} with a parameter broadcasting the tensor")
        pdim = x.cdim - (len(ts) - len(ps))
        if pdim < 0 or ps[pdim] == 1:  # the parameter is the same for every channel
            self.param_users.setdefault(pnode, set()).add(node)
            return x
        if ps[pdim] != ts[x.cdim] or x.mult != 1:
            return self._unknown(node, f"{what} with a parameter not indexed by the channels")
        self._record_param(pnode, node, x, pdim)
        return x

    # --- functions and methods -----------------------------------------------------------
    def _function(self, node) -> _Desc | _Pieces | None:
        fn = node.target
        name = getattr(fn, "__name__", str(fn))
        x = self._arg0(node)
        if fn in _ELEMENTWISE_FUNCS:
            return self._elementwise(node, x, name)
        if fn in _SPATIAL_FUNCS:
            return self._spatial(node, x, name)
        if fn in _BINARY_FUNCS:
            return self._binary(node, name)
        if fn in _RESHAPE_FUNCS:
            return self._reshape(node, x)
        if fn is torch.permute:
            return self._permute(node, x, _int_list(node.args[1:]) if len(node.args) > 1 else None)
        if fn is torch.transpose and len(node.args) == 3:
            return self._transpose(node, x, node.args[1], node.args[2])
        if fn is torch.cat:
            return self._cat(node)
        if fn in _SPLIT_FUNCS:
            return self._split(node, x, node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0))
        if fn is F.layer_norm:
            return self._functional_layer_norm(node, x)
        if fn is operator.getitem:
            return self._getitem(node)
        if self._shape(node) is None and not self._tensor_args(node):
            return None
        return self._unknown(node, name)

    def _functional_layer_norm(self, node, x: _Desc | None) -> _Desc | None:
        args = list(node.args) + [None] * (5 - len(node.args))
        shape = node.kwargs.get("normalized_shape", args[1])
        weight, bias = node.kwargs.get("weight", args[2]), node.kwargs.get("bias", args[3])
        normalized = tuple(shape) if isinstance(shape, (list, tuple)) else (shape,)
        return self._layer_norm(node, x, normalized, None, "F.layer_norm", (weight, bias))

    def _getitem(self, node) -> _Desc | None:
        src = node.args[0]
        d = self.desc.get(src)
        if isinstance(d, _Pieces) and isinstance(node.args[1], int):
            return d.parts[node.args[1]]
        if self._shape(node) is None:
            return None
        return self._unknown(node, "getitem")

    def _method(self, node) -> _Desc | _Pieces | None:
        m = node.target
        x = self._arg0(node)
        if m in _SHAPE_ONLY_METHODS:
            return None
        if m in _ELEMENTWISE_METHODS:
            return self._elementwise(node, x, f".{m}()")
        if m in _BINARY_METHODS:
            return self._binary(node, f".{m}()")
        if m in _RESHAPE_METHODS:
            return self._reshape(node, x)
        if m == "permute":
            return self._permute(node, x, _int_list(node.args[1:]))
        if m == "transpose" and len(node.args) == 3:
            return self._transpose(node, x, node.args[1], node.args[2])
        if m in _SPLIT_METHODS:
            return self._split(node, x, node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0))
        if m == "mean":
            return self._mean(node, x)
        return self._unknown(node, f".{m}()")

    def _mean(self, node, x: _Desc | None) -> _Desc | None:
        """``mean`` over axes after the channels (global pooling) keeps the description."""
        xs, shp = (self._shape(node.args[0]) if node.args else None), self._shape(node)
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        dims = [dims] if isinstance(dims, int) else list(dims) if isinstance(dims, (list, tuple)) else None
        if x is None or xs is None or shp is None or dims is None or not all(isinstance(d, int) for d in dims):
            return self._unknown(node, ".mean()")
        if any(_norm_dim(d, len(xs)) <= x.cdim for d in dims) or shp[:x.cdim + 1] != xs[:x.cdim + 1]:
            return self._unknown(node, ".mean() over the channel axis or before it")
        return x.moved(len(shp), x.cdim)

    # --- result --------------------------------------------------------------------------
    def _finish(self, out_descs) -> DependencyGraph:
        uf = self.uf
        roots: dict[int, ChannelGroup] = {}
        order: list[int] = []
        for s in range(len(uf.parent)):
            r = uf.find(s)
            if r not in roots:
                roots[r] = ChannelGroup(gid=-1, size=uf.size[r], strata=uf.strata.get(r, 1))
                order.append(r)
        for r in order:
            if r in uf.frozen:
                roots[r].frozen = True
                roots[r].reason = uf.frozen[r]
        seen = set()
        for s, module, role, off, mult, dim in self.records:
            r = uf.find(s)
            key = (r, module, role, off, dim)
            if key in seen:
                continue
            seen.add(key)
            roots[r].members.append(Member(module, role, off, mult, dim))
        groups = []
        for r in order:
            g = roots[r]
            if not g.members:
                continue
            g.gid = len(groups)
            groups.append(g)
        out_groups = {roots[uf.find(s)].gid for d in out_descs if d is not None for s, _ in d.segs}
        return DependencyGraph(self.model, groups, self.layers, self.input_consumers, out_groups)
