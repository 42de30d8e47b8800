#!/usr/bin/env python
"""Benchmark whole models: TVM dense and pruned (sparse) vs PyTorch and ONNX Runtime dense.

For each model (default resnet18, resnet50, mobilenet_v2, vgg16) this compiles, in one
process: the dense model with TVM (``dense_only`` planner, every conv on the dense
kernel) and each pruning pattern with TVM (default ``choose_format`` planner), and times
them next to the dense model in PyTorch (``--threads`` threads, ``OMP_WAIT_POLICY=PASSIVE``)
and in ONNX Runtime (when ``onnxruntime`` is importable; ``--threads`` intra-op threads).
All runtimes of one model are timed in interleaved rounds (``--rounds``), so that load
from other processes hits them alike; the ratios are what counts on a shared machine.

"Best dense" is the fastest of TVM dense, PyTorch and ONNX Runtime (median ms); each
pruned model's speedup is best dense / its median ms. Every compiled model is checked
once against its (pruned) PyTorch model on a random input (BatchNorm statistics are
randomised so outputs are O(1)): max |tvm - torch| / max |torch| above ``--rtol`` marks
the row ``NUMERICS FAIL`` and it gets no speedup.

``--per-layer`` also times each conv / linear kernel of every pruned model alone (its own
module, ``time_evaluator``) next to the dense kernel of the same layer, and says how the
whole-model time splits into sparse kernels, dense kernels (e.g. the first 7x7 conv),
depthwise / linear kernels and the rest (pooling, layout transposes, adds left in Relax,
VM overhead). Narrow the run with ``--models`` / ``--patterns`` for it.

Usage::

    python scripts/bench_models.py --json /tmp/bench_models.json
    python scripts/bench_models.py --models resnet50 --patterns 1x16@0.8 --per-layer
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from typing import Any

DEFAULT_THREADS = 2
for _a in sys.argv:  # thread counts must be in the environment before torch / TVM start their pools
    if _a.startswith("--threads="):
        DEFAULT_THREADS = int(_a.split("=", 1)[1])
if "--threads" in sys.argv[:-1]:
    DEFAULT_THREADS = int(sys.argv[sys.argv.index("--threads") + 1])
os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # torch's OpenMP spin-wait hurts on 2 shared cores
os.environ.setdefault("TVM_NUM_THREADS", str(DEFAULT_THREADS))

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

MODELS = ["resnet18", "resnet50", "mobilenet_v2", "vgg16"]
PATTERNS = ["unstructured@0.8", "unstructured@0.9", "1x4@0.5", "1x8@0.8", "1x16@0.8", "1x16@0.9", "filter@0.5"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- runtimes


class Runner:
    """One runtime of one model: ``sample(k)`` returns k single-run times in seconds."""

    runtime = ""
    pattern = "dense"

    def sample(self, k: int) -> list[float]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class TvmRunner(Runner):
    runtime = "tvm"

    def __init__(self, cm: Any, pattern: str, shape: tuple[int, ...], warmup: int) -> None:
        import tvm
        from tvm import relax

        self.cm, self.pattern = cm, pattern
        self.dev = tvm.cpu()
        self.vm = relax.VirtualMachine(cm.executable, self.dev)
        x = np.random.default_rng(0).standard_normal(shape).astype("float32")
        self.vm.set_input("main", tvm.runtime.tensor(x, self.dev))
        for _ in range(warmup):
            self.vm.invoke_stateful("main")
        self.ev = self.vm.time_evaluator("invoke_stateful", self.dev, number=1, repeat=1, min_repeat_ms=0)

    def sample(self, k: int) -> list[float]:
        return [float(self.ev("main").results[0]) for _ in range(k)]


class TorchRunner(Runner):
    runtime = "pytorch"

    def __init__(self, model: Any, shape: tuple[int, ...], warmup: int) -> None:
        import torch

        self.torch = torch
        self.model = model.eval()
        self.x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            for _ in range(warmup):
                self.model(self.x)

    def sample(self, k: int) -> list[float]:
        out = []
        with self.torch.no_grad():
            for _ in range(k):
                t0 = time.perf_counter()
                self.model(self.x)
                out.append(time.perf_counter() - t0)
        return out


class OrtRunner(Runner):
    runtime = "onnxruntime"

    def __init__(self, model: Any, shape: tuple[int, ...], threads: int, warmup: int) -> None:
        import onnxruntime as ort
        import torch

        x = torch.zeros(shape)
        import warnings

        with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = os.path.join(d, "model.onnx")
            try:
                torch.onnx.export(model.eval(), (x,), path, input_names=["x"], output_names=["y"], dynamo=False)
            except TypeError:  # a torch without the dynamo switch
                torch.onnx.export(model.eval(), (x,), path, input_names=["x"], output_names=["y"])
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.feed = {"x": np.random.default_rng(0).standard_normal(shape).astype("float32")}
        for _ in range(warmup):
            self.sess.run(None, self.feed)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.sess.run(None, {"x": x})[0]

    def sample(self, k: int) -> list[float]:
        out = []
        for _ in range(k):
            t0 = time.perf_counter()
            self.sess.run(None, self.feed)
            out.append(time.perf_counter() - t0)
        return out


def ort_available() -> str | None:
    """None when onnxruntime can be used, else why not."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime not installed"
    try:
        import onnx  # noqa: F401
    except ImportError:
        return "onnx not installed (torch.onnx.export needs it)"
    return None


