"""The kernel-column phase copies of the channel-major input that the CSR direct conv reads:
one zero-padded ``[Cin, Hp, OWp]`` plane set per kernel column ``kw``, so that the input
vector of every nonzero is one *aligned* row vector.

Why: in the plain channel-major copy (:mod:`.channel_major`) the input vector of a nonzero
``(cin, kh, kw)`` starts ``kw`` floats into a row of pitch ``Wx``, so almost every vector load
of the spatially vectorised conv straddles two cache lines (twice the load-port cost; measured
on AVX-512: 0.25 vs 0.125 ns per memory-operand FMA), and stride-2 convs need strided (gather)
loads. In ``xs [B, KW, Cin, Hp, OWp]`` with ``xs[b, kw, c, h, l] = xpad[b, c, h, l*sw + kw]``
(``OWp`` = output width rounded up to whole vectors), the input of output pixels
``l .. l+lanes`` for that nonzero is ``xs[b, kw, c, oh*sh + kh, l : l+lanes]``: contiguous, and
line-aligned when ``OWp*4`` bytes is a multiple of the line. The copy is ``KW`` times the
input (at most a few MB for the conv layers of CNNs) and is made in two passes: the blocked
transpose of :func:`.channel_major.channel_major_input`, then unit-stride vector copies.
"""

from __future__ import annotations

import numpy as np

from .base import ConvSpec
from .channel_major import channel_major_geometry, channel_major_input


def shifted_offsets(k: np.ndarray, spec: ConvSpec, hp: int, owp: int) -> np.ndarray:
    """Reduction indices ``k = (cin*KH + kh)*KW + kw`` -> flat offsets
    ``((kw*Cin + cin)*Hp + kh)*OWp`` into one image of ``xs`` (int32)."""
    k = np.asarray(k).astype(np.int64)
    kh_, kw_ = spec.kh, spec.kw
    c_i, kh_i, kw_i = k // (kh_ * kw_), (k // kw_) % kh_, k % kw_
    return (((kw_i * spec.cin + c_i) * hp + kh_i) * owp).astype(np.int32)


def shifted_input(data, spec: ConvSpec, lanes: int):
    """TE stages ``xt [B, Cin, Hp, Wx]`` (channel-major padded copy) ->
    ``xs [B, KW, Cin, Hp, OWp]``; returns ``(xs, hp, owp)``."""
    from tvm import te

    hp, owp, wx = channel_major_geometry(spec, lanes)
    xt = channel_major_input(data, spec, hp, wx)
    sw = spec.stride[1]
    xs = te.compute((spec.batch, spec.kw, spec.cin, hp, owp),
                    lambda b, kw, c, h, l: xt[b, c, h, l * sw + kw], name="xs")
    return xs, hp, owp


def schedule_shifted_input(sch, cin: int, lanes: int) -> None:
    """Both passes in one parallel loop over (batch, input rows), so one parallel region (one
    barrier) per call: each task transposes its row of ``xt`` (blocked by ``lanes`` channels
    when ``Cin`` allows: whole channel vectors read, rows written) and then writes that row of
    every ``xs`` plane, a vector of ``lanes`` output columns innermost (unit-stride loads for
    stride 1, aligned stores)."""
    xs = sch.get_sblock("xs")
    xb, xk, xc, xh, xl = sch.get_loops(xs)
    sch.reorder(xb, xh, xk, xc, xl)
    row = sch.fuse(xb, xh)
    sch.parallel(row)
    lo, li = sch.split(xl, [None, lanes])
    sch.vectorize(li)
    xt = sch.get_sblock("xt")
    sch.compute_at(xt, row)
    if cin % lanes == 0:
        *_, tc, tw = sch.get_loops(xt)
        tco, tci = sch.split(tc, [None, lanes])
        sch.reorder(tco, tw, tci)
