#!/usr/bin/env python
"""Compiled module directories (``tvmprune compile -o DIR``) timed side by side, and where their time goes.

Every directory is loaded into this one process, checked to give the same output as the first on one
random input, and timed in interleaved rounds (only ratios are trusted on a shared machine):

* default: wall time at ``--threads`` threads (``measure.runners.time_interleaved``; median and p25);
* ``--cpu-time``: one TVM thread, the calling thread's CPU time per run, minimum and median over
  rounds: what the kernels cost, little disturbed by other processes' load.

``--profile`` adds, per directory, the time of every PrimFunc call by group (conv kernels, the other
tvmprune kernels, fused concat / elementwise ops, pools, VM builtins), from the VM instrument hook:
CPU time of the calling thread with ``--cpu-time``, wall time otherwise (the hook adds microseconds
per call).

Usage::

    tvmprune compile --model densenet121 --formats dense -o /tmp/a    # once per code version
    python scripts/ab_module_dirs.py /tmp/a /tmp/b --cpu-time --profile
    python scripts/ab_module_dirs.py /tmp/a /tmp/b --threads 2
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from typing import Any, Callable

CPU_TIME = "--cpu-time" in sys.argv
if CPU_TIME:  # the thread pool is sized when TVM starts
    os.environ["TVM_NUM_THREADS"] = "1"
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402


def op_group(symbol: str) -> str:
    """The report group of a PrimFunc / VM builtin symbol."""
    for prefix, name in (("tvmprune_dense_conv2d", "dense conv kernels"), ("tvmprune_", "other tvmprune kernels"),
                         ("vm.", "VM builtins")):
        if symbol.startswith(prefix):
            return name
    if "concat" in symbol:
        return "fused concat (+ BN + ReLU)"
    return symbol.rstrip("0123456789_")


def profile_groups(vm: Any, x: Any, runs: int, clock: Callable[[], float]) -> tuple[dict[str, float], dict[str, int]]:
    """ms per group (each symbol's minimum over ``runs``, summed) and calls per run, timed by ``clock``."""
    cur: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter = collections.Counter()
    start: dict[str, float] = {}

    def hook(func: Any, sym: str, before: bool, ret: Any, *a: Any) -> int:
        if before:
            start[sym] = clock()
        else:
            cur[sym] += clock() - start.pop(sym, clock())
            calls[sym] += 1
        return 0

    vm.set_instrument(hook)
    per_run = []
    for _ in range(runs):
        cur.clear()
        vm["main"](x)
        per_run.append(dict(cur))
    vm.set_instrument(None)
    groups: dict[str, float] = collections.defaultdict(float)
    n_calls: collections.Counter = collections.Counter()
    for sym in per_run[0]:
        groups[op_group(sym)] += min(r.get(sym, 0.0) for r in per_run) * 1e3
        n_calls[op_group(sym)] += calls[sym] // runs
    return dict(groups), dict(n_calls)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", help="module directories (model.so + meta.json)")
    ap.add_argument("--cpu-time", action="store_true", help="one thread, CPU time (see the module doc)")
    ap.add_argument("--threads", type=int, default=2, help="TVM threads of the wall-time runs")
    ap.add_argument("--repeat", type=int, default=30, help="runs per directory and repetition")
    ap.add_argument("--repetitions", type=int, default=3, help="interleaved measurements, each printed")
    ap.add_argument("--profile", action="store_true", help="per op group time of each directory")
    args = ap.parse_args(argv)
    if not CPU_TIME:
        os.environ["TVM_NUM_THREADS"] = str(args.threads)
    import tvm

    from tvmprune.build.module_dir import load_compiled
    from tvmprune.measure.runners import TvmRunner, cpu_time_rounds, random_input, time_interleaved

    mods = [load_compiled(d) for d in args.dirs]
    shape = mods[0].input_shape
    x = random_input(shape, seed=1)
    ref = mods[0].run(x)
    for d, m in zip(args.dirs, mods):
        print(f"{d}: max |out - first| = {float(np.abs(m.run(x) - ref).max()):.3g}")
    xt = tvm.runtime.tensor(x, tvm.cpu())
    for _ in range(args.repetitions):
        if CPU_TIME:
            for m in mods:
                m.vm.set_input("main", xt)
            res = cpu_time_rounds([lambda vm=m.vm: vm.invoke_stateful("main") for m in mods], args.repeat // 3)
            cells = [f"{d}: min {min(v):.2f} median {np.median(v):.2f}" for d, v in zip(args.dirs, res)]
            print("1-thread CPU ms  " + "   ".join(cells), flush=True)
        else:
            runners = [TvmRunner(m, d, shape) for m, d in zip(mods, args.dirs)]
            res = time_interleaved(runners, args.repeat, rounds=10)
            cells = [f"{d}: median {r['median_ms']:.2f} p25 {r['p25_ms']:.2f}" for d, r in zip(args.dirs, res)]
            print(f"{args.threads}-thread wall ms  " + "   ".join(cells), flush=True)
    if args.profile:
        clock = time.thread_time if CPU_TIME else time.perf_counter
        for d, m in zip(args.dirs, mods):
            groups, calls = profile_groups(m.vm, xt, 8, clock)
            print(f"{d}: {'CPU' if CPU_TIME else 'wall'} ms per group (instrumented, sum {sum(groups.values()):.2f})")
            for g, v in sorted(groups.items(), key=lambda kv: -kv[1]):
                print(f"  {v:8.2f}  x{calls[g]:<4d} {g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
