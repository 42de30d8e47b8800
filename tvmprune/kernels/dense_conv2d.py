"""Dense NHWC convolution (regular and depthwise) with a vectorised default schedule.

TVM 0.27 ships no scheduled CPU convolution: an unscheduled ``relax.nn.conv2d`` runs as
scalar loops (resnet18 takes seconds). Every dense conv in a tvmprune model is therefore
lowered to this kernel, which is also the "TVM dense" baseline that sparse kernels are
measured against.

Layouts: data NHWC ``[B, H, W, Cin]``; weight HWIO ``[KH, KW, Cin, Cout]`` (regular) or
``[KH, KW, C]`` (depthwise); output NHWC. HWIO puts Cout innermost so the schedule loads
one weight vector of ``vec`` output channels per (kh, kw, cin) and broadcasts one input
value into it: an outer-product micro-kernel of ``ow_tile x vec`` accumulators held in
registers (``cache_write`` to ``local``, unrolled).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from tvm import te, tirx

from ..errors import UnsupportedLayerError
from ..plan.roofline import PerfParams, dense_ms, layer_cost
from ..target import NamedTarget, get_target
from .base import ConvSpec, KernelInstance, conv_epilogue
from .family import KernelFamily, Probe
from .format import Format, LayerOp
from .identity import symbol_name

if TYPE_CHECKING:
    from ..plan.layer import LayerInfo


def _pad(data: te.Tensor, spec: ConvSpec) -> te.Tensor:
    pt, pl, pb, pr = spec.padding
    if not any(spec.padding):
        return data
    b, h, w, c = data.shape

    def f(n, y, x, ch):
        inside = tirx.all(y >= pt, y < h + pt, x >= pl, x < w + pl)
        return tirx.if_then_else(inside, data[n, y - pt, x - pl, ch], tirx.const(0.0, "float32"))

    return te.compute((b, h + pt + pb, w + pl + pr, c), f, name="pad")


def epilogue(
    conv: te.Tensor, spec: ConvSpec, bias: te.Tensor | None, residual: te.Tensor | None
) -> te.Tensor:
    """``act(conv + bias + residual)`` as one stage named ``epilogue`` (or ``conv`` itself)."""
    if bias is None and residual is None and spec.activation is None:
        return conv
    return conv_epilogue(conv.shape, lambda n, y, x, c: conv[n, y, x, c], bias, residual, spec.activation,
                         "epilogue")


def _pick_vec(cout: int, lanes: int) -> int:
    for v in (2 * lanes, lanes, max(lanes // 2, 1), 4, 2):
        if cout % v == 0 and v <= cout:
            return v
    return lanes


def _pick_ow_tile(ow: int, limit: int) -> int:
    for t in range(min(limit, ow), 0, -1):
        if ow % t == 0 and t >= 3:
            return t
    return min(limit, ow)


def _schedule_direct(sch: Any, spec: ConvSpec, vec: int, ow_tile: Any, depthwise: bool, unroll: Any = 0) -> None:
    """Shared schedule of the dense and depthwise kernels.

    Output tile = ``ow_tile`` pixels x ``vec`` channels, accumulated in a ``local`` buffer
    (registers once unrolled), reduction (kh, kw, ci) outside the tile, parallel over
    (batch, output row). ``ow_tile`` is an int (default) or two sampled factors (tuning).
    """
    conv = sch.get_sblock("conv")
    writeback = sch.cache_write(conv, 0, "local")
    try:
        epi = sch.get_sblock("epilogue")
        sch.compute_inline(writeback)  # the epilogue reads the accumulators directly
        out_block = epi
    except Exception:  # no epilogue stage
        out_block = writeback
    # tile the conv block itself (split keeps unit loops, so positions are stable)
    if depthwise:
        b, oh, ow, co, kh, kw = sch.get_loops(conv)
        red = [kh, kw]
    else:
        b, oh, ow, co, kh, kw, ci = sch.get_loops(conv)
        red = [kh, kw, ci]
    if isinstance(ow_tile, (list, tuple)):
        ow_o, ow_i = sch.split(ow, factors=ow_tile)
    else:
        ow_o, ow_i = sch.split(ow, factors=[None, ow_tile])
    co_o, co_i = sch.split(co, factors=[None, vec])
    sch.reorder(b, oh, ow_o, co_o, *red, ow_i, co_i)
    sch.reverse_compute_at(out_block, co_o)
    outer = sch.fuse(b, oh)
    sch.parallel(outer)
    sch.unroll(ow_i)
    sch.vectorize(co_i)
    init = sch.decompose_reduction(conv, red[0])
    sch.vectorize(sch.get_loops(init)[-1])
    sch.vectorize(sch.get_loops(out_block)[-1])
    if any(spec.padding):
        pad = sch.get_sblock("pad")
        pl = sch.get_loops(pad)
        sch.parallel(sch.fuse(pl[0], pl[1]))
    if not isinstance(unroll, int) or unroll:
        sch.annotate(outer, "pragma_auto_unroll_max_step", unroll)
        sch.annotate(outer, "pragma_unroll_explicit", 1)


def dense_conv2d(
    spec: ConvSpec,
    weight: np.ndarray,
    bias: np.ndarray | None,
    target: "NamedTarget | str",
) -> KernelInstance:
    """Dense (groups == 1) or depthwise (groups == Cin == Cout) NHWC convolution.

    Args:
        spec: layer shape and epilogue.
        weight: PyTorch layout ``[Cout, Cin/groups, KH, KW]``.
        bias: ``[Cout]`` or None (required when ``spec.bias``).
        target: where the kernel will run (sets the vector width).

    Returns:
        KernelInstance of kind ``dense`` or ``depthwise``; consts = [weight (HWIO or HWC),
        bias?].
    """
    t = get_target(target)
    depthwise = spec.groups > 1
    if depthwise and not (spec.groups == spec.cin == spec.cout):
        raise UnsupportedLayerError(
            f"grouped convolution with groups={spec.groups}, cin={spec.cin}, cout={spec.cout}: only groups=1 "
            "and depthwise (groups == cin == cout) have kernels"
        )
    if tuple(weight.shape) != spec.weight_shape:
        raise ValueError(f"weight shape {weight.shape} does not match spec {spec.weight_shape}")
    if spec.bias and bias is None:
        raise ValueError("spec.bias is set but no bias array was given")
    sh, sw = spec.stride
    data = te.placeholder(spec.in_shape, name="data", dtype="float32")
    padded = _pad(data, spec)
    if depthwise:
        w_np = np.ascontiguousarray(weight[:, 0].transpose(1, 2, 0)).astype("float32")  # [KH, KW, C]
        w = te.placeholder(w_np.shape, name="weight", dtype="float32")
        kh = te.reduce_axis((0, spec.kh), name="kh")
        kw = te.reduce_axis((0, spec.kw), name="kw")
        conv = te.compute(
            spec.out_shape,
            lambda n, y, x, c: te.sum(padded[n, y * sh + kh, x * sw + kw, c] * w[kh, kw, c], axis=[kh, kw]),
            name="conv",
        )
    else:
        w_np = np.ascontiguousarray(weight.transpose(2, 3, 1, 0)).astype("float32")  # HWIO
        w = te.placeholder(w_np.shape, name="weight", dtype="float32")
        kh = te.reduce_axis((0, spec.kh), name="kh")
        kw = te.reduce_axis((0, spec.kw), name="kw")
        ci = te.reduce_axis((0, spec.cin), name="ci")
        conv = te.compute(
            spec.out_shape,
            lambda n, y, x, c: te.sum(
                padded[n, y * sh + kh, x * sw + kw, ci] * w[kh, kw, ci, c], axis=[kh, kw, ci]
            ),
            name="conv",
        )
    args = [data, w]
    consts = [w_np]
    b = None
    if spec.bias:
        b = te.placeholder((spec.cout,), name="bias", dtype="float32")
        args.append(b)
        consts.append(np.asarray(bias, dtype="float32").reshape(spec.cout))
    res = None
    if spec.residual:
        res = te.placeholder(spec.out_shape, name="residual", dtype="float32")
    out = epilogue(conv, spec, b, res)
    if res is not None:
        args.append(res)
    args.append(out)
    kind = "depthwise" if depthwise else "dense"
    name = symbol_name(f"tvmprune_{kind}_conv2d", spec, t.vector_lanes)
    func = te.create_prim_func(args).with_attr("global_symbol", name)
    vec = _pick_vec(spec.cout, t.vector_lanes)
    # accumulators: ow_tile x vec floats must fit the register file (32 zmm / 16 ymm / 16 q)
    regs = 28 if t.vector_lanes == 16 else 12
    per_row = max(vec // t.vector_lanes, 1)
    ow_tile = _pick_ow_tile(spec.out_w, max(regs // per_row, 1))

    def schedule_default(sch: Any) -> None:
        _schedule_direct(sch, spec, vec, ow_tile, depthwise)

    def schedule_space(sch: Any) -> None:
        ow_loop = sch.get_loops(sch.get_sblock("epilogue" if out is not conv else "conv"))[2]
        tiles = sch.sample_perfect_tile(ow_loop, n=2, max_innermost_factor=16)
        unroll = sch.sample_categorical([0, 16, 64, 512], probs=[0.25, 0.25, 0.25, 0.25])
        _schedule_direct(sch, spec, vec, tiles, depthwise, unroll=unroll)

    return KernelInstance(
        name=name,
        format=Format.DEPTHWISE if depthwise else Format.DENSE,
        op=LayerOp.CONV2D,
        func=func,
        consts=consts,
        out_shape=spec.out_shape,
        schedule_default=schedule_default,
        schedule_space=schedule_space,
        flops=spec.dense_flops,
        info={"density": 1.0, "layout": "NHWC", "weight_layout": "HWC" if depthwise else "HWIO", "vec": vec,
              "ow_tile": ow_tile},
    )


def _build(info: "LayerInfo", n: int, target: NamedTarget) -> KernelInstance:
    return dense_conv2d(info.spec, info.weight, info.bias, target)


def _predict_dense(info: "LayerInfo", target: NamedTarget, prm: PerfParams) -> float:
    return dense_ms(layer_cost(info, target, prm))


def _fit_efficiency(spec: ConvSpec, density: float, measured_ms: float, n: int, target: NamedTarget,
                    peak: float) -> float:
    return spec.dense_flops / (measured_ms * 1e-3) / (target.peak_gflops * 1e9)


DENSE_FAMILY = KernelFamily(
    Format.DENSE, LayerOp.CONV2D, build=_build, accepts=lambda info: info.groups == 1, predict=_predict_dense,
    probe=Probe(block_n=lambda t: 0, param=lambda spec: "dense_efficiency", fit=_fit_efficiency))
# depthwise convs are planned by their shape, not by prediction (the roofline's dense time covers them)
DEPTHWISE_FAMILY = KernelFamily(Format.DEPTHWISE, LayerOp.CONV2D, build=_build,
                                accepts=lambda info: info.is_depthwise)
