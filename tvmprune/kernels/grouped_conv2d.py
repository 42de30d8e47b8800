"""Grouped NHWC convolution (1 < groups < channels, e.g. RegNet / ResNeXt; depthwise with a
channel multiplier), register-blocked.

``groups == cin == cout`` (plain depthwise) has its own kernel (:mod:`.depthwise_conv2d`).

Layouts: data NHWC ``[B, H, W, Cin]``; weight packed at compile time into
``[Cout / VL, KH, KW, Cin/groups, VL]`` (``VL`` = the vector width, the widest power of two up
to the target's lanes that divides the group width ``Cout/groups``, so a vector never straddles
two groups); output NHWC. Output channel ``c`` belongs to group ``c // cog`` and reads input
channels ``group * cig + ci``::

    out[n, y, x, c] = sum_{kh, kw, ci} pad[n, y*sh + kh, x*sw + kw, (c // cog) * cig + ci]
                                        * Wp[c // VL, kh, kw, ci, c % VL]

Per reduction step every channel vector of the tile loads one weight vector and broadcasts one
input value of its group per pixel: a small dense GEMM per group, blocked like the dense
kernel. The loop nest and the tile (``rows x pixels`` x channel vectors) are
:mod:`.channel_tile`'s, over the output padded to whole tiles.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tvm import te

from ..errors import UnsupportedLayerError
from ..target import NamedTarget, get_target
from .base import ConvSpec, KernelInstance
from .channel_tile import ChannelTile, default_channel_split, gemm_accumulators, pick_channel_tile
from .channel_tile import sample_channel_tile, schedule_channel_tile, vector_width
from .conv_inputs import check_conv_arrays
from .conv_stages import fused_output, pad_nhwc
from .family import KernelFamily
from .format import Format, LayerOp
from .identity import symbol_name


def pack_grouped_weight(weight: np.ndarray, lanes: int) -> np.ndarray:
    """PyTorch ``[Cout, Cin/groups, KH, KW]`` -> ``[Cout / lanes, KH, KW, Cin/groups, lanes]``."""
    cout, cig, kh, kw = weight.shape
    w = np.asarray(weight, np.float32).reshape(cout // lanes, lanes, cig, kh, kw)
    return np.ascontiguousarray(w.transpose(0, 3, 4, 2, 1))


def _grouped_stage(spec: ConvSpec, tile: ChannelTile, data: te.Tensor, w: te.Tensor) -> te.Tensor:
    """The conv stage over the tile-padded output ``[B, OH_p, OW_p, Cout]``."""
    sh, sw = spec.stride
    cig, cog, vl = spec.cin // spec.groups, spec.cout // spec.groups, tile.lanes
    ohp, owp = tile.padded(spec.out_h, spec.out_w)
    pt, pl, pb, pr = spec.padding
    padded = pad_nhwc(data, spec, height=max((ohp - 1) * sh + spec.kh, spec.in_h + pt + pb),
                      width=max((owp - 1) * sw + spec.kw, spec.in_w + pl + pr))
    kh = te.reduce_axis((0, spec.kh), name="kh")
    kw = te.reduce_axis((0, spec.kw), name="kw")
    ci = te.reduce_axis((0, cig), name="ci")
    return te.compute(
        (spec.batch, ohp, owp, spec.cout),
        lambda n, y, x, c: te.sum(
            padded[n, y * sh + kh, x * sw + kw, (c // cog) * cig + ci] * w[c // vl, kh, kw, ci, c % vl],
            axis=[kh, kw, ci]),
        name="conv",
    )


def pick_grouped_tile(spec: ConvSpec, t: NamedTarget) -> ChannelTile:
    """Two channel vectors per tile where a group holds two (or more), else one; pixels and rows
    from :func:`.channel_tile.pick_channel_tile` (two rows where the height is even: no padded rows).

    Measured on AVX-512 (one thread, CPU time, regnet_x_400mf and resnext50 3x3 layers):
    2 x 7 x 1 vector matches the old 1 x 28 tile within 5% on RegNet, 2 x 7 x 2 vectors wins
    by 25% on 1024@7; a padded 8th row of a 7-high output costs 10-25%.
    """
    cog = spec.cout // spec.groups
    lanes = vector_width(cog, t.vector_lanes)
    vectors = 2 if (cog // lanes) % 2 == 0 else 1
    acc = gemm_accumulators(t)
    rows = 2 if spec.out_h % 2 == 0 and acc // vectors >= 8 else 1
    return pick_channel_tile(spec.out_w, lanes, vectors, acc, rows)


def grouped_conv2d(
    spec: ConvSpec,
    weight: np.ndarray,
    bias: np.ndarray | None,
    target: "NamedTarget | str",
    tile: ChannelTile | None = None,
) -> KernelInstance:
    """Grouped NHWC convolution with fused ``act(conv + bias + residual)``.

    Args:
        spec: layer shape and epilogue (``groups`` divides ``cin`` and ``cout``).
        weight: PyTorch layout ``[Cout, Cin/groups, KH, KW]``.
        bias: ``[Cout]`` or None (required when ``spec.bias``).
        target: sets the vector width and the tile.
        tile: the register tile (default: :func:`pick_grouped_tile`); its lanes must divide the group width.

    Returns:
        KernelInstance of kind ``grouped``; consts = [packed weight ``[Cout/VL, KH, KW, Cin/groups, VL]``, bias?].

    Raises:
        UnsupportedLayerError: ``groups`` does not divide the channel counts.
    """
    t = get_target(target)
    g = spec.groups
    if g < 1 or spec.cin % g or spec.cout % g:
        raise UnsupportedLayerError(
            f"grouped convolution with groups={g}, cin={spec.cin}, cout={spec.cout}: groups must divide both"
        )
    check_conv_arrays(spec, weight, bias)
    tile = tile or pick_grouped_tile(spec, t)
    if (spec.cout // g) % tile.lanes:
        raise UnsupportedLayerError(f"tile of {tile.lanes} lanes does not divide the group width {spec.cout // g}")
    w_np = pack_grouped_weight(weight, tile.lanes)
    data = te.placeholder(spec.in_shape, name="data", dtype="float32")
    w = te.placeholder(w_np.shape, name="weight", dtype="float32")
    conv = _grouped_stage(spec, tile, data, w)
    args, consts = [data, w], [w_np]
    fused_output(conv, spec, bias, args, consts)
    name = symbol_name("tvmprune_grouped_conv2d", spec, t.vector_lanes, tile.lanes, tile.rows, tile.pixels)
    func = te.create_prim_func(args).with_attr("global_symbol", name)
    split = default_channel_split(spec.cout // tile.lanes, tile.vectors)

    def schedule_default(sch: Any) -> None:
        # the padding stays a parallel copy: inlined, its condition guards every broadcast (10-25% slower)
        schedule_channel_tile(sch, tile.lanes, 3, tile.rows, tile.pixels, split, pad_at="root")

    return KernelInstance(
        name=name, format=Format.GROUPED, op=LayerOp.CONV2D, func=func, consts=consts, out_shape=spec.out_shape,
        schedule_default=schedule_default, schedule_space=lambda sch: sample_channel_tile(sch, tile.lanes, 3, t),
        flops=spec.dense_flops,
        info={"density": 1.0, "layout": "NHWC", "weight_layout": f"[Cout/{tile.lanes},KH,KW,Cin/groups,{tile.lanes}]",
              "groups": g, "vec": tile.lanes * tile.vectors,
              "tile": f"{tile.rows}x{tile.pixels}x{tile.vectors}x{tile.lanes}"},
    )


def _build(info: Any, n: int, target: NamedTarget) -> KernelInstance:
    return grouped_conv2d(info.spec, info.weight, info.bias, target)


def _predict(info: Any, target: NamedTarget, prm: Any) -> float | None:
    from ..plan.roofline import dense_ms, layer_cost

    return dense_ms(layer_cost(info, target, prm)) if info.groups > 1 and not info.is_depthwise else None


FAMILY = KernelFamily(Format.GROUPED, LayerOp.CONV2D, build=_build,
                      accepts=lambda info: info.groups > 1 and not info.is_depthwise, predict=_predict,
                      describe=lambda info: f"grouped conv, groups={info.groups}")