def time_interleaved(runners: list[Runner], repeat: int, rounds: int) -> list[dict[str, float]]:
    """``repeat`` samples per runner, taken in ``rounds`` interleaved rounds."""
    from tvmprune.measure.model import summarize_ms

    samples: list[list[float]] = [[] for _ in runners]
    per = [repeat // rounds + (1 if i < repeat % rounds else 0) for i in range(rounds)]
    for k in per:
        if k == 0:
            continue
        for i, r in enumerate(runners):
            samples[i] += r.sample(k)
    out = []
    for s in samples:
        st = summarize_ms(s)
        st["p25_ms"] = float(np.percentile(np.asarray(s) * 1e3, 25))
        out.append(st)
    return out


# --------------------------------------------------------------------------- per layer


def _kernel_args(k: Any, in_shape: tuple[int, ...], residual: bool, rng: Any) -> list[Any]:
    import tvm

    dev = tvm.cpu()
    args = [tvm.runtime.tensor(rng.standard_normal(in_shape).astype("float32"), dev)]
    args += [tvm.runtime.tensor(np.ascontiguousarray(c), dev) for c in k.consts]
    if residual:
        args.append(tvm.runtime.tensor(rng.standard_normal(k.out_shape).astype("float32"), dev))
    args.append(tvm.runtime.tensor(np.zeros(k.out_shape, "float32"), dev))
    return args


def time_kernel(k: Any, in_shape: tuple[int, ...], residual: bool, target: Any, repeat: int, rng: Any) -> float:
    """Median ms of one kernel alone (its own module, default schedule)."""
    import tvm

    lib = tvm.compile(tvm.IRModule({k.name: k.scheduled()}), target=target.tvm_target)
    args = _kernel_args(k, in_shape, residual, rng)
    mod = getattr(lib, "mod", lib)
    f = mod.time_evaluator(k.name, tvm.cpu(), number=3, repeat=max(repeat // 2, 3), min_repeat_ms=10)
    f(*args)  # warm
    return float(np.median(f(*args).results)) * 1e3


def dense_reference(plan: Any, target: Any) -> Any:
    """The dense kernel of the same layer (same weight: the dense kernel does not care about zeros)."""
    info = plan.info
    if info.op == "conv2d":
        from tvmprune.kernels.dense_conv2d import dense_conv2d

        return dense_conv2d(info.spec, info.weight, info.bias, target)
    from tvmprune.kernels.dense_linear import dense_linear

    return dense_linear(info.weight, info.bias, info.batch, info.activation, target)


def profile_vm(cm: Any, shape: tuple[int, ...], runs: int) -> tuple[dict[str, float], dict[str, int], float]:
    """Per-call times inside the whole model (VM instrument): median ms per symbol over ``runs``.

    Returns (median ms per symbol, calls per run per symbol, median instrumented total ms).
    The Python hook adds a few microseconds per call, so totals read a little high.
    """
    import collections

    import tvm
    from tvm import relax

    dev = tvm.cpu()
    vm = relax.VirtualMachine(cm.executable, dev)
    x = tvm.runtime.tensor(np.random.default_rng(0).standard_normal(shape).astype("float32"), dev)
    vm["main"](x)
    cur: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter = collections.Counter()
    start: dict[str, float] = {}

    def instrument(func: Any, sym: str, before: bool, ret: Any, *a: Any) -> int:
        if before:
            start[sym] = time.perf_counter()
        else:
            cur[sym] += time.perf_counter() - start.pop(sym, time.perf_counter())
            calls[sym] += 1
        return 0

    vm.set_instrument(instrument)
    per_run: list[dict[str, float]] = []
    totals = []
    for _ in range(runs):
        cur.clear()
        t0 = time.perf_counter()
        vm["main"](x)
        totals.append(time.perf_counter() - t0)
        per_run.append(dict(cur))
    syms = {k for r in per_run for k in r}
    med = {k: float(np.median([r.get(k, 0.0) for r in per_run])) * 1e3 for k in syms}
    return med, {k: v // runs for k, v in calls.items()}, float(np.median(totals)) * 1e3


def layer_in_shape(info: Any) -> tuple[int, ...]:
    if info.op == "conv2d":
        return info.spec.in_shape
    return (info.batch, info.weight.shape[1])


def per_layer(model: str, pattern: str, cm: Any, model_ms: float, target: Any, repeat: int) -> dict[str, Any]:
    from tvmprune.reports.tables import format_table

    log(f"{model} {pattern}: timing {sum(p.kernel is not None for p in cm.plans)} kernels alone "
        "(+ dense kernel of each sparse layer)")
    rng = np.random.default_rng(0)
    prof, calls, prof_total = profile_vm(cm, cm.input_shape, max(repeat, 5))
    rows = []
    for p in cm.plans:
        info = p.info
        fmt = p.format_label
        row: dict[str, Any] = {"layer": info.name, "shape": info.shape_str if info.op else "", "fmt": fmt,
                               "density": round(info.density, 3), "gflop": info.dense_flops / 1e9 if p.kernel else None}
        if p.kernel is None:
            row.update(ms=None, dense_ms=None, speedup=None, category="relax")
            rows.append(row)
            continue
        residual = bool(info.op == "conv2d" and info.spec.residual)
        shape = layer_in_shape(info)
        ms = time_kernel(p.kernel, shape, residual, target, repeat, rng)
        if p.fmt in ("1xN", "1xN-spatial", "csr"):
            dms = time_kernel(dense_reference(p, target), shape, residual, target, repeat, rng)
            cat = "sparse " + info.op
        else:
            dms = ms
            cat = {"dense": "dense " + info.op, "depthwise": "depthwise conv"}.get(p.fmt, p.fmt)
        row.update(ms=ms, dense_ms=dms, speedup=dms / ms if ms else None, category=cat,
                   in_model_ms=prof.get(p.kernel.name))
        rows.append(row)
    print(format_table(rows, [("layer", "layer"), ("shape", "shape"), ("fmt", "format"), ("density", "density"),
                              ("gflop", "dense GFLOP"), ("ms", "kernel ms"), ("dense_ms", "dense kernel ms"),
                              ("speedup", "x vs dense"), ("in_model_ms", "in-model ms")]))
    cats: dict[str, dict[str, float]] = {}
    for r in rows:
        if r["ms"] is None:
            continue
        c = cats.setdefault(r["category"], {"ms": 0.0, "dense_ms": 0.0, "layers": 0})
        c["ms"] += r["ms"]
        c["dense_ms"] += r["dense_ms"]
        c["layers"] += 1
    kern = sum(c["ms"] for c in cats.values())
    other = model_ms - kern
    summary = [{"part": k, "layers": int(v["layers"]), "ms": v["ms"], "pct": 100 * v["ms"] / model_ms,
                "dense_ms": v["dense_ms"]} for k, v in sorted(cats.items(), key=lambda kv: -kv[1]["ms"])]
    n_relax = sum(1 for r in rows if r["ms"] is None)
    summary.append({"part": f"rest (non-conv ops, {n_relax} relax layers, VM)", "layers": n_relax, "ms": other,
                    "pct": 100 * other / model_ms, "dense_ms": other})
    summary.append({"part": "whole model (measured)", "layers": len(rows), "ms": model_ms, "pct": 100.0,
                    "dense_ms": kern_dense(cats) + other})
    print()
    print(f"{model} {pattern}: where the time goes (kernels timed alone; 'rest' = whole model - sum of kernels; "
          "'if dense' = same part with dense kernels)")
    print(format_table(summary, [("part", "part"), ("layers", "layers"), ("ms", "ms"), ("pct", "% of model"),
                                 ("dense_ms", "ms if dense")]))
    # the same split from inside the whole model (VM instrument), plus the non-kernel ops by name
    kernel_cat = {p.kernel.name: r["category"] for p, r in zip(cm.plans, rows) if p.kernel is not None}
    in_cats: dict[str, float] = {}
    other_ops: dict[str, float] = {}
    for sym, ms_ in prof.items():
        if sym in kernel_cat:
            in_cats[kernel_cat[sym]] = in_cats.get(kernel_cat[sym], 0.0) + ms_
        else:
            other_ops[sym] = ms_
    unattributed = prof_total - sum(prof.values())
    in_rows = [{"part": k, "ms": v, "pct": 100 * v / prof_total}
               for k, v in sorted(in_cats.items(), key=lambda kv: -kv[1])]
    in_rows.append({"part": "non-kernel ops (all)", "ms": sum(other_ops.values()),
                    "pct": 100 * sum(other_ops.values()) / prof_total})
    for sym, v in sorted(other_ops.items(), key=lambda kv: -kv[1])[:8]:
        in_rows.append({"part": f"  {sym} (x{calls.get(sym, 0)})", "ms": v, "pct": 100 * v / prof_total})
    in_rows.append({"part": "VM / between calls", "ms": unattributed, "pct": 100 * unattributed / prof_total})
    in_rows.append({"part": "whole model (instrumented run)", "ms": prof_total, "pct": 100.0})
    print()
    print(f"{model} {pattern}: the same split measured inside the whole model (VM instrument hook, median of "
          f"{max(repeat, 5)} runs per call)")
    print(format_table(in_rows, [("part", "part"), ("ms", "ms"), ("pct", "% of model")]))
    sparse = [r for r in rows if r.get("category", "").startswith("sparse")]
    if sparse:
        s_ms, d_ms = sum(r["ms"] for r in sparse), sum(r["dense_ms"] for r in sparse)
        s_in = sum(v for k, v in in_cats.items() if k.startswith("sparse"))
        rest = prof_total - s_in
        print(f"sparse layers alone: {s_ms:.2f} ms as sparse kernels vs {d_ms:.2f} ms as dense kernels "
              f"({d_ms / s_ms:.2f}x). Inside the model the sparse kernels take {s_in:.2f} of {prof_total:.2f} ms; "
              f"the other {rest:.2f} ms ({100 * rest / prof_total:.0f}%) bound what faster sparse kernels can give "
              f"(free sparse layers: at most {prof_total / max(rest, 1e-9):.1f}x more).")
    return {"model": model, "pattern": pattern, "model_ms": model_ms, "layers": rows, "summary": summary,
            "in_model": in_rows}


def kern_dense(cats: dict[str, dict[str, float]]) -> float:
    return sum(c["dense_ms"] for c in cats.values())


# --------------------------------------------------------------------------- main


def check_numerics(cm: Any, ref_model: Any, shape: tuple[int, ...]) -> float:
    """max |tvm - torch| / max |torch| on one random input."""
    import torch

    x = np.random.default_rng(1).standard_normal(shape).astype("float32")
    out = cm.run(x)
    with torch.no_grad():
        ref = ref_model(torch.from_numpy(x)).numpy()
    if out.shape != ref.shape:
        return float("inf")
    scale = max(float(np.abs(ref).max()), 1e-6)
    return float(np.abs(out - ref).max()) / scale


def bench_model(name: str, patterns: list[str], args: Any, target: Any, ort_reason: str | None) -> tuple[list, list]:
    import torch

    from tvmprune.compiler import compile_model
    from tvmprune.model_request import resolve_model
    from tvmprune.plan.planners import dense_only
    from tvmprune.plan.layer import formats_summary
    from tvmprune.frontend.model_source import randomize_batchnorm

    shape = args.input_shape
    records: list[dict[str, Any]] = []
    layer_reports: list[dict[str, Any]] = []
    runners: list[Runner] = []
    meta: list[dict[str, Any]] = []  # per runner: pattern, rel_err, formats, compile_s, error
    failures: list[dict[str, Any]] = []

    def add_tvm(pattern: str) -> None:
        t0 = time.time()
        try:
            req = resolve_model(name, shape, prune=None if pattern == "dense" else pattern)
            model = randomize_batchnorm(req.model, seed=0)
            log(f"{name} {pattern}: pruned in {time.time() - t0:.1f} s, compiling ...")
            t1 = time.time()
            cm = compile_model(model, shape, target, planner=dense_only if pattern == "dense" else None,
                               model_spec=name, pattern=req.pattern)
            compile_s = time.time() - t1
            err = check_numerics(cm, model, shape)
        except Exception as e:  # report and go on with the other patterns
            msg = f"{type(e).__name__}: {e}"
            log(f"{name} {pattern}: FAILED: {msg}")
            failures.append({"model": name, "pattern": pattern, "runtime": "tvm", "error": msg})
            return
        fmts = formats_summary(cm.plans)
        ok = err <= args.rtol
        log(f"{name} {pattern}: compiled in {compile_s:.1f} s; layers {fmts}; numerics rel err {err:.2e} "
            f"{'ok' if ok else 'NUMERICS FAIL'}")
        if not args.per_layer:
            cm.relax_mod = None
            for p in cm.plans:  # free the weight copies; only the executable is needed to time
                p.kernel = None
        runners.append(TvmRunner(cm, pattern, shape, args.warmup))
        meta.append({"pattern": pattern, "rel_err": err, "numerics_ok": ok, "formats": fmts,
                     "compile_s": round(compile_s, 1), "cm": cm})
        del model, req
        gc.collect()

    base = randomize_batchnorm(resolve_model(name, shape).model, seed=0)
    add_tvm("dense")
    for pat in patterns:
        if pat != "dense":
            add_tvm(pat)
    runners.append(TorchRunner(base, shape, args.warmup))
    meta.append({"pattern": "dense", "rel_err": 0.0, "numerics_ok": True, "formats": {}, "compile_s": None})
    if ort_reason is None:
        try:
            log(f"{name}: exporting to ONNX for onnxruntime ...")
            ort_r = OrtRunner(base, shape, args.threads, args.warmup)
            x = np.random.default_rng(1).standard_normal(shape).astype("float32")
            with torch.no_grad():
                ref = base(torch.from_numpy(x)).numpy()
            err = float(np.abs(ort_r.run(x) - ref).max()) / max(float(np.abs(ref).max()), 1e-6)
            runners.append(ort_r)
            meta.append({"pattern": "dense", "rel_err": err, "numerics_ok": err <= args.rtol, "formats": {},
                         "compile_s": None})
        except Exception as e:
            msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            log(f"{name}: onnxruntime failed: {msg}")
            failures.append({"model": name, "pattern": "dense", "runtime": "onnxruntime", "error": msg})

    log(f"{name}: timing {len(runners)} runtimes x {args.repeat} runs in {args.rounds} interleaved rounds ...")
    stats = time_interleaved(runners, args.repeat, args.rounds)
    dense_rows = [(s, r) for s, r, m in zip(stats, runners, meta) if r.pattern == "dense" and m["numerics_ok"]]
    best_s, best_r = min(dense_rows, key=lambda sr: sr[0]["median_ms"])
    best_ms, best_rt = best_s["median_ms"], best_r.runtime
    best_min = min(s["min_ms"] for s, _ in dense_rows)
    best_min_rt = min(dense_rows, key=lambda sr: sr[0]["min_ms"])[1].runtime
    for s, r, m in zip(stats, runners, meta):
        rec = {
            "model": name, "pattern": r.pattern, "runtime": r.runtime, "input_shape": list(shape),
            "threads": args.threads, "ms": s["median_ms"], **s,
            "best_dense_ms": best_ms, "best_dense_runtime": best_rt,
            "speedup_vs_best_dense": best_ms / s["median_ms"] if m["numerics_ok"] else None,
            "best_dense_min_ms": best_min, "best_dense_min_runtime": best_min_rt,
            "speedup_vs_best_dense_min": best_min / s["min_ms"] if m["numerics_ok"] else None,
            "rel_err": m["rel_err"], "numerics_ok": m["numerics_ok"], "formats": m["formats"],
            "compile_s": m["compile_s"],
        }
        records.append(rec)
    if args.per_layer:
        for s, r, m in zip(stats, runners, meta):
            if r.runtime == "tvm" and r.pattern != "dense":
                layer_reports.append(per_layer(name, r.pattern, m["cm"], s["median_ms"], target, args.repeat))
    for r in runners:
        r.close()
    runners.clear()
    meta.clear()
    gc.collect()
    return records + failures, layer_reports


def print_table(records: list[dict[str, Any]]) -> None:
    from tvmprune.reports.tables import format_table

    rows = []
    for r in records:
        if "error" in r:
            rows.append({"model": r["model"], "runtime": r["runtime"], "pattern": r["pattern"],
                         "status": "ERROR (see below)"})
            continue
        fm = ",".join(f"{k}:{v}" for k, v in r["formats"].items())
        rows.append({**r, "x": r["speedup_vs_best_dense"], "xmin": r.get("speedup_vs_best_dense_min"),
                     "err": f"{r['rel_err']:.1e}", "fm": fm,
                     "status": "ok" if r["numerics_ok"] else "NUMERICS FAIL"})
    print(format_table(rows, [("model", "model"), ("runtime", "runtime"), ("pattern", "pattern"),
                              ("median_ms", "median ms"), ("spread_ms", "IQR ms"), ("min_ms", "min ms"),
                              ("x", "x vs best dense"), ("best_dense_runtime", "best dense"),
                              ("xmin", "x (min ms)"), ("err", "rel err"),
                              ("status", "numerics"), ("fm", "layer formats")]))


def main(argv: list[str] | None = None) -> int:
    from tvmprune.runtime_threads import use_usable_cores

    use_usable_cores()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma list (default: %(default)s)")
    ap.add_argument("--patterns", default=",".join(PATTERNS),
                    help="comma list of pruning patterns next to dense (default: %(default)s)")
    ap.add_argument("--input-shape", default="1x3x224x224")
    ap.add_argument("--repeat", type=int, default=20, help="timed runs per runtime (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=0,
                    help="interleaved timing rounds (default: one run of each runtime per round, i.e. --repeat)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="TVM / PyTorch / ORT threads")
    ap.add_argument("--target", default="x86")
    ap.add_argument("--rtol", type=float, default=1e-3,
                    help="max |tvm - torch| / max |torch| before a row is marked NUMERICS FAIL")
    ap.add_argument("--per-layer", action="store_true",
                    help="time each kernel of every pruned model alone (narrow with --models/--patterns)")
    ap.add_argument("--no-ort", action="store_true", help="skip ONNX Runtime even when installed")
    ap.add_argument("--json", help="write the records here")
    args = ap.parse_args(argv)

    import torch

    from tvmprune.frontend.model_source import parse_input_shape
    from tvmprune.prune.pattern import parse_pattern
    from tvmprune.target import get_target, with_cores

    torch.set_num_threads(args.threads)
    args.input_shape = parse_input_shape(args.input_shape)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    patterns = [parse_pattern(p).label for p in args.patterns.split(",") if p.strip()]
    if args.repeat < 1 or args.rounds < 0:
        ap.error("--repeat must be >= 1 and --rounds >= 0")
    args.rounds = min(args.rounds or args.repeat, args.repeat)
    target = with_cores(get_target(args.target), args.threads)
    ort_reason = "--no-ort" if args.no_ort else ort_available()
    log(f"target {target.name} ({target.description}), {args.threads} threads (TVM_NUM_THREADS="
        f"{os.environ.get('TVM_NUM_THREADS')}, torch {torch.get_num_threads()}, OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY')}); onnxruntime: {ort_reason or 'yes'}")

    t_start = time.time()
    records: list[dict[str, Any]] = []
    layer_reports: list[dict[str, Any]] = []
    for name in models:
        recs, lr = bench_model(name, patterns, args, target, ort_reason)
        records += recs
        layer_reports += lr
        print()
        print_table([r for r in recs if "error" not in r])
        print(flush=True)
    log(f"done in {time.time() - t_start:.0f} s")
    print()
    print("== all models ==")
    print_table(records)
    errors = [r for r in records if "error" in r]
    bad = [r for r in records if "error" not in r and not r["numerics_ok"]]
    if errors:
        print("\nfailures:")
        for r in errors:
            print(f"  {r['model']} {r['pattern']} ({r['runtime']}): {r['error']}")
    if bad:
        print("\nnumerics failures (no speedup reported):")
        for r in bad:
            print(f"  {r['model']} {r['pattern']} ({r['runtime']}): rel err {r['rel_err']:.2e} > {args.rtol}")
    if ort_reason:
        print(f"\nONNX Runtime: {ort_reason}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"records": records, "per_layer": layer_reports,
                       "config": {"threads": args.threads, "target": target.to_json(), "repeat": args.repeat,
                                  "rounds": args.rounds, "input_shape": list(args.input_shape),
                                  "onnxruntime": ort_reason or "yes", "rtol": args.rtol}}, f, indent=2,
                      default=float)
        log(f"wrote {args.json}")
    return 1 if errors or bad else 0


if __name__ == "__main__":
    sys.exit(main())
