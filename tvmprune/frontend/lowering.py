"""Relax pass: rewrite conv2d / linear with constant weights into ``call_tir`` of our kernels.

For every ``relax.nn.conv2d`` (NHWC, OHWI constant weight) the pass absorbs the chain that
follows it when each link has a single user:

    conv2d -> add(const bias) -> add(residual tensor) -> relu | clip(0, 6)

and replaces the chain by one ``call_tir`` of a kernel (dense, depthwise, 1xN BSR or CSR
direct convolution) whose weight arrays are Relax constants. ``matmul(x, const W^T)``
(+ bias) becomes a dense or sparse linear kernel. The format of each layer is chosen by a
``planner`` (by default :func:`tvmprune.perf_model.choose_format`); ops without a kernel
stay Relax ops and are listed in the report with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..kernels.base import ConvSpec, KernelInstance
from ..target import NamedTarget


@dataclass
class LayerInfo:
    """What the planner sees of one conv / linear layer.

    ``weight`` is in PyTorch layout: conv ``[Cout, Cin/groups, KH, KW]``, linear ``[out, in]``.
    ``block_n`` is the largest N in (32, 16, 8, 4, 2) for which the weight is exactly 1xN
    block-structured at a density below 1 (0 when none).
    """

    index: int
    name: str
    op: str  # "conv2d" or "linear"
    weight: np.ndarray
    spec: ConvSpec | None = None  # conv only
    batch: int = 1  # linear only
    bias: np.ndarray | None = None
    activation: str | None = None
    residual: bool = False

    @property
    def density(self) -> float:
        return float(np.count_nonzero(self.weight)) / max(self.weight.size, 1)

    @property
    def shape_str(self) -> str:
        if self.op == "linear":
            return f"linear {self.weight.shape[1]}->{self.weight.shape[0]}"
        if self.spec is None:
            return f"conv weight {'x'.join(map(str, self.weight.shape))}"
        s = self.spec
        g = f" g{s.groups}" if s.groups > 1 else ""
        st = f"/s{s.stride[0]}" if s.stride[0] > 1 else ""
        return f"conv {s.cin}->{s.cout} {s.kh}x{s.kw}{st}{g} @{s.in_h}x{s.in_w}"

    @property
    def dense_flops(self) -> int:
        if self.spec is None and self.op == "conv2d":
            return 0
        if self.op == "linear":
            return 2 * self.batch * self.weight.size
        return self.spec.dense_flops

    @property
    def block_n(self) -> int:
        return detect_block_n(self.weight)


def detect_block_n(weight: np.ndarray) -> int:
    """Largest N in (32, 16, 8, 4, 2) such that ``weight`` is 1xN block-sparse (0 if none).

    A block is N consecutive output channels (rows of dim 0) at one reduction index; the
    weight qualifies when it has at least one all-zero block and every block is either
    all zero or not (trivially true), i.e. its zero pattern is constant within blocks.
    The tail (Cout not divisible by N) is allowed to be a shorter block.
    """
    cout = weight.shape[0]
    nz = (weight.reshape(cout, -1) != 0)
    if nz.all():
        return 0
    for n in (32, 16, 8, 4, 2):
        if n > cout:
            continue
        pad = (-cout) % n
        m = np.concatenate([nz, np.repeat(nz[-1:], pad, axis=0)]) if pad else nz
        blocks = m.reshape(-1, n, m.shape[1])
        if (blocks.all(axis=1) == blocks.any(axis=1)).all():
            return n
    return 0


@dataclass
class LayerPlan:
    """The planner's decision for one layer.

    ``fmt``: ``dense``, ``depthwise``, ``grouped``, ``1xN``, ``1xN-spatial``, ``csr``, ``relax`` (left as a Relax op);
    ``n``: block size for 1xN; ``predicted_ms``: per-format predictions of the perf model.
    """

    info: LayerInfo
    fmt: str
    n: int = 0
    reason: str = ""
    predicted_ms: dict[str, float] = field(default_factory=dict)
    kernel: KernelInstance | None = None

    @property
    def format_label(self) -> str:
        """The format as users see it: ``dense``, ``csr``, ``1x8``, ``1x4-spatial`` ..."""
        return f"1x{self.n}{self.fmt[3:]}" if self.fmt.startswith("1xN") else self.fmt

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.info.index,
            "name": self.info.name,
            "op": self.info.op,
            "shape": self.info.shape_str,
            "density": round(self.info.density, 4),
            "format": self.format_label,
            "reason": self.reason,
            "predicted_ms": {k: round(v, 4) for k, v in self.predicted_ms.items()},
            "kernel": self.kernel.name if self.kernel else None,
        }


Planner = Callable[[LayerInfo, NamedTarget], LayerPlan]


def formats_summary(plans: list[LayerPlan]) -> dict[str, int]:
    """``{format label: number of layers}``, sorted by label (``{"1x8": 20, "dense": 1}``)."""
    counts: dict[str, int] = {}
    for pl in plans:
        counts[pl.format_label] = counts.get(pl.format_label, 0) + 1
    return dict(sorted(counts.items()))


def _op_name(expr: Any) -> str | None:
    op = getattr(expr, "op", None)
    return getattr(op, "name", None) if op is not None else None


def _is_const(expr: Any) -> bool:
    return type(expr).__name__ in ("GenericConst", "Constant")


def _const_value(expr: Any) -> np.ndarray:
    return expr.value.numpy() if hasattr(expr.value, "numpy") else expr.data.numpy()


def _shape(var: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in var.ty.shape)


def _vars_in(expr: Any, out: list) -> None:
    from tvm import relax

    if isinstance(expr, (relax.Var, relax.DataflowVar)) or type(expr).__name__ in ("Var", "DataflowVar"):
        out.append(expr)
    elif hasattr(expr, "fields"):
        for f in expr.fields:
            _vars_in(f, out)
    elif type(expr).__name__ == "TupleGetItem":
        _vars_in(expr.tuple_value, out)
    elif hasattr(expr, "args"):
        for a in expr.args:
            _vars_in(a, out)


def _prim_value(expr: Any) -> float | None:
    v = getattr(expr, "value", None)
    if v is None:
        return None
    try:
        return float(v.value if hasattr(v, "value") else v)
    except (TypeError, ValueError):
        return None


def _activation_of(value: Any) -> str | None:
    name = _op_name(value)
    if name == "relax.nn.relu":
        return "relu"
    if name == "relax.nn.relu6":
        return "relu6"
    if name in ("relax.nn.silu", "relax.nn.gelu", "relax.sigmoid"):  # issue 12: fused into kernel epilogues
        return name.rsplit(".", 1)[1]
    if name == "relax.clip" and len(value.args) == 3:
        lo, hi = _prim_value(value.args[1]), _prim_value(value.args[2])
        if lo == 0.0 and hi == 6.0:
            return "relu6"
    return None


def _silu_users(var: Any, users: dict, uses: dict, claimed: set) -> list | None:
    """The bindings ``s = sigmoid(var); m = multiply(var, s)`` when they are ``var``'s only two users
    (SiLU as PyTorch's export decomposes it), else None."""
    us = users.get(var, [])
    if uses.get(var, 0) != 2 or len(us) != 2 or any(u.var in claimed for u in us):
        return None
    sig = next((u for u in us if _op_name(u.value) == "relax.sigmoid"), None)
    mul = next((u for u in us if _op_name(u.value) == "relax.multiply"), None)
    if sig is None or mul is None or uses.get(sig.var, 0) != 1:
        return None
    a, b = mul.value.args
    if not ((a.same_as(var) and b.same_as(sig.var)) or (a.same_as(sig.var) and b.same_as(var))):
        return None
    return [sig, mul]


def lower_to_kernels(
    mod: Any,
    target: NamedTarget,
    planner: Planner,
    layer_names: list[str] | None = None,
    make_kernel: Callable[[LayerPlan, NamedTarget], KernelInstance | None] | None = None,
) -> tuple[Any, list[LayerPlan]]:
    """Rewrite ``mod["main"]``'s conv2d / linear chains into ``call_tir`` of kernels.

    Args:
        mod: Relax IRModule from :func:`tvmprune.frontend.importer.import_model` (NHWC).
        target: the compilation target (kernels are specialised to its vector width).
        planner: picks the format per layer.
        layer_names: PyTorch names of conv / linear layers in graph order.
        make_kernel: builds the kernel for a plan (default :func:`build_kernel`); returning
            None leaves the layer as a Relax op.

    Returns:
        The rewritten module and the per-layer plans (in graph order).
    """
    from tvm import relax

    make_kernel = make_kernel or build_kernel
    gv_main = mod.get_global_var("main")
    func = mod[gv_main]
    blocks = list(func.body.blocks)
    defs: dict[Any, Any] = {}
    uses: dict[Any, int] = {}
    for blk in blocks:
        for b in blk.bindings:
            defs[b.var] = b.value
            vs: list = []
            _vars_in(b.value, vs)
            for v in vs:
                uses[v] = uses.get(v, 0) + 1
    vs = []
    _vars_in(func.body.body, vs)
    for v in vs:
        uses[v] = uses.get(v, 0) + 1
    users: dict[Any, list] = {}
    for blk in blocks:
        for b in blk.bindings:
            vs = []
            _vars_in(b.value, vs)
            for v in vs:
                users.setdefault(v, []).append(b)

    claimed: set = set()  # bindings already absorbed into (or rooting) a chain

    def single_user(var: Any) -> Any | None:
        if uses.get(var, 0) != 1:
            return None
        u = users.get(var, [])
        return u[0] if len(u) == 1 and u[0].var not in claimed else None

    absorbed: set = set()
    replace: dict[Any, Any] = {}
    plans: list[LayerPlan] = []
    bb = relax.BlockBuilder(mod)
    layer_idx = 0
    names = list(layer_names or [])

    for blk in blocks:
        for b in blk.bindings:
            name = _op_name(b.value)
            if name not in ("relax.nn.conv2d", "relax.matmul"):
                continue
            call = b.value
            data, wexpr = call.args[0], call.args[1]
            lname = names[layer_idx] if layer_idx < len(names) else f"layer{layer_idx}"
            idx = layer_idx
            layer_idx += 1
            if not _is_const(wexpr):
                plans.append(LayerPlan(LayerInfo(idx, lname, "conv2d" if "conv" in name else "linear",
                                                 np.zeros((1,), "float32")), "relax",
                                       reason="weight is not a constant"))
                continue
            w = _const_value(wexpr)
            chain = [b]
            bias = None
            residual_var = None
            act = None
            cur = b
            if name == "relax.nn.conv2d":
                a = call.attrs
                if str(a.data_layout) != "NHWC" or str(a.kernel_layout) != "OHWI" or any(int(d) != 1 for d in a.dilation):
                    plans.append(LayerPlan(LayerInfo(idx, lname, "conv2d", w), "relax",
                                           reason="layout/dilation not supported by kernels"))
                    continue
                cout = w.shape[0]
            else:
                if w.ndim != 2 or len(_shape(data)) != 2:
                    plans.append(LayerPlan(LayerInfo(idx, lname, "linear", w), "relax",
                                           reason="matmul that is not a 2-D linear layer"))
                    continue
                cout = w.shape[1]
            # absorb bias / residual / activation, each with a single user
            nxt = single_user(cur.var)
            if nxt is not None and _op_name(nxt.value) == "relax.add":
                x0, x1 = nxt.value.args
                other = x1 if x0.same_as(cur.var) else x0
                if _is_const(other):
                    cv = _const_value(other)
                    if cv.size == cout and cv.shape[-1] == cout and _shape(nxt.var) == _shape(cur.var):
                        bias = cv.reshape(cout).astype("float32")
                        chain.append(nxt)
                        cur = nxt
                        nxt = single_user(cur.var)
            if name == "relax.nn.conv2d" and nxt is not None and _op_name(nxt.value) == "relax.add":
                x0, x1 = nxt.value.args
                other = x1 if x0.same_as(cur.var) else x0
                if not _is_const(other) and not other.same_as(cur.var) and _shape(other) == _shape(cur.var):
                    residual_var = other
                    chain.append(nxt)
                    cur = nxt
                    nxt = single_user(cur.var)
            if nxt is not None and _activation_of(nxt.value) is not None:
                act = _activation_of(nxt.value)
                chain.append(nxt)
                cur = nxt
            elif nxt is None and (silu := _silu_users(cur.var, users, uses, claimed)) is not None:
                act = "silu"  # issue 12: x * sigmoid(x) as the kernel's epilogue
                chain.extend(silu)
                cur = silu[-1]

            if name == "relax.nn.conv2d":
                a = call.attrs
                bsz, ih, iw, cin = _shape(data)
                wt = np.ascontiguousarray(w.transpose(0, 3, 1, 2))  # OHWI -> OIHW
                pad = [int(p) for p in a.padding]
                spec = ConvSpec(
                    batch=bsz, in_h=ih, in_w=iw, cin=cin, cout=int(w.shape[0]), kh=int(w.shape[1]),
                    kw=int(w.shape[2]), stride=(int(a.strides[0]), int(a.strides[1])),
                    padding=(pad[0], pad[1], pad[2], pad[3]), groups=int(a.groups), bias=bias is not None,
                    activation=act, residual=residual_var is not None,
                )
                info = LayerInfo(idx, lname, "conv2d", wt, spec=spec, bias=bias, activation=act,
                                 residual=residual_var is not None)
            else:
                info = LayerInfo(idx, lname, "linear", np.ascontiguousarray(w.T), batch=_shape(data)[0], bias=bias,
                                 activation=act)
            plan = planner(info, target)
            plans.append(plan)
            if plan.fmt == "relax":
                continue
            kernel = make_kernel(plan, target)
            if kernel is None:
                plan.fmt, plan.reason = "relax", plan.reason or "no kernel"
                continue
            plan.kernel = kernel
            gv = bb.add_func(kernel.func, kernel.name)
            args = [data] + [relax.const(c) for c in kernel.consts]
            if residual_var is not None:
                args.append(residual_var)
            root = chain[-1].var
            claimed.update(link.var for link in chain)
            replace[root] = relax.call_tir(gv, relax.Tuple(args), out_ty=relax.TensorType(kernel.out_shape, "float32"))
            for link in chain[:-1]:
                absorbed.add(link.var)

    new_mod = bb.get()
    new_blocks = []
    for blk in blocks:
        bindings = []
        for b in blk.bindings:
            if b.var in absorbed:
                continue
            if b.var in replace:
                bindings.append(relax.VarBinding(b.var, replace[b.var]))
            else:
                bindings.append(b)
        new_blocks.append(relax.DataflowBlock(bindings) if isinstance(blk, relax.DataflowBlock) else relax.BindingBlock(bindings))
    new_func = relax.Function(func.params, relax.SeqExpr(new_blocks, func.body.body), func.ret_ty, func.is_pure, func.attrs)
    new_mod[new_mod.get_global_var("main")] = new_func
    new_mod = relax.transform.Normalize()(new_mod)
    return new_mod, plans


def build_kernel(plan: LayerPlan, target: NamedTarget) -> KernelInstance | None:
    """Instantiate the kernel the plan asks for (imports kernels lazily)."""
    info = plan.info
    if info.op == "conv2d":
        if plan.fmt in ("dense", "depthwise"):
            from ..kernels.dense_conv2d import dense_conv2d

            return dense_conv2d(info.spec, info.weight, info.bias, target)
        if plan.fmt == "grouped":
            from ..kernels.grouped_conv2d import grouped_conv2d

            return grouped_conv2d(info.spec, info.weight, info.bias, target)
        if plan.fmt == "1xN":
            from ..kernels.sparse_conv2d import sparse_conv2d_1xn

            return sparse_conv2d_1xn(info.spec, info.weight, info.bias, plan.n, target)
        if plan.fmt == "1xN-spatial":
            from ..kernels.block_direct_conv2d import block_direct_sparse_conv2d

            return block_direct_sparse_conv2d(info.spec, info.weight, info.bias, plan.n, target)
        if plan.fmt == "csr":
            from ..kernels.direct_sparse_conv2d import direct_sparse_conv2d

            return direct_sparse_conv2d(info.spec, info.weight, info.bias, target)
        return None
    if info.op == "linear":
        if plan.fmt == "dense":
            from ..kernels.dense_linear import dense_linear

            return dense_linear(info.weight, info.bias, info.batch, info.activation, target)
        if plan.fmt in ("1xN", "csr"):
            from ..kernels.sparse_linear import sparse_linear

            fmt = "bsr" if plan.fmt == "1xN" else "csr"
            return sparse_linear(info.weight, info.bias, fmt, plan.n or 1, info.batch, info.activation, target)
    return None
