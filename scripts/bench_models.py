#!/usr/bin/env python
"""Benchmark whole models: tvmprune next to ONNX Runtime, OpenVINO, DeepSparse and PyTorch, on the same weights.

For each model (default resnet18, resnet50, mobilenet_v2, vgg16) and each pattern (``dense`` plus
``--patterns``) this prunes the PyTorch model once, compiles it with tvmprune (``dense``: every layer on
the dense kernels; patterns: the ``--formats`` planner, default ``auto``), exports the *same* pruned
model to ONNX for each peer engine, and times every candidate of the model in interleaved rounds in
one run (``--threads`` threads each, batch 1). The peers run in their own processes (their pins clash
with torch's): ``bash scripts/install_peers.sh`` installs them under ``~/.cache/tvmprune/peers/``;
the benchmark says which are missing.

"Best engine" of a pattern is the fastest of the peers and PyTorch on that pattern's weights; the
headline ratio is best engine ÷ tvmprune (> 1: tvmprune is faster). tvmprune's own dense build is a
second reference (``x vs own dense``). Every candidate is checked once against the pruned PyTorch
model on a random input (BatchNorm statistics randomised so outputs are O(1)); a row over ``--rtol``
is marked NUMERICS FAIL and gets no ratio.

``--per-layer`` also times each conv / linear kernel of the tvmprune builds alone next to the dense
kernel of the same layer and shows, from inside the whole model (VM instrument hook), how the time
splits into kernels, the other ops and the VM.

Usage::

    bash scripts/install_peers.sh
    python scripts/bench_models.py --models resnet50 --patterns 1x16@0.8,unstructured@0.9 --json out.json
    python scripts/bench_models.py --models efficientnet_b0 --patterns dense --per-layer
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
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


@dataclass
class Candidate:
    """One runner of one model and pattern, with what was checked about it."""

    runner: Any
    rel_err: float
    numerics_ok: bool
    formats: dict[str, int] = field(default_factory=dict)
    compile_s: float | None = None
    compiled: Any = None  # tvmprune's CompiledModel (for --per-layer)


# --------------------------------------------------------------------------- candidates of one pattern


def pruned_model(name: str, pattern: str, shape: tuple[int, ...]) -> Any:
    from tvmprune.frontend.model_source import randomize_batchnorm
    from tvmprune.model_request import resolve_model

    req = resolve_model(name, shape, prune=None if pattern == "dense" else pattern)
    return randomize_batchnorm(req.model, seed=0).eval(), req.pattern


def reference_output(model: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    import torch

    x = np.random.default_rng(1).standard_normal(shape).astype("float32")
    with torch.no_grad():
        return x, model(torch.from_numpy(x)).numpy()


def tvmprune_candidate(name: str, pattern: str, label: str, model: Any, args: Any, target: Any,
                       x: np.ndarray, ref: np.ndarray) -> Candidate:
    from tvmprune.compiler import compile_model
    from tvmprune.measure.runners import TvmRunner, max_rel_err
    from tvmprune.plan.layer import formats_summary
    from tvmprune.plan.planners import PLANNERS
    from tvmprune.tune.apply import schedule_source_for

    t0 = time.time()
    planner = PLANNERS["dense" if pattern == "dense" else args.formats]
    src = schedule_source_for(None, target, use_shipped=not args.no_shipped_schedules, log=None)
    cm = compile_model(model, args.input_shape, target, planner=planner, schedule_source=src,
                       model_spec=name, pattern=label)
    compile_s = time.time() - t0
    err = max_rel_err(cm.run(x), ref)
    if not args.per_layer:
        cm.relax_mod = None
        for p in cm.plans:  # free the weight copies; only the executable is needed to time
            p.kernel = None
    fm = formats_summary(cm.plans)
    log(f"{name} {pattern}: compiled in {compile_s:.1f} s; layers {fm}; rel err {err:.1e}")
    return Candidate(TvmRunner(cm, pattern, args.input_shape, args.warmup), err, err <= args.rtol, fm,
                     round(compile_s, 1), cm if args.per_layer else None)


def peer_candidates(pattern: str, model: Any, peers: list[Any], args: Any, workdir: str, x: np.ndarray,
                    ref: np.ndarray, failures: list[dict[str, Any]], name: str) -> list[Candidate]:
    from tvmprune.measure.side_by_side import peer_runs

    runs, failed = peer_runs(peers, model, pattern, args.input_shape, args.threads, workdir, args.warmup, x, ref)
    for engine, why in failed:  # one engine failing on one model is a row, not the end of the benchmark
        log(f"{name} {pattern}: {engine} failed: {why}")
        failures.append({"model": name, "pattern": pattern, "runtime": engine, "error": why})
    return [Candidate(r, err, err <= args.rtol) for r, err in runs]


def pattern_candidates(name: str, pattern: str, args: Any, target: Any, peers: list[Any], workdir: str,
                       failures: list[dict[str, Any]]) -> list[Candidate]:
    """tvmprune, PyTorch and every peer on the weights of ``name`` pruned with ``pattern``."""
    from tvmprune.measure.runners import TorchRunner

    t0 = time.time()
    try:
        model, label = pruned_model(name, pattern, args.input_shape)
        log(f"{name} {pattern}: pruned in {time.time() - t0:.1f} s")
        x, ref = reference_output(model, args.input_shape)  # one check input for every engine
        cands = [tvmprune_candidate(name, pattern, label, model, args, target, x, ref)]
    except Exception as e:  # report and go on with the other patterns
        msg = f"{type(e).__name__}: {e}"
        log(f"{name} {pattern}: FAILED: {msg}")
        failures.append({"model": name, "pattern": pattern, "runtime": "tvmprune", "error": msg})
        return []
    cands.append(Candidate(TorchRunner(model, pattern, args.input_shape, args.warmup), 0.0, True))
    cands += peer_candidates(pattern, model, peers, args, workdir, x, ref, failures, name)
    gc.collect()
    return cands


# --------------------------------------------------------------------------- records


def records_of(name: str, cands: list[Candidate], stats: list[dict[str, float]], args: Any) -> list[dict[str, Any]]:
    """One record per candidate, with the best engine of its pattern and the ratios."""
    recs = []
    for c, s in zip(cands, stats):
        recs.append({"model": name, "pattern": c.runner.pattern, "runtime": c.runner.runtime,
                     "version": getattr(c.runner, "version", None), "input_shape": list(args.input_shape),
                     "threads": args.threads, **s, "rel_err": c.rel_err, "numerics_ok": c.numerics_ok,
                     "formats": c.formats, "compile_s": c.compile_s})
    own_dense = next((r["median_ms"] for r in recs if r["runtime"] == "tvmprune" and r["pattern"] == "dense"
                      and r["numerics_ok"]), None)
    for pat in {r["pattern"] for r in recs}:
        engines = [r for r in recs if r["pattern"] == pat and r["runtime"] != "tvmprune" and r["numerics_ok"]]
        best = min(engines, key=lambda r: r["median_ms"], default=None)
        for r in recs:
            if r["pattern"] != pat:
                continue
            r["best_engine"] = best["runtime"] if best else None
            r["best_engine_ms"] = best["median_ms"] if best else None
            ok = r["numerics_ok"] and best is not None
            r["best_engine_over_this"] = best["median_ms"] / r["median_ms"] if ok else None
            r["own_dense_over_this"] = own_dense / r["median_ms"] if own_dense and r["numerics_ok"] else None
    return recs


def bench_model(name: str, patterns: list[str], args: Any, target: Any, peers: list[Any]) -> tuple[list, list]:
    failures: list[dict[str, Any]] = []
    cands: list[Candidate] = []
    with tempfile.TemporaryDirectory(prefix="tvmprune-bench-") as workdir:
        for pat in ["dense"] + [p for p in patterns if p != "dense"]:
            cands += pattern_candidates(name, pat, args, target, peers, workdir, failures)
        if not cands:
            return failures, []
        from tvmprune.measure.runners import time_interleaved

        log(f"{name}: timing {len(cands)} candidates x {args.repeat} runs in {args.rounds} interleaved rounds ...")
        stats = time_interleaved([c.runner for c in cands], args.repeat, args.rounds)
        recs = records_of(name, cands, stats, args)
        layer_reports = []
        if args.per_layer:
            from bench_model_layers import per_layer  # noqa: E402 - sibling script module

            for c, r in zip(cands, recs):
                if c.compiled is not None:
                    layer_reports.append(per_layer(name, r["pattern"], c.compiled, r["median_ms"], target, args.repeat))
        for c in cands:
            c.runner.close()
    gc.collect()
    return recs + failures, layer_reports


# --------------------------------------------------------------------------- tables


def print_runs(records: list[dict[str, Any]]) -> None:
    """Every candidate: median, spread, numerics."""
    from tvmprune.reports.tables import format_table

    rows = [{**r, "err": f"{r['rel_err']:.1e}", "status": "ok" if r["numerics_ok"] else "NUMERICS FAIL",
             "fm": ",".join(f"{k}:{v}" for k, v in r["formats"].items())} for r in records if "error" not in r]
    print(format_table(rows, [("model", "model"), ("pattern", "pattern"), ("runtime", "engine"),
                              ("median_ms", "median ms"), ("spread_ms", "IQR ms"), ("min_ms", "min ms"),
                              ("err", "rel err"), ("status", "numerics"), ("fm", "tvmprune layer formats")]))


def print_summary(records: list[dict[str, Any]], engines: list[str]) -> None:
    """One row per model and pattern: every engine's median ms, the best engine, best ÷ tvmprune."""
    from tvmprune.reports.tables import format_table

    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        if "error" in r:
            continue
        row = rows.setdefault((r["model"], r["pattern"]), {"model": r["model"], "pattern": r["pattern"]})
        row[r["runtime"]] = r["median_ms"] if r["numerics_ok"] else float("nan")
        if r["runtime"] == "tvmprune":
            row.update(best=r["best_engine"], ratio=r["best_engine_over_this"], own=r["own_dense_over_this"])
    cols = [("model", "model"), ("pattern", "pattern"), ("tvmprune", "tvmprune ms")]
    cols += [(e, f"{e} ms") for e in engines + ["pytorch"]]
    cols += [("best", "best engine"), ("ratio", "best engine ÷ tvmprune"), ("own", "x vs own dense")]
    print(format_table(list(rows.values()), cols))


