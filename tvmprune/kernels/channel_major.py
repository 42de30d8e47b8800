"""The zero-padded, channel-major copy of an NHWC input that the spatially vectorised sparse
convs (CSR direct conv, 1xN-spatial) read: its geometry, the flat offsets of reduction indices
into it, the TE stage that makes it and that stage's schedule.

Geometry: ``xt [B, Cin, Hp, Wx]``; output pixels are computed in whole vectors of ``lanes``
(``OWp`` = output width rounded up), so each row is zero-extended to ``Wx`` for the last
vector to read inside the row.
"""

from __future__ import annotations

import numpy as np

from .base import ConvSpec

def channel_major_geometry(spec: ConvSpec, lanes: int) -> tuple[int, int, int]:
    """``(Hp, OWp, Wx)`` of the channel-major copy: padded height, output width rounded up to
    whole vectors (what the kernels compute), and the copy's row length (the padded width,
    zero-extended so that the last vector of output pixels reads inside the row)."""
    pt, pl, pb, pr = spec.padding
    hp, wp = spec.in_h + pt + pb, spec.in_w + pl + pr
    owp = -(-spec.out_w // lanes) * lanes
    wx = max(wp, (owp - 1) * spec.stride[1] + spec.kw)
    return hp, owp, wx


def channel_major_offsets(k: np.ndarray, spec: ConvSpec, hp: int, wx: int) -> np.ndarray:
    """Reduction indices ``k = (cin*KH + kh)*KW + kw`` -> flat offsets ``(cin*Hp + kh)*Wx + kw``
    into one image of the channel-major copy (int32)."""
    k = np.asarray(k).astype(np.int64)
    kh_, kw_ = spec.kh, spec.kw
    c_i, kh_i, kw_i = k // (kh_ * kw_), (k // kw_) % kh_, k % kw_
    return ((c_i * hp + kh_i) * wx + kw_i).astype(np.int32)


def channel_major_input(data, spec: ConvSpec, hp: int, wx: int):
    """TE stage ``xt [B, Cin, Hp, Wx]``: zero-padded, channel-major copy of the NHWC ``data``."""
    from tvm import te, tirx

    pt, pl = spec.padding[0], spec.padding[1]
    b_, h_, w_, cin = spec.in_shape

    def xt_f(b, c, h, w):
        ok = tirx.all(h >= pt, h < pt + h_, w >= pl, w < pl + w_)
        return tirx.if_then_else(ok, data[b, h - pt, w - pl, c], tirx.const(0.0, "float32"))

    return te.compute((b_, cin, hp, wx), xt_f, name="xt")


def schedule_channel_major_input(sch, cin: int, lanes: int, vector_channels: bool = False) -> None:
    """Parallel (blocked, when ``Cin`` is a multiple of ``lanes``) transpose for the ``xt`` stage.

    ``vector_channels``: read each pixel's ``lanes`` channels as one vector and unroll a block
    of ``lanes`` pixels (scattered scalar stores); faster for wide 1x1 inputs (the copy is
    then memory-bound), slightly slower for small 3x3 ones."""
    xb, xc, xh, xw = sch.get_loops(sch.get_sblock("xt"))
    if cin % lanes == 0 and vector_channels and sch.get(xw).extent.value % lanes == 0:
        xco, xci = sch.split(xc, [None, lanes])
        xwo, xwi = sch.split(xw, [None, lanes])
        sch.reorder(xb, xh, xco, xwo, xwi, xci)
        sch.parallel(sch.fuse(xb, xh))
        sch.unroll(xwi)
        sch.vectorize(xci)
    elif cin % lanes == 0:  # blocked transpose: read whole channel vectors, write rows
        xco, xci = sch.split(xc, [None, lanes])
        sch.reorder(xb, xh, xco, xw, xci)
        sch.parallel(sch.fuse(xb, xh))
    else:
        sch.parallel(sch.fuse(xb, xc))
