"""Depthwise NHWC convolution (groups == Cin == Cout), and the output-tile schedule it shares
with the grouped kernel (:mod:`.grouped_conv2d`).

Layouts: data NHWC ``[B, H, W, C]``; weight ``[KH, KW, C]`` (channels innermost, so one weight
vector of ``vec`` channels is loaded per tap); output NHWC. The schedule holds an
``ow_tile x vec`` output tile in registers (``cache_write`` to ``local``, unrolled) and reduces
over (kh, kw) outside it, parallel over (batch, output row).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from tvm import te

from ..errors import UnsupportedLayerError
from ..target import NamedTarget, get_target
from .base import ConvSpec, KernelInstance
from .conv_inputs import check_conv_arrays
from .conv_stages import fused_output, pad_nhwc
from .family import KernelFamily
from .format import Format, LayerOp
from .identity import symbol_name
from .target_params import n_vector_registers
from .tiling import pick_unrolled_tile

if TYPE_CHECKING:
    from ..plan.layer import LayerInfo


def pick_vec(cout: int, lanes: int) -> int:
    """Channels per output tile: two vectors, one, or what divides ``cout``."""
    for v in (2 * lanes, lanes, max(lanes // 2, 1), 4, 2):
        if cout % v == 0 and v <= cout:
            return v
    return lanes


def schedule_output_tile(sch: Any, spec: ConvSpec, vec: int, ow_tile: Any, depthwise: bool, unroll: Any = 0) -> None:
    """The ``ow_tile x vec`` output-tile schedule of the depthwise and grouped kernels.

    Reduction (kh, kw[, ci]) outside the tile, parallel over (batch, output row). ``ow_tile``
    is an int (default) or two sampled factors (tuning).
    """
    conv = sch.get_sblock("conv")
    writeback = sch.cache_write(conv, 0, "local")
    try:
        epi = sch.get_sblock("epilogue")
        sch.compute_inline(writeback)  # the epilogue reads the accumulators directly
        out_block = epi
    except Exception:  # no epilogue stage
        out_block = writeback
    if depthwise:
        b, oh, ow, co, kh, kw = sch.get_loops(conv)
        red = [kh, kw]
    else:
        b, oh, ow, co, kh, kw, ci = sch.get_loops(conv)
        red = [kh, kw, ci]
    factors = list(ow_tile) if isinstance(ow_tile, (list, tuple)) else [None, ow_tile]
    ow_o, ow_i = sch.split(ow, factors=factors)
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
        pl = sch.get_loops(sch.get_sblock("pad"))
        sch.parallel(sch.fuse(pl[0], pl[1]))
    if not isinstance(unroll, int) or unroll:
        sch.annotate(outer, "pragma_auto_unroll_max_step", unroll)
        sch.annotate(outer, "pragma_unroll_explicit", 1)


def depthwise_conv2d(spec: ConvSpec, weight: np.ndarray, bias: np.ndarray | None,
                     target: "NamedTarget | str") -> KernelInstance:
    """Depthwise NHWC convolution. ``weight`` is PyTorch's ``[C, 1, KH, KW]``; consts =
    [weight ``[KH, KW, C]``, bias?]."""
    t = get_target(target)
    check_conv_arrays(spec, weight, bias)
    if not (spec.groups == spec.cin == spec.cout):
        raise UnsupportedLayerError(
            f"depthwise kernel needs groups == cin == cout, got groups={spec.groups}, cin={spec.cin}, "
            f"cout={spec.cout}; use the grouped kernel")
    sh, sw = spec.stride
    data = te.placeholder(spec.in_shape, name="data", dtype="float32")
    padded = pad_nhwc(data, spec)
    w_np = np.ascontiguousarray(weight[:, 0].transpose(1, 2, 0)).astype("float32")  # [KH, KW, C]
    w = te.placeholder(w_np.shape, name="weight", dtype="float32")
    kh = te.reduce_axis((0, spec.kh), name="kh")
    kw = te.reduce_axis((0, spec.kw), name="kw")
    conv = te.compute(
        spec.out_shape,
        lambda n, y, x, c: te.sum(padded[n, y * sh + kh, x * sw + kw, c] * w[kh, kw, c], axis=[kh, kw]),
        name="conv",
    )
    args, consts = [data, w], [w_np]
    out = fused_output(conv, spec, bias, args, consts)
    name = symbol_name("tvmprune_depthwise_conv2d", spec, t.vector_lanes)
    func = te.create_prim_func(args).with_attr("global_symbol", name)
    vec = pick_vec(spec.cout, t.vector_lanes)
    # accumulators: ow_tile x vec floats within the register file, minus a few for loads
    per_row = max(vec // t.vector_lanes, 1)
    ow_tile = pick_unrolled_tile(spec.out_w, max((n_vector_registers(t) - 4) // per_row, 1))

    def schedule_space(sch: Any) -> None:
        ow_loop = sch.get_loops(sch.get_sblock("epilogue" if out is not conv else "conv"))[2]
        tiles = sch.sample_perfect_tile(ow_loop, n=2, max_innermost_factor=16)
        unroll = sch.sample_categorical([0, 16, 64, 512], probs=[0.25, 0.25, 0.25, 0.25])
        schedule_output_tile(sch, spec, vec, tiles, True, unroll=unroll)

    return KernelInstance(
        name=name, format=Format.DEPTHWISE, op=LayerOp.CONV2D, func=func, consts=consts, out_shape=spec.out_shape,
        schedule_default=lambda sch: schedule_output_tile(sch, spec, vec, ow_tile, True),
        schedule_space=schedule_space, flops=spec.dense_flops,
        info={"density": 1.0, "layout": "NHWC", "weight_layout": "HWC", "vec": vec, "ow_tile": ow_tile},
    )


def _build(info: "LayerInfo", n: int, target: NamedTarget) -> KernelInstance:
    return depthwise_conv2d(info.spec, info.weight, info.bias, target)


# depthwise convs are planned by their shape, not by prediction (the roofline's dense time covers them)
FAMILY = KernelFamily(Format.DEPTHWISE, LayerOp.CONV2D, build=_build, accepts=lambda info: info.is_depthwise)
