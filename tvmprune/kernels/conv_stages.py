"""TE stages shared by the dense convolution kernels: zero padding and the fused epilogue.

Layouts: NHWC activations (``[B, H, W, C]``), as everywhere in :mod:`tvmprune.kernels`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tvm import te, tirx

from .base import ConvSpec, conv_epilogue

if TYPE_CHECKING:
    import numpy as np


def pad_nhwc(data: te.Tensor, spec: ConvSpec, height: int | None = None, width: int | None = None) -> te.Tensor:
    """Zero-padded copy of ``data`` (stage ``pad``), or ``data`` itself when nothing is padded.

    ``height`` / ``width`` (default: input plus the spec's padding) may be larger than that,
    so that a kernel whose output tile overhangs the image reads zeros instead of out of bounds.
    """
    pt, pl, pb, pr = spec.padding
    b, h, w, c = (int(d) for d in data.shape)
    height = h + pt + pb if height is None else height
    width = w + pl + pr if width is None else width
    if (pt, pl, height, width) == (0, 0, h, w):
        return data

    def f(n, y, x, ch):
        inside = tirx.all(y >= pt, y < h + pt, x >= pl, x < w + pl)
        return tirx.if_then_else(inside, data[n, y - pt, x - pl, ch], tirx.const(0.0, "float32"))

    return te.compute((b, height, width, c), f, name="pad")


def epilogue(conv: te.Tensor, spec: ConvSpec, bias: te.Tensor | None, residual: te.Tensor | None) -> te.Tensor:
    """``act(conv + bias + residual)`` over the NHWC output as one stage named ``epilogue``, or
    ``conv`` itself when there is nothing to add. ``conv`` may be larger than the output
    (padded pixels / channels of a blocked kernel): only the output's extent is read."""
    if bias is None and residual is None and spec.activation is None and tuple(conv.shape) == spec.out_shape:
        return conv
    return conv_epilogue(spec.out_shape, lambda n, y, x, c: conv[n, y, x, c], bias, residual, spec.activation,
                         "epilogue")


def fused_output(conv: te.Tensor, spec: ConvSpec, bias: "np.ndarray | None", args: list, consts: list) -> te.Tensor:
    """The kernel's output: ``conv`` through the fused epilogue (bias?, residual?, activation).

    Appends, in the kernel's argument order, the bias placeholder (and its values to ``consts``),
    the residual placeholder and the output to ``args``.
    """
    import numpy as np

    b = res = None
    if spec.bias:
        b = te.placeholder((spec.cout,), name="bias", dtype="float32")
        args.append(b)
        consts.append(np.asarray(bias, dtype="float32").reshape(spec.cout))
    if spec.residual:
        res = te.placeholder(spec.out_shape, name="residual", dtype="float32")
    out = epilogue(conv, spec, b, res)
    args += ([res] if res is not None else []) + [out]
    return out
