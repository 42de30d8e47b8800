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


def schedule_channel_major_input(sch, cin: int, lanes: int, vector_channels: bool = False,
                                 tiles: bool = False) -> None:
    """Parallel (blocked, when ``Cin`` is a multiple of ``lanes``) transpose for the ``xt`` stage.

    ``vector_channels``: read each pixel's ``lanes`` channels as one vector and unroll a block
    of ``lanes`` pixels (scattered scalar stores); faster for wide 1x1 inputs (the copy is
    then memory-bound), slightly slower for small 3x3 ones.

    ``tiles``: per input row, ``lanes x lanes`` tiles (pixels x channels), both loops unrolled
    (pixels innermost), so each tile is a block of straight-line code that LLVM vectorises
    (contiguous loads along the channels, row stores along the pixels) instead of a scalar
    store per element into planes ``Hp*Wx*4`` bytes apart: 0.62x the time of the blocked
    transpose for a 64-channel 56x56 input, 0.72x for 512-channel 7x7 (AVX-512, 2 threads,
    interleaved; ``scripts/interspace_ab.py``)."""
    xb, xc, xh, xw = sch.get_loops(sch.get_sblock("xt"))
    if cin % lanes == 0 and tiles:
        xwo, xwi = sch.split(xw, [None, lanes])
        xco, xci = sch.split(xc, [None, lanes])
        sch.reorder(xb, xh, xwo, xco, xci, xwi)
        sch.parallel(sch.fuse(xb, xh))
        sch.unroll(xci)
        sch.unroll(xwi)
    elif cin % lanes == 0 and vector_channels and sch.get(xw).extent.value % lanes == 0:
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


def flat_geometry(spec: ConvSpec, lanes: int) -> tuple[int, int, int] | None:
    """``(Hx, Qp, Wx)`` of the *flat-pixel* form of the copy, for stride-1 convs (None otherwise).

    Output pixel ``(oh, ow)`` is computed at flat position ``q = oh * Wx + ow`` of a grid of row
    pitch ``Wx`` (the padded input width), whose input patch starts at ``q`` of each channel's
    plane, so one vector of ``lanes`` consecutive ``q`` spans several output rows and the flat
    offsets of :func:`channel_major_offsets` still apply. ``Qp`` = ``OH * Wx`` rounded up to whole
    vectors (the columns ``ow >= OW`` are computed and dropped); the copy gets zero rows below the
    image (``Hx >= Hp``) so that the last vector's patch stays inside each plane."""
    if spec.stride != (1, 1):
        return None
    pt, pl, pb, pr = spec.padding
    hp, wx = spec.in_h + pt + pb, spec.in_w + pl + pr
    qp = -(-spec.out_h * wx // lanes) * lanes
    hx = max(hp, -(-(qp - 1 + (spec.kh - 1) * wx + spec.kw) // wx))
    return hx, qp, wx


def computed_pixels(spec: ConvSpec, lanes: int, flat: bool) -> int:
    """Output pixels a spatially vectorised kernel computes per channel (useful ones: ``OH*OW``):
    whole vectors per output row, or of the flat grid (:func:`flat_geometry`)."""
    geo = flat_geometry(spec, lanes) if flat else None
    if geo is not None:
        return geo[1]
    return spec.out_h * channel_major_geometry(spec, lanes)[1]


# the flat form pays an extra NHWC epilogue pass over its accumulators: measured side by side
# (AVX-512, 2 threads) it wins at 7x7 (112 -> 64 computed pixels, 2.8-3.2x) and loses 15-25% at
# 14x14 1x1 / 56x56 3x3 (7-10% fewer pixels), so it is chosen only where it saves a quarter
FLAT_MIN_SAVING = 1.25


def prefers_flat_pixels(spec: ConvSpec, lanes: int) -> bool:
    """Whether the flat-pixel grid computes at least :data:`FLAT_MIN_SAVING` x fewer pixels than
    whole vectors per output row (stride 1 and an output width that leaves many lanes idle, e.g.
    7x7 on 16 lanes)."""
    return flat_geometry(spec, lanes) is not None and \
        computed_pixels(spec, lanes, False) >= FLAT_MIN_SAVING * computed_pixels(spec, lanes, True)
