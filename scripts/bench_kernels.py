#!/usr/bin/env python
"""Benchmark the sparse conv kernels against dense TVM and PyTorch, layer by layer.

Times, in one process and side by side: the 1xN BSR conv (N in --ns; kernel ``1xN``, vector
over the N output channels), the spatially vectorised 1xN conv (kernel ``1xN-spatial``,
vector over the output width; for N below the vector lanes) and the CSR direct sparse conv
at each density, vs the same layer dense in TVM (``dense_conv2d``) and in PyTorch (``torch.nn.functional.conv2d``, NCHW,
``torch.set_num_threads(threads)``). Ratios printed are dense time / sparse time, where
"best dense" is the faster of TVM dense and PyTorch.

Usage::

    python scripts/bench_kernels.py --quick
    python scripts/bench_kernels.py --json results.json [--tuning-log DIR]

``--tuning-log DIR`` is accepted; applying MetaSchedule records to the sparse kernels is a
TODO until :mod:`tvmprune.tune` provides the database glue (the default schedule is timed
and the record says ``"schedule": "default"``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's OpenMP spin-wait hurts on 2 shared cores

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tvmprune.kernels.base import ConvSpec  # noqa: E402

# (name, cin, cout, hw, k, stride)
LAYERS = {
    "resnet50": [
        ("res50_l1_3x3", 64, 64, 56, 3, 1),
        ("res50_l2_3x3", 128, 128, 28, 3, 1),
        ("res50_l3_3x3", 256, 256, 14, 3, 1),
        ("res50_l4_3x3", 512, 512, 7, 3, 1),
        ("res50_l1_1x1_in", 256, 64, 56, 1, 1),
        ("res50_l1_1x1_out", 64, 256, 56, 1, 1),
        ("res50_l3_1x1_in", 1024, 256, 14, 1, 1),
        ("res50_l3_1x1_out", 256, 1024, 14, 1, 1),
    ],
    "mobilenet_v2": [
        ("mbv2_b2_project", 96, 24, 56, 1, 1),
        ("mbv2_b3_expand", 24, 144, 56, 1, 1),
        ("mbv2_b6_expand", 32, 192, 28, 1, 1),
        ("mbv2_b13_expand", 96, 576, 14, 1, 1),
        ("mbv2_b13_project", 576, 160, 7, 1, 1),
    ],
    "vgg16": [
        ("vgg16_conv2_1", 64, 128, 112, 3, 1),
        ("vgg16_conv3_2", 256, 256, 56, 3, 1),
        ("vgg16_conv4_2", 512, 512, 28, 3, 1),
        ("vgg16_conv5_2", 512, 512, 14, 3, 1),
    ],
}
QUICK_LAYERS = ["res50_l1_3x3", "res50_l3_3x3", "res50_l3_1x1_in", "mbv2_b13_expand"]


def make_spec(cin, cout, hw, k, stride) -> ConvSpec:
    p = k // 2
    return ConvSpec(1, hw, hw, cin, cout, k, k, (stride, stride), (p, p, p, p))


def sparse_weight(spec: ConvSpec, density: float, n: int, rng) -> np.ndarray:
    """Random weight whose nonzeros form 1xN blocks (N output channels x one (kh, kw, cin))."""
    w = rng.standard_normal(spec.weight_shape).astype(np.float32)
    nb = -(-spec.cout // n)
    mask = rng.random((nb, spec.kh * spec.kw * spec.cin)) < density
    m = np.repeat(mask, n, axis=0)[: spec.cout].reshape(spec.cout, spec.kh, spec.kw, spec.cin)
    return (w * m.transpose(0, 3, 1, 2)).astype(np.float32)


def build_layer_kernel(fmt: str, spec: ConvSpec, weight: np.ndarray, n: int, target):
    """The registered conv kernel family of ``fmt`` for one layer."""
    from tvmprune.kernels.format import Format, LayerOp
    from tvmprune.kernels.registry import family
    from tvmprune.plan.layer import LayerInfo

    info = LayerInfo(0, "bench", LayerOp.CONV2D, weight, spec=spec)
    return family(Format(fmt), LayerOp.CONV2D).build(info, n, target)


def time_tvm(inst, lib, spec, rng, number, repeat) -> float:
    from tvmprune.measure.kernel import time_compiled

    return time_compiled(lib, inst, spec.in_shape, spec.residual, number=number, repeat=repeat,
                         seed=int(rng.integers(1 << 31)))


def time_torch(spec, weight, number, repeat) -> float:
    """Median ms of one ``torch.nn.functional.conv2d`` (NCHW) of the layer, ``number`` calls a sample."""
    import torch

    from tvmprune.measure.model import time_callable

    x = torch.randn(spec.batch, spec.cin, spec.in_h, spec.in_w)
    w = torch.from_numpy(weight)
    pad = spec.padding[0]

    def run() -> None:
        for _ in range(number):
            torch.nn.functional.conv2d(x, w, stride=spec.stride, padding=pad)

    with torch.no_grad():
        return time_callable(run, warmup=1, repeat=repeat)["median_ms"] / number


def main(argv=None) -> int:
    from tvmprune.runtime_threads import use_usable_cores

    use_usable_cores()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small subset (< 2 min)")
    ap.add_argument("--json", help="write records to this file")
    ap.add_argument("--tuning-log", help="MetaSchedule log dir (TODO: records not applied yet)")
    ap.add_argument("--target", default="x86")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--densities", default="0.5,0.3,0.2,0.1,0.05")
    ap.add_argument("--ns", default="4,8,16")
    ap.add_argument("--layers", default="", help="comma-separated layer names (default: all)")
    ap.add_argument("--no-csr", action="store_true")
    ap.add_argument("--kernels", default="1xN,1xN-spatial,csr",
                    help="comma-separated kernels to time: 1xN, 1xN-spatial, csr")
    args = ap.parse_args(argv)

    import torch

    from tvmprune.measure.kernel import compile_kernel
    from tvmprune.target import get_target, with_cores

    torch.set_num_threads(args.threads)
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    target = with_cores(get_target(args.target), args.threads)

    densities = [float(d) for d in args.densities.split(",")]
    ns = [int(n) for n in args.ns.split(",")]
    layers = [l for group in LAYERS.values() for l in group]
    if args.quick:
        layers = [l for l in layers if l[0] in QUICK_LAYERS]
        densities = [0.3, 0.2, 0.1]
        ns = [16]
    if args.layers:
        want = set(args.layers.split(","))
        layers = [l for l in layers if l[0] in want]
    number, repeat = (5, 5) if args.quick else (10, 7)
    if args.tuning_log:
        print(f"note: --tuning-log {args.tuning_log}: applying tuned records is a TODO; timing default schedules")

    want_k = set(args.kernels.split(","))
    if args.no_csr:
        want_k.discard("csr")
    rng = np.random.default_rng(0)
    records = []
    hdr = f"{'layer':<18}{'kernel':<12}{'N':>3}{'dens':>6}{'sparse ms':>10}{'tvm dense':>10}{'torch':>8}{'vs tvm':>8}{'vs torch':>9}{'vs best':>8}"
    print(hdr)
    print("-" * len(hdr))
    for name, cin, cout, hw, k, stride in layers:
        spec = make_spec(cin, cout, hw, k, stride)
        dense_w = rng.standard_normal(spec.weight_shape).astype(np.float32)
        dinst = build_layer_kernel("dense", spec, dense_w, 0, target)
        dlib = compile_kernel(dinst, target)
        for d in densities:
            kernels = [(kd, n) for n in ns for kd in ("1xN", "1xN-spatial") if kd in want_k]
            kernels += [("csr", 1)] if "csr" in want_k else []
            for kind, n in kernels:
                w = sparse_weight(spec, d, n, rng)
                inst = build_layer_kernel(kind, spec, w, n, target)
                lib = compile_kernel(inst, target)
                # interleave: dense, sparse, torch, twice; keep the best median of each
                tvm_d, sp, th = [], [], []
                for _ in range(2):
                    tvm_d.append(time_tvm(dinst, dlib, spec, rng, number, repeat))
                    sp.append(time_tvm(inst, lib, spec, rng, number, repeat))
                    th.append(time_torch(spec, dense_w, number, repeat))
                tvm_ms, sp_ms, th_ms = min(tvm_d), min(sp), min(th)
                best = min(tvm_ms, th_ms)
                rec = {
                    "layer": name, "kernel": kind, "N": n, "density": d, "sparse_ms": sp_ms,
                    "tvm_dense_ms": tvm_ms, "torch_ms": th_ms, "speedup_vs_tvm_dense": tvm_ms / sp_ms,
                    "speedup_vs_torch": th_ms / sp_ms, "speedup_vs_best_dense": best / sp_ms,
                    "shape": [cin, cout, hw, k, stride], "schedule": "default", "threads": args.threads,
                    "target": target.name,
                }
                records.append(rec)
                print(f"{name:<18}{kind:<12}{n:>3}{d:>6.2f}{sp_ms:>10.3f}{tvm_ms:>10.3f}{th_ms:>8.3f}"
                      f"{tvm_ms / sp_ms:>8.2f}{th_ms / sp_ms:>9.2f}{best / sp_ms:>8.2f}", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(records, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
