"""Tune the models the shipped schedules cover and write ``schedules/<target>/`` from the logs.

For each model x pattern this runs ``tvmprune tune`` (every kernel a task, ``--time-budget`` per
run, log under ``--work/<target>/<model>-<pattern>``; rerunning resumes), then keeps the best
record per workload that beat its default schedule side by side (:func:`tvmprune.tune.shipped.export_best`,
which stores that speedup with the record: ``compile`` applies a record to another sparsity of its
shape family only when it had one). Long: the default set is hours of tuning per target; run it
on a quiet machine of the target's kind::

    python scripts/ship_schedules.py --target x86-avx2                       # the full set
    python scripts/ship_schedules.py --target x86-avx512 --models resnet18 --budget 1800
    python scripts/ship_schedules.py --target x86-avx2 --models tiny_cnn --patterns dense \\
        --input-shape 1x3x32x32 --budget 60 --trials 40 --out /tmp/shipped    # a smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

MODELS = ["resnet18", "resnet50", "mobilenet_v2"]
PATTERNS = ["dense", "1x4@0.5", "1x4@0.8", "1x8@0.5", "1x8@0.8", "1x16@0.5", "1x16@0.8",
            "unstructured@0.8", "unstructured@0.9"]
#: seconds of tuning per model and pattern (resnet50 has the most distinct kernels)
BUDGET_S = {"resnet18": 1800, "resnet50": 3600, "mobilenet_v2": 1800}


def tune_argv(model: str, pattern: str, target: str, log: Path, budget: float, trials: int,
              input_shape: str | None) -> list[str]:
    """``tvmprune tune`` arguments for one model and pattern (``dense``: not pruned)."""
    argv = ["tune", "--model", model, "--target", target, "--trials", str(trials), "--time-budget", str(budget),
            "--log", str(log), "--no-e2e"]
    if pattern != "dense":
        argv += ["--prune", pattern]
    if input_shape:
        argv += ["--input-shape", input_shape]
    return argv


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", required=True, help="x86-avx2, x86-avx512, ... (writes schedules/<target>/)")
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--patterns", nargs="+", default=PATTERNS)
    p.add_argument("--budget", type=float, default=None, help="seconds per model and pattern "
                   f"(default per model: {BUDGET_S}, 1800 for others)")
    p.add_argument("--trials", type=int, default=4000, help="trial cap per model and pattern")
    p.add_argument("--input-shape", default=None, help="NCHW input shape (default the model's 1x3x224x224)")
    p.add_argument("--work", default="tuning_logs/ship", help="where the tuning logs go (resumable)")
    p.add_argument("--out", default=None, help="write here instead of schedules/<target>/")
    p.add_argument("--max", type=int, default=200, help="keep at most this many workloads")
    p.add_argument("--min-speedup", type=float, default=1.02)
    p.add_argument("--dry-run", action="store_true", help="print the tune commands, run nothing")
    args = p.parse_args(argv)

    from tvmprune.cli import main as cli_main
    from tvmprune.tune.apply import shipped_dir
    from tvmprune.tune.shipped import export_best

    logs: list[Path] = []
    t0 = time.time()
    for model in args.models:
        for pattern in args.patterns:
            log = Path(args.work) / args.target / f"{model}-{pattern}"
            budget = args.budget or BUDGET_S.get(model, 1800)
            cmd = tune_argv(model, pattern, args.target, log, budget, args.trials, args.input_shape)
            print(f"[{time.time() - t0:.0f} s] tvmprune {' '.join(cmd)}", flush=True)
            if args.dry_run:
                continue
            rc = cli_main(cmd)
            if rc != 0:
                print(f"  warning: tune of {model} {pattern} exited {rc}; its log is used as far as it got")
            if (log / "tasks.json").is_file():
                logs.append(log)
    if args.dry_run:
        return 0
    out = Path(args.out) if args.out else shipped_dir(args.target)
    n = export_best(logs, out, args.max, args.min_speedup)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"wrote {n} workload(s) from {len(logs)} log(s) to {out} ({size / 1024:.0f} KiB) in {time.time() - t0:.0f} s")
    return 0 if n else 1


if __name__ == "__main__":
    sys.exit(main())
