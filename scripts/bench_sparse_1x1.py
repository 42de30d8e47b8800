#!/usr/bin/env python
"""Why 1xN sparse 1x1 convs lose to the dense kernel: per layer, interleaved in one process.

For each 1x1 layer (mobilenet_v2 expand / project, resnet bottleneck) and density, times the
dense kernel, the 1xN BSR kernel (vector over the N output channels of a block) and the
1xN-spatial kernel (vector over output pixels, on a channel-major copy of the input), all in
the same round-robin, best of ``--rounds``. ``fixed`` is the 1xN-spatial kernel at a
near-empty weight (one nonzero block per block row): what it pays whatever the density --
the channel-major input copy, zeroing the accumulators and the NHWC epilogue that transposes
them back; ``copy`` is that input copy alone. ``--mobilenet-v2`` instead times every conv of
torchvision's mobilenet_v2 @224 alone (dense / depthwise kernel, and 1x4-spatial at
``--densities``' first value for the 1x1s) and sums them by kind: the Amdahl bound of the 1x1s. ``--asm`` prints the vector width of each kernel's FMAs (xmm = 4 lanes, ymm = 8,
zmm = 16).

Usage::

    TVM_NUM_THREADS=1 nice python scripts/bench_sparse_1x1.py --densities 0.5,0.3,0.2 --ns 4
    nice python scripts/bench_sparse_1x1.py --layers 24x144@56,96x576@14 --asm
    TVM_NUM_THREADS=1 nice python scripts/bench_sparse_1x1.py --mobilenet-v2 --densities 0.5
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from bench_kernels import build_layer_kernel, make_spec, sparse_weight  # noqa: E402

# cin x cout @ output size: mobilenet_v2 expands and projects, resnet bottleneck 1x1s
LAYERS = ("24x144@56,32x192@28,64x384@14,96x576@14,160x960@7,144x24@56,384x64@14,960x160@7,"
          "64x256@56,256x64@56,256x1024@14,1024x256@14")


def parse_layer(text: str) -> tuple[int, int, int]:
    """``"24x144@56"`` -> ``(cin, cout, hw)``."""
    chans, hw = text.split("@")
    cin, cout = chans.split("x")
    return int(cin), int(cout), int(hw)


def fma_widths(lib) -> dict[str, int]:
    """FMA instructions of a compiled kernel by register width (``x`` / ``y`` / ``z`` mm)."""
    asm = lib.mod.inspect_source("asm")
    return dict(collections.Counter(m.group(1) for m in re.finditer(r"vfmadd\w+\s+[^\n]*%([xyz])mm\d+$", asm, re.M)))


def one_block_per_row(spec) -> np.ndarray:
    """A weight with one 1xN block per block row (the kernels' fixed costs)."""
    w = np.zeros(spec.weight_shape, np.float32)
    w[:, 0] = 1.0
    return w


def channel_major_copy(spec, target):
    """The 1xN-spatial kernel's channel-major input copy alone (its TE stage and schedule, 1x1):
    ``(compiled module, its two argument tensors)``."""
    import tvm
    from tvm import te

    from tvmprune.kernels.channel_major import channel_major_geometry, channel_major_input, \
        schedule_channel_major_input

    hp, _, wx = channel_major_geometry(spec, target.vector_lanes)
    data = te.placeholder(spec.in_shape, name="data")
    xt = channel_major_input(data, spec, hp, wx)
    sch = tvm.s_tir.Schedule(te.create_prim_func([data, xt]))
    schedule_channel_major_input(sch, spec.cin, target.vector_lanes, vector_channels=True)
    args = [tvm.runtime.tensor(np.zeros(spec.in_shape, np.float32)),
            tvm.runtime.tensor(np.zeros([int(x) for x in xt.shape], np.float32))]
    return tvm.compile(sch.mod, target=target.tvm_target), args


def bench_layer(layer, densities, ns, target, rounds: int, asm: bool, rng) -> None:
    import tvm

    from tvmprune.measure.kernel import compile_kernel, time_compiled

    cin, cout, hw = layer
    spec = make_spec(cin, cout, hw, 1, 1)
    kernels = {"dense": build_layer_kernel("dense", spec, rng.standard_normal(spec.weight_shape).astype(np.float32),
                                           0, target)}
    for n in ns:
        kernels[f"fixed 1x{n}-sp"] = build_layer_kernel("1xN-spatial", spec, one_block_per_row(spec), n, target)
        for d in densities:
            w = sparse_weight(spec, d, n, rng)
            for kind in ("1xN", "1xN-spatial"):
                kernels[f"1x{n}{kind[3:]}@{d}"] = build_layer_kernel(kind, spec, w, n, target)
    libs = {k: compile_kernel(v, target) for k, v in kernels.items()}
    copy_lib, copy_args = channel_major_copy(spec, target)
    copy_ev = copy_lib.mod.time_evaluator("main", tvm.cpu(), number=5, repeat=5, min_repeat_ms=20)
    times: dict[str, list[float]] = {k: [] for k in kernels}
    times["copy of 1xN-sp"] = []
    for _ in range(rounds):
        for k, inst in kernels.items():
            times[k].append(time_compiled(libs[k], inst, spec.in_shape, number=5, repeat=5))
        times["copy of 1xN-sp"].append(float(np.median(copy_ev(*copy_args).results)) * 1e3)
    dense = min(times["dense"])
    cells = [f"{k} {min(v) * 1e3:.0f}us ({dense / min(v):.2f}x)" for k, v in times.items() if k != "dense"]
    print(f"{cin}->{cout}@{hw}: dense {dense * 1e3:.0f}us | " + " | ".join(cells), flush=True)
    if asm:
        print("   FMAs by register width: " + ", ".join(f"{k}: {fma_widths(libs[k])}" for k in libs
                                                        if not k.startswith("fixed")), flush=True)


def mobilenet_v2_convs() -> list:
    """:class:`ConvSpec` of every conv of torchvision's mobilenet_v2 at 224x224 (forward hooks)."""
    import torch
    import torchvision

    from tvmprune.kernels.base import ConvSpec

    model, specs = torchvision.models.mobilenet_v2().eval(), []

    def hook(mod, inp, _out):
        k, s, p = mod.kernel_size[0], mod.stride[0], mod.padding[0]
        specs.append(ConvSpec(1, inp[0].shape[2], inp[0].shape[3], mod.in_channels, mod.out_channels, k, k,
                              (s, s), (p, p, p, p), groups=mod.groups))

    for mod in model.modules():
        if isinstance(mod, torch.nn.Conv2d):
            mod.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    return specs


def bench_mobilenet_v2(density: float, target, rounds: int, rng) -> None:
    """Each conv alone, dense vs 1x4-spatial (1x1s), summed by kind (stem, depthwise, 1x1 @ size)."""
    from tvmprune.kernels.block_direct_conv2d import block_direct_sparse_conv2d
    from tvmprune.kernels.dense_conv2d import dense_conv2d
    from tvmprune.measure.kernel import compile_kernel, time_compiled

    dense_sum: dict[str, float] = collections.defaultdict(float)
    best_sum: dict[str, float] = collections.defaultdict(float)
    for spec in mobilenet_v2_convs():
        w = rng.standard_normal(spec.weight_shape).astype(np.float32)
        insts = [dense_conv2d(spec, w, None, target)]
        if spec.kh == 1 and spec.groups == 1:
            insts.append(block_direct_sparse_conv2d(spec, sparse_weight(spec, density, 4, rng), None, 4, target))
        libs = [compile_kernel(i, target) for i in insts]
        times = [min(time_compiled(lib, i, spec.in_shape, number=3, repeat=3) for _ in range(rounds))
                 for i, lib in zip(insts, libs)]
        kind = "depthwise" if spec.groups > 1 else f"{spec.kh}x{spec.kw} @{spec.out_h}"
        dense_sum[kind] += times[0]
        best_sum[kind] += min(times)
    total, best = sum(dense_sum.values()), sum(best_sum.values())
    for kind in dense_sum:
        print(f"{kind:<12} dense {dense_sum[kind] * 1e3:7.0f}us ({dense_sum[kind] / total:4.0%})  better of dense / "
              f"1x4-spatial@{density}: {best_sum[kind] * 1e3:7.0f}us")
    print(f"all convs: dense {total * 1e3:.0f}us, better of the two per 1x1 layer {best * 1e3:.0f}us ({total / best:.2f}x)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", default=LAYERS, help="comma-separated CINxCOUT@HW (1x1, stride 1)")
    ap.add_argument("--densities", default="0.5,0.3,0.2")
    ap.add_argument("--ns", default="4,8")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--asm", action="store_true", help="print the FMA register widths of each kernel")
    ap.add_argument("--mobilenet-v2", action="store_true", help="every mobilenet_v2 conv, summed by kind")
    args = ap.parse_args(argv)

    from tvmprune.target import get_target, with_cores

    threads = int(os.environ.get("TVM_NUM_THREADS", "1"))
    os.environ["TVM_NUM_THREADS"] = str(threads)
    target = with_cores(get_target("x86"), threads)
    rng = np.random.default_rng(0)
    if args.mobilenet_v2:
        bench_mobilenet_v2(float(args.densities.split(",")[0]), target, args.rounds, rng)
        return 0
    print(f"threads {threads}; ratios are dense time / kernel time (> 1: faster than dense)")
    for text in args.layers.split(","):
        bench_layer(parse_layer(text), [float(d) for d in args.densities.split(",")],
                    [int(n) for n in args.ns.split(",")], target, args.rounds, args.asm, rng)
    return 0


if __name__ == "__main__":
    sys.exit(main())
