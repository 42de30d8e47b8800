"""Grouped NHWC convolution (1 < groups, e.g. RegNet / ResNeXt; depthwise with a channel multiplier).

``groups == cin == cout`` (plain depthwise, including ConvNeXt's 7x7) has its own kernel in
:mod:`.dense_conv2d`; this kernel covers every other group count.

Layouts: data NHWC ``[B, H, W, Cin]``; weight ``[KH, KW, Cin/groups, Cout]`` (HWIO with the
per-group input channels), output NHWC. Output channel ``c`` belongs to group
``c // (Cout/groups)`` and reads input channels ``group * Cin/groups + ci``::

    out[n, y, x, c] = sum_{kh, kw, ci} pad[n, y*sh + kh, x*sw + kw, (c // cog) * cig + ci] * w[kh, kw, ci, c]

The schedule is the dense kernel's register-blocked outer product (``ow_tile`` pixels x ``vec``
output channels, reduction outside the tile, parallel over rows). ``vec`` is kept within one group
when the group is at least 4 channels wide, so each input value is one broadcast.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tvm import te

from ..errors import UnsupportedLayerError
from ..target import NamedTarget, get_target
from .base import ConvSpec, KernelInstance, fused_conv_output
from .conv_inputs import check_conv_arrays
from .format import Format, LayerOp
from .family import KernelFamily
from .identity import symbol_name
# dense_conv2d._pad (not padding.pad_input): its loop names are part of the printed TIR and so of
# workload_key; both pads switch together with the dense kernel
from .dense_conv2d import _pad, _schedule_direct
from .tiling import pick_unrolled_tile


def _pick_group_vec(cout: int, cout_g: int, lanes: int) -> int:
    """Vector of output channels: within one group when the group is >= 4 wide, else across groups."""
    width = cout_g if cout_g >= 4 else cout
    for v in (2 * lanes, lanes, max(lanes // 2, 1), 4, 2):
        if width % v == 0 and cout % v == 0:
            return v
    return 1


def grouped_conv2d(
    spec: ConvSpec,
    weight: np.ndarray,
    bias: np.ndarray | None,
    target: "NamedTarget | str",
) -> KernelInstance:
    """Grouped NHWC convolution with fused ``act(conv + bias + residual)``.

    Args:
        spec: layer shape and epilogue (``groups`` divides ``cin`` and ``cout``).
        weight: PyTorch layout ``[Cout, Cin/groups, KH, KW]``.
        bias: ``[Cout]`` or None (required when ``spec.bias``).
        target: sets the vector width.

    Returns:
        KernelInstance of kind ``grouped``; consts = [weight ``[KH, KW, Cin/groups, Cout]``, bias?].

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
    cig, cog = spec.cin // g, spec.cout // g
    sh, sw = spec.stride
    data = te.placeholder(spec.in_shape, name="data", dtype="float32")
    padded = _pad(data, spec)
    w_np = np.ascontiguousarray(weight.transpose(2, 3, 1, 0)).astype("float32")  # [KH, KW, Cin/g, Cout]
    w = te.placeholder(w_np.shape, name="weight", dtype="float32")
    kh = te.reduce_axis((0, spec.kh), name="kh")
    kw = te.reduce_axis((0, spec.kw), name="kw")
    ci = te.reduce_axis((0, cig), name="ci")
    conv = te.compute(
        spec.out_shape,
        lambda n, y, x, c: te.sum(
            padded[n, y * sh + kh, x * sw + kw, (c // cog) * cig + ci] * w[kh, kw, ci, c], axis=[kh, kw, ci]
        ),
        name="conv",
    )
    args, consts, b = [data, w], [w_np], None
    if spec.bias:
        b = te.placeholder((spec.cout,), name="bias", dtype="float32")
        args.append(b)
        consts.append(np.asarray(bias, dtype="float32").reshape(spec.cout))
    res = te.placeholder(spec.out_shape, name="residual", dtype="float32") if spec.residual else None
    out = fused_conv_output(conv, spec, b, res)
    args += ([res] if res is not None else []) + [out]
    name = symbol_name("tvmprune_grouped_conv2d", spec, t.vector_lanes)
    func = te.create_prim_func(args).with_attr("global_symbol", name)
    vec = _pick_group_vec(spec.cout, cog, t.vector_lanes)
    regs = 28 if t.vector_lanes == 16 else 12
    ow_tile = pick_unrolled_tile(spec.out_w, max(regs // max(vec // t.vector_lanes, 1), 1))

    def schedule_default(sch: Any) -> None:
        _schedule_direct(sch, spec, vec, ow_tile, depthwise=False)

    def schedule_space(sch: Any) -> None:
        ow_loop = sch.get_loops(sch.get_sblock("epilogue" if out is not conv else "conv"))[2]
        tiles = sch.sample_perfect_tile(ow_loop, n=2, max_innermost_factor=16)
        unroll = sch.sample_categorical([0, 16, 64, 512], probs=[0.25, 0.25, 0.25, 0.25])
        _schedule_direct(sch, spec, vec, tiles, depthwise=False, unroll=unroll)

    return KernelInstance(
        name=name, format=Format.GROUPED, op=LayerOp.CONV2D, func=func, consts=consts, out_shape=spec.out_shape,
        schedule_default=schedule_default, schedule_space=schedule_space, flops=spec.dense_flops,
        info={"density": 1.0, "layout": "NHWC", "weight_layout": "HWIO (I = Cin/groups)", "groups": g, "vec": vec,
              "ow_tile": ow_tile},
    )


def _build(info: Any, n: int, target: NamedTarget) -> KernelInstance:
    return grouped_conv2d(info.spec, info.weight, info.bias, target)


def _predict(info: Any, target: NamedTarget, prm: Any) -> float | None:
    from ..plan.roofline import dense_ms, layer_cost

    return dense_ms(layer_cost(info, target, prm)) if info.groups > 1 and not info.is_depthwise else None


FAMILY = KernelFamily(Format.GROUPED, LayerOp.CONV2D, build=_build,
                      accepts=lambda info: info.groups > 1 and not info.is_depthwise, predict=_predict,
                      describe=lambda info: f"grouped conv, groups={info.groups}")
