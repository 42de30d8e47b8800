#!/usr/bin/env python
"""Dense conv / linear kernels vs ONNX Runtime (MLAS), single layers and whole models.

Each layer is built twice in one process -- tvmprune's dense kernel (default schedule, NHWC,
bias + ReLU epilogue) and the same ``Conv2d + ReLU`` exported to ONNX for ONNX Runtime (NCHW,
the engine's own choice of layout) -- and both are timed in interleaved rounds, so that load
from other processes on the shared machine hits them alike. The ratio ``tvmprune / ORT``
(median ms, lower is better, < 1 means tvmprune wins) is what counts.

``--cpu-time`` times one thread instead (``TVM_NUM_THREADS=1``, ORT one intra-op thread) by the
calling thread's CPU time, minimum over rounds: on a loaded shared machine this measures the
kernels' work, not the scheduler's (2-thread wall times of one layer swing 2-7x there at load 5-10).

``--models`` also times whole models: ``compile --formats dense`` vs ORT on the same exported
ONNX (``tvmprune.measure.runners`` / ``peers.export_onnx``; ORT runs in this process).

Usage::

    python scripts/bench_dense_layers.py                       # every layer in LAYERS
    python scripts/bench_dense_layers.py --cpu-time --layers r50_3x3_64@56 stem_7x7s2_3-64@224 --models resnet18
    python scripts/bench_dense_layers.py --cpu-time --family grouped   # depthwise + grouped convs
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

THREADS = 1 if "--cpu-time" in sys.argv else 2  # thread pools must be sized before TVM / ORT start
os.environ["TVM_NUM_THREADS"] = str(THREADS)
os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tvmprune.measure.runners import TvmRunner, random_input, time_interleaved  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# resnet18's stride-1 3x3 layers are resnet50's (64@56 ... 512@7)
# name: (cin, cout, kernel, stride, input size) -- resnet50 / resnet18 layers, the stem, the 1x1 (and one 3x3)
# layers of convnext_tiny (cnx), densenet121 (dn) and efficientnet_b0 (eb0), and linear layers
LAYERS: dict[str, tuple[int, int, int, int, int]] = {
    "r50_3x3_64@56": (64, 64, 3, 1, 56),
    "r50_3x3_128@28": (128, 128, 3, 1, 28),
    "r50_3x3_256@14": (256, 256, 3, 1, 14),
    "r50_3x3_512@7": (512, 512, 3, 1, 7),
    "r50_1x1_64-256@56": (64, 256, 1, 1, 56),
    "r50_1x1_1024-256@14": (1024, 256, 1, 1, 14),
    "r50_1x1_2048-512@7": (2048, 512, 1, 1, 7),
    "stem_7x7s2_3-64@224": (3, 64, 7, 2, 224),
    "r18_3x3s2_64-128@56": (64, 128, 3, 2, 56),
    "r18_3x3s2_128-256@28": (128, 256, 3, 2, 28),
    "r18_3x3s2_256-512@14": (256, 512, 3, 2, 14),
    "r50_1x1s2_512-1024@28": (512, 1024, 1, 2, 28),
    "cnx_1x1_96-384@56": (96, 384, 1, 1, 56),
    "cnx_1x1_384-96@56": (384, 96, 1, 1, 56),
    "cnx_1x1_384-1536@14": (384, 1536, 1, 1, 14),
    "cnx_1x1_768-3072@7": (768, 3072, 1, 1, 7),
    "cnx_1x1_3072-768@7": (3072, 768, 1, 1, 7),
    "dn_1x1_256-128@56": (256, 128, 1, 1, 56),
    "dn_1x1_512-128@28": (512, 128, 1, 1, 28),
    "dn_1x1_1024-128@14": (1024, 128, 1, 1, 14),
    "dn_1x1_1024-128@7": (1024, 128, 1, 1, 7),
    "dn_3x3_128-32@28": (128, 32, 3, 1, 28),
    "eb0_1x1_16-96@112": (16, 96, 1, 1, 112),
    "eb0_1x1_24-144@56": (24, 144, 1, 1, 56),
    "eb0_1x1_144-24@56": (144, 24, 1, 1, 56),
    "eb0_1x1_40-240@28": (40, 240, 1, 1, 28),
    "eb0_1x1_1152-192@7": (1152, 192, 1, 1, 7),
    "eb0_1x1_320-1280@7": (320, 1280, 1, 1, 7),
    "fc_2048-1000": (2048, 1000, 0, 1, 1),
    "fc_512-1000": (512, 1000, 0, 1, 1),
}

# name: (cin, cout, kernel, stride, input size, groups) -- depthwise convs of mobilenet_v2 (mb2) and
# efficientnet_b0 (eb0), grouped 3x3 convs of regnet_x_400mf (rgx, group width 16) and resnext50_32x4d (rx50)
GROUPED_LAYERS: dict[str, tuple[int, int, int, int, int, int]] = {
    "mb2_dw3_32@112": (32, 32, 3, 1, 112, 32),
    "mb2_dw3s2_96@112": (96, 96, 3, 2, 112, 96),
    "mb2_dw3_144@56": (144, 144, 3, 1, 56, 144),
    "mb2_dw3s2_144@56": (144, 144, 3, 2, 56, 144),
    "mb2_dw3_192@28": (192, 192, 3, 1, 28, 192),
    "mb2_dw3_384@14": (384, 384, 3, 1, 14, 384),
    "mb2_dw3_576@14": (576, 576, 3, 1, 14, 576),
    "mb2_dw3_960@7": (960, 960, 3, 1, 7, 960),
    "eb0_dw5s2_144@56": (144, 144, 5, 2, 56, 144),
    "eb0_dw5_240@28": (240, 240, 5, 1, 28, 240),
    "eb0_dw3s2_240@28": (240, 240, 3, 2, 28, 240),
    "eb0_dw5_480@14": (480, 480, 5, 1, 14, 480),
    "eb0_dw5_672@14": (672, 672, 5, 1, 14, 672),
    "eb0_dw5s2_672@14": (672, 672, 5, 2, 14, 672),
    "eb0_dw5_1152@7": (1152, 1152, 5, 1, 7, 1152),
    "rgx_g3s2_32@112": (32, 32, 3, 2, 112, 2),
    "rgx_g3_32@56": (32, 32, 3, 1, 56, 2),
    "rgx_g3_64@28": (64, 64, 3, 1, 28, 4),
    "rgx_g3_160@14": (160, 160, 3, 1, 14, 10),
    "rgx_g3s2_160@28": (160, 160, 3, 2, 28, 10),
    "rgx_g3_400@7": (400, 400, 3, 1, 7, 25),
    "rx50_g3_128@56": (128, 128, 3, 1, 56, 32),
    "rx50_g3_256@28": (256, 256, 3, 1, 28, 32),
    "rx50_g3_512@14": (512, 512, 3, 1, 14, 32),
    "rx50_g3_1024@7": (1024, 1024, 3, 1, 7, 32),
}
FAMILIES = {"dense": LAYERS, "grouped": GROUPED_LAYERS}
ALL_LAYERS = {**LAYERS, **GROUPED_LAYERS}


def torch_layer(cin: int, cout: int, k: int, stride: int, groups: int = 1) -> "object":
    import torch

    torch.manual_seed(0)
    if k == 0:
        return torch.nn.Sequential(torch.nn.Linear(cin, cout)).eval()
    conv = torch.nn.Conv2d(cin, cout, k, stride, k // 2, bias=True, groups=groups)
    return torch.nn.Sequential(conv, torch.nn.ReLU()).eval()


class OrtRunner:
    """A PyTorch module exported to ONNX, in an in-process ONNX Runtime session (CPU, ``THREADS``)."""

    runtime, pattern = "onnxruntime", "dense"

    def __init__(self, model: "object", shape: tuple[int, ...]) -> None:
        import onnxruntime as ort

        from tvmprune.measure.peers import export_onnx

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = THREADS, 1
        with tempfile.TemporaryDirectory() as d:
            self.sess = ort.InferenceSession(export_onnx(model, shape, os.path.join(d, "m.onnx")), so,
                                             providers=["CPUExecutionProvider"])
        self.feed = {"x": random_input(shape)}
        for _ in range(3):
            self.call()

    def call(self) -> None:
        self.sess.run(None, self.feed)

    def sample(self, k: int) -> list[float]:
        out = []
        for _ in range(k):
            t0 = time.perf_counter()
            self.call()
            out.append(time.perf_counter() - t0)
        return out

    def close(self) -> None:
        self.sess = None


class KernelRunner:
    """One tvmprune kernel alone: one ``time_evaluator`` call per sample."""

    runtime, pattern = "tvmprune", "dense"

    def __init__(self, inst: "object", in_shape: tuple[int, ...], target: "object") -> None:
        import tvm

        from tvmprune.measure.kernel import compile_kernel, kernel_arguments

        self.lib = compile_kernel(inst, target)
        self.args = kernel_arguments(inst, in_shape, residual=False)
        self.ev = self.lib.mod.time_evaluator(inst.name, tvm.cpu(), number=1, repeat=1, min_repeat_ms=0)
        self.func = self.lib.mod[inst.name]
        for _ in range(3):
            self.ev(*self.args)

    def sample(self, k: int) -> list[float]:
        return [float(self.ev(*self.args).results[0]) for _ in range(k)]

    def call(self) -> None:
        self.func(*self.args)

    def close(self) -> None:
        self.lib = self.ev = self.func = None


def tvm_kernel(name: str, target: "object") -> tuple["object", tuple[int, ...], "object"]:
    """The tvmprune kernel of layer ``name``, its input shape and the PyTorch layer it computes."""
    from tvmprune.kernels.base import ConvSpec
    from tvmprune.kernels.dense_conv2d import dense_conv2d
    from tvmprune.kernels.dense_linear import dense_linear

    cin, cout, k, s, hw, *g = ALL_LAYERS[name]
    groups = g[0] if g else 1
    layer = torch_layer(cin, cout, k, s, groups)
    w, b = layer[0].weight.detach().numpy(), layer[0].bias.detach().numpy()
    if k == 0:
        return dense_linear(w, b, 1, None, target), (1, cin), layer
    p = k // 2
    spec = ConvSpec(1, hw, hw, cin, cout, k, k, (s, s), (p, p, p, p), groups=groups, bias=True, activation="relu")
    if 1 < groups < cin:
        from tvmprune.kernels.grouped_conv2d import grouped_conv2d

        return grouped_conv2d(spec, w, b, target), spec.in_shape, layer
    return dense_conv2d(spec, w, b, target), spec.in_shape, layer


def cpu_time_ms(calls: list, flops: int, rounds: int) -> list[float]:
    """Per callable: minimum over ``rounds`` interleaved rounds of the mean thread CPU time of one call."""
    from tvmprune.measure.runners import cpu_time_rounds

    return [min(s) for s in cpu_time_rounds(calls, rounds, per_round=max(3, int(3e8 / max(flops, 1))))]


def bench_layer(name: str, target: "object", repeat: int, rounds: int, cpu_time: bool) -> dict[str, float]:
    cin, _, k, _, hw, *_ = ALL_LAYERS[name]
    inst, in_shape, layer = tvm_kernel(name, target)
    ort_shape = (1, cin) if k == 0 else (1, cin, hw, hw)
    runners = [KernelRunner(inst, in_shape, target), OrtRunner(layer, ort_shape)]
    if cpu_time:
        tvm_ms, ort_ms = cpu_time_ms([r.call for r in runners], inst.flops, rounds)
    else:
        tvm_ms, ort_ms = (st["median_ms"] for st in time_interleaved(runners, repeat, rounds))
    rec = {"layer": name, "tvm_ms": tvm_ms, "ort_ms": ort_ms, "ratio": tvm_ms / ort_ms,
           "gflops": inst.flops / (tvm_ms * 1e6), "kernel": {k_: str(v) for k_, v in inst.info.items()}}
    log(f"{name:24s} tvmprune {rec['tvm_ms']:8.3f} ms  ORT {rec['ort_ms']:8.3f} ms  ratio {rec['ratio']:.2f}  "
        f"({rec['gflops']:.0f} GFLOP/s) {inst.info}")
    return rec


def bench_model(name: str, target: "object", size: int, repeat: int, rounds: int, cpu_time: bool) -> dict[str, float]:
    from tvmprune.compiler import compile_model
    from tvmprune.frontend.model_source import randomize_batchnorm
    from tvmprune.model_request import resolve_model
    from tvmprune.plan.planners import dense_only

    shape = (1, 3, size, size)
    model = randomize_batchnorm(resolve_model(name, shape).model, seed=0)
    cm = compile_model(model, shape, target, planner=dense_only, model_spec=name)
    runners = [TvmRunner(cm, "dense", shape), OrtRunner(model, shape)]
    if cpu_time:
        vm = runners[0].vm
        tvm_ms, ort_ms = cpu_time_ms([lambda: vm.invoke_stateful("main"), runners[1].call], int(3e9), rounds)
    else:
        tvm_ms, ort_ms = (st["median_ms"] for st in time_interleaved(runners, repeat, rounds))
    rec = {"model": name, "tvm_ms": tvm_ms, "ort_ms": ort_ms, "ratio": tvm_ms / ort_ms}
    log(f"{name:24s} tvmprune {rec['tvm_ms']:8.3f} ms  ORT {rec['ort_ms']:8.3f} ms  ratio {rec['ratio']:.2f}")
    return rec


def main(argv: list[str] | None = None) -> int:
    from tvmprune.target import get_target

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", nargs="*", default=None, help=f"subset of {', '.join(ALL_LAYERS)}")
    ap.add_argument("--family", choices=sorted(FAMILIES), default="dense",
                    help="which layer table --layers defaults to: dense convs / linears, or depthwise + grouped convs")
    ap.add_argument("--models", nargs="*", default=[], help="whole torchvision models, e.g. resnet18 resnet50")
    ap.add_argument("--size", type=int, default=224, help="model input size")
    ap.add_argument("--target", default="x86")
    ap.add_argument("--repeat", type=int, default=40, help="samples per runtime")
    ap.add_argument("--rounds", type=int, default=8, help="interleaved rounds")
    ap.add_argument("--cpu-time", action="store_true", help="1 thread, thread CPU time (load-robust)")
    ap.add_argument("--json", help="write the records here")
    a = ap.parse_args(argv)
    target = get_target(a.target)
    layers = a.layers if a.layers is not None else list(FAMILIES[a.family])
    recs = [bench_layer(n, target, a.repeat, a.rounds, a.cpu_time) for n in layers]
    recs += [bench_model(m, target, a.size, a.repeat, a.rounds, a.cpu_time) for m in a.models]
    print(f"\n| {'layer / model':24s} | tvmprune ms | ORT ms | tvmprune/ORT |\n|---|---|---|---|")
    for r in recs:
        print(f"| {r.get('layer', r.get('model')):24s} | {r['tvm_ms']:.3f} | {r['ort_ms']:.3f} | {r['ratio']:.2f} |")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(recs, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
