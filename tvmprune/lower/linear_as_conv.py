"""A Linear applied to every pixel of a channels-last map is a 1x1 convolution.

``torch.export`` spells ConvNeXt's pointwise Linear layers as ``reshape([B,H,W,K] -> [B*H*W, K])``
then ``matmul(., W[K, N])``: a GEMM with B*H*W rows, which the dense-linear kernel (built for a
batch of one, bandwidth-bound) runs far below the 1x1-conv kernel's speed. :func:`linear_as_conv`
rewrites it to ``reshape(conv2d_1x1(x, W^T as OHWI), [B*H*W, N])``; the layout sinking that follows
cancels the reshape against the next one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .relax_graph import const_value, shape_of


def linear_as_conv(mod: Any) -> Any:
    """``mod`` with every per-pixel Linear of ``main`` as a 1x1 NHWC conv (see the module docstring)."""
    from tvm import relax
    from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

    x4d = wildcard()
    flat = is_op("relax.reshape")(x4d, wildcard())
    weight = is_const()
    matmul = is_op("relax.matmul")(flat, weight)

    def rewriter(expr: Any, matches: dict) -> Any:
        x = matches[x4d]
        try:
            xs, fs, w = shape_of(x), shape_of(matches[flat]), const_value(matches[weight])
        except (TypeError, AttributeError, ValueError):
            return expr
        if len(xs) != 4 or len(fs) != 2 or w.ndim != 2 or fs[0] < 2 or xs[-1] != fs[1] or xs[-1] != w.shape[0]:
            return expr
        ohwi = np.ascontiguousarray(w.T.reshape(w.shape[1], 1, 1, w.shape[0]))
        conv = relax.op.nn.conv2d(x, relax.const(ohwi), data_layout="NHWC", kernel_layout="OHWI",
                                  out_dtype="float32")
        return relax.op.reshape(conv, [fs[0], w.shape[1]])

    mod = mod.clone() if hasattr(mod, "clone") else mod
    gv = mod.get_global_var("main")
    mod[gv] = rewrite_call(matmul, rewriter, mod["main"])
    return relax.transform.DeadCodeElimination()(relax.transform.Normalize()(mod))
