"""The CSR direct conv's input layout and default tiling, without compiling: the pre-decoded
offsets point at the right input in the per-kw phase copies, rows per tile follow the L2 share,
channel chunks come in a multiple of the core count."""

from __future__ import annotations

import numpy as np
import pytest

from tvmprune.kernels.base import ConvSpec
from tvmprune.kernels.channel_major import channel_major_geometry
from tvmprune.kernels.direct_sparse_conv2d import _rows_in_cache
from tvmprune.kernels.shifted_input import shifted_offsets
from tvmprune.kernels.tiling import balanced_chunks


def _phase_copies(x: np.ndarray, spec: ConvSpec, hp: int, owp: int) -> np.ndarray:
    """NumPy ``xs [KW, Cin, Hp, OWp]`` of one NHWC image: ``xs[kw, c, h, l] = xpad[c, h, l*sw + kw]``."""
    pt, pl, pb, pr = spec.padding
    xpad = np.zeros((spec.cin, hp, owp * spec.stride[1] + spec.kw), np.float32)
    xpad[:, pt:pt + spec.in_h, pl:pl + spec.in_w] = x.transpose(2, 0, 1)
    sw = spec.stride[1]
    return np.stack([xpad[:, :, kw:kw + owp * sw:sw] for kw in range(spec.kw)])


@pytest.mark.parametrize("spec", [
    ConvSpec(1, 13, 13, 8, 4, 3, 3, (1, 1), (1, 1, 1, 1)),
    ConvSpec(1, 12, 11, 5, 4, 3, 5, (2, 2), (1, 2, 0, 1)),
    ConvSpec(1, 39, 39, 3, 4, 11, 11, (4, 4), (2, 2, 2, 2)),
])
def test_offsets_address_the_input_of_each_nonzero(spec):
    """For every (cin, kh, kw) and output pixel, the flat offset + the pixel's position in xs is
    the padded input the conv multiplies: ``xpad[c, oh*sh + kh, ow*sw + kw]``."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((spec.in_h, spec.in_w, spec.cin)).astype(np.float32)
    hp, owp, _ = channel_major_geometry(spec, 16)
    flat = _phase_copies(x, spec, hp, owp).ravel()
    k = np.arange(spec.cin * spec.kh * spec.kw)
    off = shifted_offsets(k, spec, hp, owp)
    c, kh, kw = k // (spec.kh * spec.kw), (k // spec.kw) % spec.kh, k % spec.kw
    pt, pl = spec.padding[0], spec.padding[1]
    for oh in range(spec.out_h):
        for ow in range(spec.out_w):
            got = flat[off + oh * spec.stride[0] * owp + ow]
            h, w = oh * spec.stride[0] + kh - pt, ow * spec.stride[1] + kw - pl
            inside = (h >= 0) & (h < spec.in_h) & (w >= 0) & (w < spec.in_w)
            want = np.where(inside, x[np.clip(h, 0, spec.in_h - 1), np.clip(w, 0, spec.in_w - 1), c], 0.0)
            np.testing.assert_array_equal(got, want)


def test_rows_shrink_only_when_a_tile_overflows_l2():
    l2 = 1 << 20
    conv3 = ConvSpec(1, 13, 13, 192, 384, 3, 3, (1, 1), (1, 1, 1, 1))  # 3*192*15 rows of 64 B = 0.55 MB
    conv4 = ConvSpec(1, 13, 13, 384, 256, 3, 3, (1, 1), (1, 1, 1, 1))  # 1.1 MB with 13 rows
    assert _rows_in_cache(conv3, 13, 16, l2) == 13
    assert _rows_in_cache(conv4, 13, 16, l2) == 7  # two tiles, 9 input rows each: 0.66 MB
    assert _rows_in_cache(conv4, 13, 16, 1 << 16) == 4  # never below 4 rows


@pytest.mark.parametrize("channels,n_par,cores,lanes,want", [
    (192, 3, 2, 16, 4),   # AlexNet conv2: 3 row tiles; 3 chunks would give 9 tasks (5 + 4 on 2 threads)
    (384, 1, 2, 16, 8),   # 8 chunks of 48
    (256, 2, 2, 16, 4),   # 2 row tiles x 4 chunks of 64
    (20, 1, 2, 16, 10),   # no chunk of whole vectors: still a multiple of the cores
    (7, 1, 2, 16, 7),     # prime: the nearest divisor
])
def test_balanced_chunks(channels, n_par, cores, lanes, want):
    got = balanced_chunks(channels, n_par, cores, lanes)
    assert got == want and channels % got == 0