def parse_peer_pythons(items: list[str]) -> dict[str, str]:
    from tvmprune.measure.peers import engine_name

    out = {}
    for it in items:
        if "=" not in it:
            raise SystemExit(f"--peer-python wants ENGINE=PATH, got {it!r}")
        e, p = it.split("=", 1)
        out[engine_name(e)] = p
    return out


def find_peers(args: Any) -> tuple[list[Any], dict[str, str]]:
    from tvmprune.measure.peers import PeerEngine, engine_name, find_engine

    found, missing = [], {}
    names = [] if args.peers in ("", "none") else [engine_name(e) for e in args.peers.split(",") if e.strip()]
    for e in names:
        r = find_engine(e, parse_peer_pythons(args.peer_python))
        if isinstance(r, PeerEngine):
            found.append(r)
        else:
            missing[e] = r
    return found, missing


def parse_args(argv: list[str] | None) -> Any:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma list of torchvision names (default: %(default)s)")
    ap.add_argument("--patterns", default=",".join(PATTERNS),
                    help="comma list of pruning patterns next to dense (default: %(default)s)")
    ap.add_argument("--input-shape", default="1x3x224x224")
    ap.add_argument("--repeat", type=int, default=20, help="timed runs per candidate (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=0,
                    help="interleaved timing rounds (default: blocks of 4 runs per candidate and round)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="threads of every engine")
    ap.add_argument("--target", default="x86")
    ap.add_argument("--formats", default="auto", help="tvmprune planner for the pruned patterns (auto, sparse)")
    ap.add_argument("--no-shipped-schedules", action="store_true", help="default schedules only")
    ap.add_argument("--peers", default="onnxruntime,openvino,deepsparse",
                    help="peer engines, comma list or 'none' (default: %(default)s)")
    ap.add_argument("--peer-python", action="append", default=[], metavar="ENGINE=PATH",
                    help="the Python that has ENGINE installed (default: ~/.cache/tvmprune/peers/ENGINE)")
    ap.add_argument("--rtol", type=float, default=1e-3,
                    help="max |x - torch| / max |torch| before a row is marked NUMERICS FAIL")
    ap.add_argument("--per-layer", action="store_true",
                    help="time each kernel of the tvmprune builds alone (narrow with --models/--patterns)")
    ap.add_argument("--json", help="write the records here")
    args = ap.parse_args(argv)
    if args.repeat < 1 or args.rounds < 0:
        ap.error("--repeat must be >= 1 and --rounds >= 0")
    args.rounds = min(args.rounds or -(-args.repeat // 4), args.repeat)
    return args


def main(argv: list[str] | None = None) -> int:
    import torch

    from tvmprune.frontend.model_source import parse_input_shape
    from tvmprune.prune.pattern import parse_pattern
    from tvmprune.runtime_threads import use_usable_cores
    from tvmprune.target import get_target, with_cores

    use_usable_cores()
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.input_shape = parse_input_shape(args.input_shape)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    patterns = [parse_pattern(p).label for p in args.patterns.split(",") if p.strip()]
    target = with_cores(get_target(args.target), args.threads)
    peers, missing = find_peers(args)
    log(f"target {target.name} ({target.description}), {args.threads} threads; peers: "
        + ", ".join([f"{p.engine} {p.version}" for p in peers] + [f"{e}: MISSING" for e in missing]))
    t_start, records, layer_reports = time.time(), [], []
    for name in models:
        recs, lr = bench_model(name, patterns, args, target, peers)
        records += recs
        layer_reports += lr
        print()
        print_runs([r for r in recs if "error" not in r])
        print(flush=True)
    log(f"done in {time.time() - t_start:.0f} s")
    print("\n== best engine on the same weights vs tvmprune (median ms; ratio > 1: tvmprune faster) ==")
    print_summary(records, [p.engine for p in peers])
    errors = [r for r in records if "error" in r]
    bad = [r for r in records if "error" not in r and not r["numerics_ok"]]
    for r in errors:
        print(f"FAILED: {r['model']} {r['pattern']} ({r['runtime']}): {r['error']}")
    for r in bad:
        print(f"NUMERICS: {r['model']} {r['pattern']} ({r['runtime']}): rel err {r['rel_err']:.2e} > {args.rtol}")
    for e, why in missing.items():
        print(f"missing peer: {why}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"records": records, "per_layer": layer_reports, "missing_peers": missing,
                       "config": {"threads": args.threads, "target": target.to_json(), "repeat": args.repeat,
                                  "rounds": args.rounds, "input_shape": list(args.input_shape),
                                  "peers": {p.engine: p.version for p in peers}, "rtol": args.rtol}},
                      f, indent=2, default=float)
        log(f"wrote {args.json}")
    return 1 if errors or bad else 0


if __name__ == "__main__":
    sys.exit(main())
