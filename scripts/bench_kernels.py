#!/usr/bin/env python
"""Benchmark the sparse conv kernels against dense TVM and PyTorch, layer by layer.

Times, in one process and side by side: the 1xN BSR conv (N in --ns; kernel ``1xN``, vector
over the N output channels), the spatially vectorised 1xN conv (kernel ``1xN-spatial``,
vector over the output width; for N below the vector lanes) and the CSR direct sparse conv
at each density, vs the same layer dense in TVM (``dense_conv2d``) and in PyTorch (``torch.nn.functional.conv2d``, NCHW,
``torch.set_num_threads(threads)``). Ratios printed are dense time / sparse time, where
"best dense" is the fastest of TVM dense, PyTorch and ONNX Runtime (when installed; its own process).
``--park`` times AlexNet conv2-5 at the densities of Park et al.'s guided pruning (CSR).

Usage::

    python scripts/bench_kernels.py --quick
    python scripts/bench_kernels.py --park
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
import tempfile

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
        ("res50_l4_1x1_in", 2048, 512, 7, 1, 1),
    ],
    "resnet18": [
        ("res18_l1_3x3", 64, 64, 56, 3, 1),
        ("res18_l2_3x3", 128, 128, 28, 3, 1),
        ("res18_l3_3x3", 256, 256, 14, 3, 1),
        ("res18_l4_3x3", 512, 512, 7, 3, 1),
        ("res18_l4_3x3_s2", 256, 512, 14, 3, 2),
    ],
    "mobilenet_v2": [
        ("mbv2_b2_project", 96, 24, 56, 1, 1),
        ("mbv2_b3_expand", 24, 144, 56, 1, 1),
        ("mbv2_b6_expand", 32, 192, 28, 1, 1),
        ("mbv2_b13_expand", 96, 576, 14, 1, 1),
        ("mbv2_b13_project", 576, 160, 7, 1, 1),
        ("mbv2_b16_expand", 160, 960, 7, 1, 1),
        ("mbv2_b16_project", 960, 320, 7, 1, 1),
    ],
    "vgg16": [
        ("vgg16_conv2_1", 64, 128, 112, 3, 1),
        ("vgg16_conv3_2", 256, 256, 56, 3, 1),
        ("vgg16_conv4_2", 512, 512, 28, 3, 1),
        ("vgg16_conv5_2", 512, 512, 14, 3, 1),
    ],
    # torchvision AlexNet conv2-5 (224x224 input)
    "alexnet": [
        ("alexnet_conv2", 64, 192, 27, 5, 1),
        ("alexnet_conv3", 192, 384, 13, 3, 1),
        ("alexnet_conv4", 384, 256, 13, 3, 1),
        ("alexnet_conv5", 256, 256, 13, 3, 1),
    ],
}
QUICK_LAYERS = ["res50_l1_3x3", "res50_l3_3x3", "res50_l3_1x1_in", "mbv2_b13_expand"]
# Park et al. (ICLR 2017), CaffeNet after guided pruning (GESL): conv2-5 sparsity 85.6 / 93.1 / 91.8 / 88.5 %
PARK_DENSITIES = {"alexnet_conv2": 0.144, "alexnet_conv3": 0.069, "alexnet_conv4": 0.082, "alexnet_conv5": 0.115}


# kernel names that force one form of the 1xN-spatial conv (``1xN-spatial`` picks by shape)
SPATIAL_FORMS = {"1xN-spatial-rows": False, "1xN-spatial-flat": True}


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

    if fmt in SPATIAL_FORMS:  # one form of the 1xN-spatial conv, forced
        from tvmprune.kernels.block_direct_conv2d import block_direct_sparse_conv2d

        return block_direct_sparse_conv2d(spec, weight, None, n, target, flat=SPATIAL_FORMS[fmt])
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


class OrtConv:
    """The same dense conv layer in ONNX Runtime (its own process, :mod:`tvmprune.measure.peers`)."""

    def __init__(self, spec: ConvSpec, weight: np.ndarray, threads: int, workdir: str) -> None:
        import torch

        from tvmprune.measure.peers import PeerRunner, export_onnx, find_engine

        peer = find_engine("onnxruntime")
        if isinstance(peer, str):
            raise RuntimeError(peer)
        conv = torch.nn.Conv2d(spec.cin, spec.cout, spec.kh, spec.stride, spec.padding[0], bias=False)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(weight))
        shape = (spec.batch, spec.cin, spec.in_h, spec.in_w)
        path = export_onnx(conv, shape, os.path.join(workdir, "conv.onnx"))
        self.runner = PeerRunner(peer, path, shape, threads, warmup=3)

    def ms(self, repeat: int) -> float:
        return float(np.median(self.runner.sample(repeat))) * 1e3

    def close(self) -> None:
        self.runner.close()


def layer_plan(args) -> list[tuple[tuple, list[float], list[str], list[int]]]:
    """(layer, densities, kernels, ns) per layer to time, from the arguments."""
    densities = [float(d) for d in args.densities.split(",")]
    ns = [int(n) for n in args.ns.split(",")]
    kernels = [k for k in args.kernels.split(",") if not (args.no_csr and k == "csr")]
    layers = [l for name, group in LAYERS.items() for l in group if name != "alexnet" or args.park]
    if args.park:  # Park's AlexNet layers at his densities, CSR (unstructured) against the best dense
        return [(l, [PARK_DENSITIES[l[0]]], ["csr"], [1]) for l in LAYERS["alexnet"]]
    if args.quick:
        layers, densities, ns = [l for l in layers if l[0] in QUICK_LAYERS], [0.3, 0.2, 0.1], [16]
    if args.layers:
        layers = [l for l in layers if l[0] in set(args.layers.split(","))]
    return [(l, densities, kernels, ns) for l in layers]


def bench_layer(layer, densities, kernels, ns, target, args, rng, number, repeat, workdir) -> list[dict]:
    """Every sparse kernel of one layer at each density, interleaved with the same layer dense
    in TVM, PyTorch and (when installed) ONNX Runtime; the best of two rounds of each."""
    from tvmprune.measure.kernel import compile_kernel

    name, cin, cout, hw, k, stride = layer
    spec = make_spec(cin, cout, hw, k, stride)
    dense_w = rng.standard_normal(spec.weight_shape).astype(np.float32)
    dinst = build_layer_kernel("dense", spec, dense_w, 0, target)
    dlib = compile_kernel(dinst, target)
    ort = None
    if not args.no_ort:
        try:
            ort = OrtConv(spec, dense_w, args.threads, workdir)
        except Exception as e:  # noqa: BLE001 - the reference is optional
            print(f"note: no ONNX Runtime reference for {name}: {e}")
    records = []
    for d in densities:
        for kind, n in [(kd, n) for n in ns for kd in ("1xN", "1xN-spatial", *SPATIAL_FORMS) if kd in kernels
                        and (SPATIAL_FORMS.get(kd) is not True or stride == 1)] + \
                [("csr", 1)] * ("csr" in kernels):
            inst = build_layer_kernel(kind, spec, sparse_weight(spec, d, n, rng), n, target)
            lib = compile_kernel(inst, target)
            tvm_d, sp, th, on = [], [], [], []
            for _ in range(2):
                tvm_d.append(time_tvm(dinst, dlib, spec, rng, number, repeat))
                sp.append(time_tvm(inst, lib, spec, rng, number, repeat))
                th.append(time_torch(spec, dense_w, number, repeat))
                if ort is not None:
                    on.append(ort.ms(repeat * number))
            tvm_ms, sp_ms, th_ms = min(tvm_d), min(sp), min(th)
            ort_ms = min(on) if on else None
            best = min(x for x in (tvm_ms, th_ms, ort_ms) if x is not None)
            records.append({
                "layer": name, "kernel": kind, "N": n, "density": d, "sparse_ms": sp_ms, "tvm_dense_ms": tvm_ms,
                "torch_ms": th_ms, "ort_ms": ort_ms, "speedup_vs_tvm_dense": tvm_ms / sp_ms,
                "speedup_vs_torch": th_ms / sp_ms, "speedup_vs_best_dense": best / sp_ms,
                "shape": [cin, cout, hw, k, stride], "schedule": "default", "threads": args.threads,
                "target": target.name})
            ort_s = f"{ort_ms:>8.3f}" if ort_ms is not None else f"{'-':>8}"
            print(f"{name:<18}{kind:<12}{n:>3}{d:>6.3f}{sp_ms:>10.3f}{tvm_ms:>10.3f}{th_ms:>8.3f}{ort_s}"
                  f"{tvm_ms / sp_ms:>8.2f}{best / sp_ms:>8.2f}", flush=True)
    if ort is not None:
        ort.close()
    return records


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
                    help="comma-separated kernels to time: 1xN, 1xN-spatial (or one of its forms: "
                         "1xN-spatial-rows, 1xN-spatial-flat), csr")
    ap.add_argument("--park", action="store_true",
                    help="AlexNet conv2-5 at the densities of Park et al.'s guided pruning, CSR vs the best dense")
    ap.add_argument("--no-ort", action="store_true", help="do not time the dense layer in ONNX Runtime")
    args = ap.parse_args(argv)

    import torch

    from tvmprune.target import get_target, with_cores

    torch.set_num_threads(args.threads)
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    target = with_cores(get_target(args.target), args.threads)

    number, repeat = (5, 5) if args.quick else (10, 7)
    if args.tuning_log:
        print(f"note: --tuning-log {args.tuning_log}: applying tuned records is a TODO; timing default schedules")
    rng = np.random.default_rng(0)
    records = []
    hdr = (f"{'layer':<18}{'kernel':<12}{'N':>3}{'dens':>6}{'sparse ms':>10}{'tvm dense':>10}{'torch':>8}"
           f"{'ort':>8}{'vs tvm':>8}{'vs best':>8}")
    print(hdr)
    print("-" * len(hdr))
    with tempfile.TemporaryDirectory(prefix="tvmprune-bench-kernels-") as workdir:
        for layer, densities, kernels, ns in layer_plan(args):
            records += bench_layer(layer, densities, kernels, ns, target, args, rng, number, repeat, workdir)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(records, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
