"""Zero padding of an NHWC input as a TE stage."""

from __future__ import annotations

from typing import Any

from .base import ConvSpec


def pad_input(data: Any, spec: ConvSpec) -> Any:
    """TE stage ``pad [B, H+pt+pb, W+pl+pr, C]`` of the NHWC placeholder ``data`` zero-padded by
    ``spec.padding`` (top, left, bottom, right); ``data`` itself when there is no padding."""
    from tvm import te, tirx

    pt, pl, pb, pr = spec.padding
    if not any(spec.padding):
        return data
    b_, h_, w_, c_ = spec.in_shape
    hp, wp = h_ + pt + pb, w_ + pl + pr

    def f(b, h, w, c):
        ok = tirx.all(h >= pt, h < pt + h_, w >= pl, w < pl + w_)
        return tirx.if_then_else(ok, data[b, h - pt, w - pl, c], tirx.const(0.0, "float32"))

    return te.compute((b_, hp, wp, c_), f, name="pad")
