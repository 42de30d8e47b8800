"""Depthwise NHWC convolution (groups == Cin == Cout), register-blocked.

Layouts: data NHWC ``[B, H, W, C]``; weight ``[KH, KW, C]`` (channels innermost: one weight
vector per tap and channel vector, reused by every pixel of the tile); output NHWC. The
conv stage runs over the output padded to whole tiles (the padded input carries the extra
zero rows / columns), the epilogue writes the real pixels. Loop nest and tile: see
:mod:`.channel_tile` (``rows x pixels`` output pixels x channel vectors in registers, taps
unrolled, parallel over (batch, row tiles, channel blocks)). Stride and padding are any; the
padding is read through its condition inside the conv (no padded copy: 2x faster at stride 2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from tvm import te

from ..errors import UnsupportedLayerError
from ..target import NamedTarget, get_target
from .base import ConvSpec, KernelInstance
from .channel_tile import ChannelTile, default_channel_split, pick_channel_tile, sample_channel_tile
from .channel_tile import schedule_channel_tile, vector_width
from .conv_inputs import check_conv_arrays
from .conv_stages import fused_output, pad_nhwc
from .family import KernelFamily
from .format import Format, LayerOp
from .identity import symbol_name
from .target_params import n_vector_registers

if TYPE_CHECKING:
    from ..plan.layer import LayerInfo


def _depthwise_stage(spec: ConvSpec, tile: ChannelTile, data: te.Tensor, w: te.Tensor) -> te.Tensor:
    """The conv stage over the tile-padded output ``[B, OH_p, OW_p, C]``."""
    sh, sw = spec.stride
    ohp, owp = tile.padded(spec.out_h, spec.out_w)
    padded = pad_nhwc(data, spec, height=max((ohp - 1) * sh + spec.kh, spec.in_h + spec.padding[0] + spec.padding[2]),
                      width=max((owp - 1) * sw + spec.kw, spec.in_w + spec.padding[1] + spec.padding[3]))
    kh = te.reduce_axis((0, spec.kh), name="kh")
    kw = te.reduce_axis((0, spec.kw), name="kw")
    return te.compute(
        (spec.batch, ohp, owp, spec.cout),
        lambda n, y, x, c: te.sum(padded[n, y * sh + kh, x * sw + kw, c] * w[kh, kw, c], axis=[kh, kw]),
        name="conv",
    )


def pick_depthwise_tile(out_w: int, lanes: int, t: NamedTarget) -> ChannelTile:
    """One row of about a quarter of the register file's worth of pixels, one channel vector.

    Every FMA of a depthwise conv loads its own input vector, so the kernel is load-bound and
    wants few accumulators. Measured on AVX-512 (one thread, CPU time vs ONNX Runtime, 12
    depthwise layers of mobilenet_v2 / efficientnet_b0, padding inlined): 1 x 7 x 1 vector was
    best or within 10% on every layer; 2 x 7, 1 x 14, 1 x 7 x 2 lost up to 40% on some layers.
    """
    return pick_channel_tile(out_w, lanes, 1, n_vector_registers(t) // 4)


def depthwise_conv2d(spec: ConvSpec, weight: np.ndarray, bias: np.ndarray | None,
                     target: "NamedTarget | str", tile: ChannelTile | None = None) -> KernelInstance:
    """Depthwise NHWC convolution with fused ``act(conv + bias + residual)``.

    Args:
        spec: layer shape and epilogue (``groups == cin == cout``).
        weight: PyTorch layout ``[C, 1, KH, KW]``.
        bias: ``[C]`` or None (required when ``spec.bias``).
        target: sets lanes and registers of the tile.
        tile: the register tile (default: :func:`.channel_tile.pick_channel_tile`).

    Returns:
        KernelInstance of format ``depthwise``; consts = [weight ``[KH, KW, C]``, bias?].

    Raises:
        UnsupportedLayerError: not a depthwise spec.
    """
    t = get_target(target)
    check_conv_arrays(spec, weight, bias)
    if not (spec.groups == spec.cin == spec.cout):
        raise UnsupportedLayerError(
            f"depthwise kernel needs groups == cin == cout, got groups={spec.groups}, cin={spec.cin}, "
            f"cout={spec.cout}; use the grouped kernel")
    lanes = vector_width(spec.cout, t.vector_lanes)
    tile = tile or pick_depthwise_tile(spec.out_w, lanes, t)
    w_np = np.ascontiguousarray(weight[:, 0].transpose(1, 2, 0)).astype("float32")  # [KH, KW, C]
    data = te.placeholder(spec.in_shape, name="data", dtype="float32")
    w = te.placeholder(w_np.shape, name="weight", dtype="float32")
    conv = _depthwise_stage(spec, tile, data, w)
    args, consts = [data, w], [w_np]
    fused_output(conv, spec, bias, args, consts)
    name = symbol_name("tvmprune_depthwise_conv2d", spec, t.vector_lanes, tile.rows, tile.pixels)
    func = te.create_prim_func(args).with_attr("global_symbol", name)
    split = default_channel_split(spec.cout // lanes, tile.vectors)

    def schedule_default(sch: Any) -> None:
        schedule_channel_tile(sch, lanes, 2, tile.rows, tile.pixels, split)

    return KernelInstance(
        name=name, format=Format.DEPTHWISE, op=LayerOp.CONV2D, func=func, consts=consts, out_shape=spec.out_shape,
        schedule_default=schedule_default, schedule_space=lambda sch: sample_channel_tile(sch, lanes, 2, t),
        flops=spec.dense_flops,
        info={"density": 1.0, "layout": "NHWC", "weight_layout": "HWC", "vec": lanes * tile.vectors,
              "tile": f"{tile.rows}x{tile.pixels}x{tile.vectors}x{lanes}"},
    )


def _build(info: "LayerInfo", n: int, target: NamedTarget) -> KernelInstance:
    return depthwise_conv2d(info.spec, info.weight, info.bias, target)


# depthwise convs are planned by their shape, not by prediction (the roofline's dense time covers them)
FAMILY = KernelFamily(Format.DEPTHWISE, LayerOp.CONV2D, build=_build, accepts=lambda info: info.is_depthwise)
