"""Dense NHWC convolution (groups == 1): a register-blocked direct convolution.

TVM 0.27 ships no scheduled CPU convolution, so every dense conv of a tvmprune model runs
this kernel (it is also the "TVM dense" baseline the sparse kernels are measured against).
Depthwise convs have their own kernel (:mod:`.depthwise_conv2d`); :func:`dense_conv2d` hands
them over.

Layouts: data NHWC ``[B, H, W, Cin]``; weight packed at compile time (it is a constant) into
``[Cout_p / CB, KH, KW, Cin, CB]`` with ``CB`` = the tile's output channels (vectors x lanes),
zero-padded to ``Cout_p``; output NHWC. Loop nest::

    parallel for (b, cb, oh):                  # channel block outermost: its weights stay in L2
                                               # (or rows outermost, every cb per task, where the
                                               # input map is the larger traffic: conv_loop_nest)
      for ow_o in OW_p / T:                    # T output pixels per tile
        acc[T, CB] = 0                         # T x vectors registers
        for kh, kw, ci:                        # weight block streams contiguously
          for t in T, v in vectors (unrolled): # broadcast one input, FMA into a vector
            acc[t, v] += X[b, oh*s+kh, (ow_o*T+t)*s+kw, ci] * Wp[cb, kh, kw, ci, v*lanes:+lanes]
        out[b, oh, ow_o*T:+T, cb*CB:+CB] = act(acc + bias + residual)

A 1x1 convolution is the same nest with one tap: a packed GEMM ``[pixels, Cin] @ [Cin, Cout]``
whose A panel is T consecutive pixels of a row and whose B panel is the packed weight block.
The output row is padded to a multiple of T (the padded input gets the extra zero columns),
so any width and stride gets full tiles; the epilogue writes only the real pixels and channels.
Tile sizes come from :func:`.register_tile.pick_register_tile` (the target's lanes and
registers); the loop nest and its tuning space (rows / pixels / channel vectors split into
parallel x sequential x register factors, a Cin split, the unroll depth) are
:mod:`.conv_loop_nest`'s; the default is one point of that space.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from tvm import te

from ..errors import UnsupportedLayerError
from ..plan.roofline import PerfParams, dense_ms, layer_cost
from ..target import NamedTarget, get_target
from .base import ConvSpec, KernelInstance
from .conv_inputs import check_conv_arrays
from .conv_stages import fused_output, pad_nhwc
from .depthwise_conv2d import FAMILY as DEPTHWISE_FAMILY
from .depthwise_conv2d import depthwise_conv2d
from .family import KernelFamily, Probe
from .format import Format, LayerOp
from .identity import symbol_name
from .conv_loop_nest import ConvNest, apply_nest, default_nest, sample_nest
from .register_tile import RegisterTile, pick_register_tile

if TYPE_CHECKING:
    from ..plan.layer import LayerInfo

_pad = pad_nhwc  # the grouped kernel's name for it
__all__ = ["DENSE_FAMILY", "DEPTHWISE_FAMILY", "dense_conv2d", "pack_conv_weight"]


def pack_conv_weight(weight: np.ndarray, tile: RegisterTile) -> np.ndarray:
    """PyTorch ``[Cout, Cin, KH, KW]`` -> blocked ``[Cout_p / CB, KH, KW, Cin, CB]`` (zero-padded)."""
    cout, cin, kh, kw = weight.shape
    cb = tile.channel_block
    w = np.zeros((tile.padded_channels(cout), cin, kh, kw), np.float32)
    w[:cout] = weight
    return np.ascontiguousarray(w.reshape(-1, cb, cin, kh, kw).transpose(0, 3, 4, 2, 1))


def _blocked_conv(spec: ConvSpec, tile: RegisterTile, data: te.Tensor, w: te.Tensor) -> te.Tensor:
    """The conv stage over the padded output ``[B, OH, OW_p, Cout_p]``."""
    sh, sw = spec.stride
    owp = tile.padded_pixels(spec.out_w)
    padded = pad_nhwc(data, spec, height=(spec.out_h - 1) * sh + spec.kh, width=(owp - 1) * sw + spec.kw)
    cb = tile.channel_block
    kh = te.reduce_axis((0, spec.kh), name="kh")
    kw = te.reduce_axis((0, spec.kw), name="kw")
    ci = te.reduce_axis((0, spec.cin), name="ci")
    return te.compute(
        (spec.batch, spec.out_h, owp, tile.padded_channels(spec.cout)),
        lambda n, y, x, c: te.sum(
            padded[n, y * sh + kh, x * sw + kw, ci] * w[c // cb, kh, kw, ci, c % cb], axis=[kh, kw, ci]),
        name="conv",
    )


def schedule_blocked(sch: Any, spec: ConvSpec, tile: RegisterTile, t: NamedTarget,
                     nest: ConvNest | None = None) -> None:
    """The loop nest of :mod:`.conv_loop_nest` at ``nest`` (None: :func:`.conv_loop_nest.default_nest`)."""
    apply_nest(sch, spec, tile, nest or default_nest(spec, tile, t))


def _check(spec: ConvSpec, weight: np.ndarray, bias: np.ndarray | None) -> None:
    if spec.groups != 1:
        raise UnsupportedLayerError(
            f"grouped convolution with groups={spec.groups}, cin={spec.cin}, cout={spec.cout}: the dense kernel "
            "takes groups=1 (depthwise and grouped convs have their own kernels)")
    check_conv_arrays(spec, weight, bias)


def dense_conv2d(
    spec: ConvSpec,
    weight: np.ndarray,
    bias: np.ndarray | None,
    target: "NamedTarget | str",
    tile: RegisterTile | None = None,
) -> KernelInstance:
    """Dense (groups == 1) NHWC convolution; depthwise specs go to :func:`.depthwise_conv2d`.

    Args:
        spec: layer shape and epilogue.
        weight: PyTorch layout ``[Cout, Cin, KH, KW]``.
        bias: ``[Cout]`` or None (required when ``spec.bias``).
        target: where the kernel will run (sets lanes and registers of the tile).
        tile: the register tile (default: :func:`.register_tile.pick_register_tile`).

    Returns:
        KernelInstance of format ``dense``; consts = [packed weight
        ``[Cout_p / CB, KH, KW, Cin, CB]``, bias?].
    """
    t = get_target(target)
    if spec.groups > 1 and spec.groups == spec.cin == spec.cout:
        return depthwise_conv2d(spec, weight, bias, t)
    _check(spec, weight, bias)
    tile = tile or pick_register_tile(spec.out_w, spec.cout, t)
    w_np = pack_conv_weight(np.asarray(weight, np.float32), tile)
    data = te.placeholder(spec.in_shape, name="data", dtype="float32")
    w = te.placeholder(w_np.shape, name="weight", dtype="float32")
    conv = _blocked_conv(spec, tile, data, w)
    args, consts = [data, w], [w_np]
    fused_output(conv, spec, bias, args, consts)
    name = symbol_name("tvmprune_dense_conv2d", spec, t.vector_lanes, tile.vectors, tile.pixels)
    func = te.create_prim_func(args).with_attr("global_symbol", name)

    def schedule_space(sch: Any) -> None:
        apply_nest(sch, spec, tile, sample_nest(sch, tile, t))

    return KernelInstance(
        name=name, format=Format.DENSE, op=LayerOp.CONV2D, func=func, consts=consts, out_shape=spec.out_shape,
        schedule_default=lambda sch: schedule_blocked(sch, spec, tile, t), schedule_space=schedule_space,
        flops=spec.dense_flops,
        info={"density": 1.0, "layout": "NHWC", "weight_layout": f"[Cout/{tile.channel_block},KH,KW,Cin,"
              f"{tile.channel_block}]", "vec": tile.channel_block, "ow_tile": tile.pixels},
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
