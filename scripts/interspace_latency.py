"""Interspace form vs SP's sparse kernels at the same density, ResNet-18/50-sized 3x3 layers, interleaved.

    PYTHONPATH=$PWD python scripts/interspace_latency.py --density 0.1 --rounds 5

For each layer (3x3, stride 1, padding 1: 64@56, 128@28, 256@14, 512@7 -- the 3x3 widths of
ResNet-18 and of ResNet-50's bottlenecks) it builds, from one random mask per block size:

* ``ip-csr``  interspace kernel, unstructured coefficients (n = 1), random basis;
* ``sp-csr``  the CSR direct sparse conv on a weight with the same mask (SP: identity basis);
* ``ip-1x4``  interspace kernel, coefficients in 1x4 blocks along output channels;
* ``sp-1x4``  SP's 1x4 kernels on a weight with the same block mask: the vector-over-N one
  (``1xN``) and the spatially vectorised one (``1xN-spatial``), the faster one is the reference;
* ``dense``   the dense kernel on the reconstructed filters ``c * B``.

All are compiled first, then timed in interleaved rounds in this one process; the table gives
the medians and the IP/SP ratios per round (the issue's target: <= 1.3).
"""

from __future__ import annotations

import argparse

import numpy as np

LAYERS = [(64, 56), (128, 28), (256, 14), (512, 7)]


def _kernels(cin: int, hw: int, density: float, rng: np.random.Generator, t) -> tuple:
    from tvmprune.kernels.base import ConvSpec
    from tvmprune.kernels.block_direct_conv2d import block_direct_sparse_conv2d
    from tvmprune.kernels.dense_conv2d import dense_conv2d
    from tvmprune.kernels.direct_sparse_conv2d import direct_sparse_conv2d
    from tvmprune.kernels.interspace_conv2d import interspace_conv2d
    from tvmprune.kernels.sparse_conv2d import sparse_conv2d_1xn

    spec = ConvSpec(1, hw, hw, cin, cin, 3, 3, padding=(1, 1, 1, 1))
    basis = rng.standard_normal((9, 3, 3)).astype("float32")
    c1 = (rng.standard_normal((cin, cin, 9)) * (rng.random((cin, cin, 9)) < density)).astype("float32")
    keep4 = np.repeat(rng.random((cin // 4, cin, 9)) < density, 4, axis=0)
    c4 = (rng.standard_normal((cin, cin, 9)) * keep4).astype("float32")
    w1, w4 = c1.reshape(cin, cin, 3, 3), c4.reshape(cin, cin, 3, 3)  # SP: the same masks, identity basis
    ks = {"ip-csr": interspace_conv2d(spec, c1, basis, None, t),
          "sp-csr": direct_sparse_conv2d(spec, w1, None, t),
          "ip-1x4": interspace_conv2d(spec, c4, basis, None, t, n=4),
          "sp-1x4-vecN": sparse_conv2d_1xn(spec, w4, None, 4, t),
          "sp-1x4-spatial": block_direct_sparse_conv2d(spec, w4, None, 4, t),
          "dense": dense_conv2d(spec, np.einsum("oij,jhw->oihw", c1, basis), None, t)}
    return spec, ks


def _time_layer(cin: int, hw: int, density: float, rounds: int, rng: np.random.Generator, t) -> dict:
    from tvmprune.measure.kernel import compile_kernel, time_compiled

    spec, ks = _kernels(cin, hw, density, rng, t)
    libs = {k: compile_kernel(v, t) for k, v in ks.items()}
    times: dict[str, list[float]] = {k: [] for k in ks}
    for _ in range(rounds):
        for k in ks:  # interleaved: every kernel once per round
            times[k].append(time_compiled(libs[k], ks[k], spec.in_shape, repeat=3, min_repeat_ms=20))
    return times


def main() -> None:
    from tvmprune.target import get_target

    ap = argparse.ArgumentParser()
    ap.add_argument("--density", type=float, default=0.1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--target", default="x86")
    ap.add_argument("--layers", default=",".join(f"{c}@{h}" for c, h in LAYERS), help="CIN@HW,...")
    args = ap.parse_args()
    t = get_target(args.target)
    rng = np.random.default_rng(0)
    print(f"target {t.name} ({t.vector_lanes} lanes, {t.cores} cores), density {args.density}, {args.rounds} rounds")
    for item in args.layers.split(","):
        cin, hw = (int(v) for v in item.split("@"))
        r = _time_layer(cin, hw, args.density, args.rounds, rng, t)
        med = {k: float(np.median(v)) for k, v in r.items()}
        sp4 = [min(a, b) for a, b in zip(r["sp-1x4-vecN"], r["sp-1x4-spatial"])]
        csr = [a / b for a, b in zip(r["ip-csr"], r["sp-csr"])]
        b4 = [a / b for a, b in zip(r["ip-1x4"], sp4)]
        print(f"3x3 {cin}->{cin} @{hw}: " + ", ".join(f"{k} {v:.3f}" for k, v in med.items()) + " ms")
        print(f"    IP/SP csr median {np.median(csr):.2f} (rounds {' '.join('%.2f' % x for x in csr)}); "
              f"IP/SP 1x4 median {np.median(b4):.2f} (rounds {' '.join('%.2f' % x for x in b4)}); "
              f"dense/IP-csr {med['dense'] / med['ip-csr']:.2f}", flush=True)


if __name__ == "__main__":
    main()
