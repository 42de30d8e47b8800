"""A/B of the search's mutator sets on two resnet18 kernels. Arms:

- ``before``: the tuner as it was: MetaSchedule's stock pair (MutateTileSize 0.9 + MutateUnroll 0.1),
  XGBoost's 100 random-score warm-up samples, batches of ``min(16, trials)``;
- ``stock``: the stock pair with :mod:`tvmprune.tune.search_settings` (model steers from batch 2);
- ``categorical``: :func:`tvmprune.tune.mutators.mutator_probs` with the search settings (the tuner now).

Each (kernel, seed, arm) gets its own database and the same trial count; the arms of a seed run
one after the other. Then every arm's best record is replayed and all of them, with the default
schedule, are timed side by side in this one process (alternating, best of the rounds), so load
swings hit them alike. Prints and writes JSON: per kernel, per seed, per arm the best time found
during tuning, its re-timed time and the best-so-far after each batch.

    PYTHONPATH=$PWD nice python scripts/ab_mutators.py --trials 64 --seeds 0 1 --out /tmp/ab
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def _kernels(target: Any) -> dict[str, Any]:
    """resnet18's layer1 3x3 conv as 1x4-spatial at density 0.2 and its dense 7x7 stem (x86 NHWC)."""
    from tvmprune.kernels import ConvSpec, block_direct_sparse_conv2d
    from tvmprune.kernels.dense_conv2d import dense_conv2d

    rng = np.random.default_rng(0)
    conv = ConvSpec(1, 56, 56, 64, 64, 3, 3, (1, 1), (1, 1, 1, 1), bias=True, activation="relu")
    w = rng.standard_normal(conv.weight_shape).astype(np.float32)
    mask = rng.random((conv.cout // 4, conv.cin, 3, 3)) < 0.2
    w = (w * np.repeat(mask, 4, axis=0)).astype(np.float32)
    stem = ConvSpec(1, 224, 224, 3, 64, 7, 7, (2, 2), (3, 3, 3, 3), bias=True, activation="relu")
    ws = rng.standard_normal(stem.weight_shape).astype(np.float32)
    return {
        "conv3x3 64->64 @56 1x4-spatial d=0.20": block_direct_sparse_conv2d(conv, w, rng.standard_normal(64)
                                                                            .astype(np.float32), 4, target),
        "stem 3->64 7x7/2 @224 dense": dense_conv2d(stem, ws, rng.standard_normal(64).astype(np.float32), target),
    }


def _stock_probs(trace: Any) -> dict[Any, float]:
    from tvm.s_tir import meta_schedule as ms

    return {ms.mutator.MutateTileSize(): 0.9, ms.mutator.MutateUnroll(): 0.1}


def _patch(arm: str) -> dict[tuple[Any, str], Any]:
    """Module attributes to stand in for ``arm`` -> their real values (to restore)."""
    from tvmprune.tune import mutators, search_settings

    swaps: dict[tuple[Any, str], Any] = {}
    if arm in ("before", "stock"):
        swaps[(mutators, "mutator_probs")] = _stock_probs
    if arm == "before":
        swaps[(search_settings, "batch_size")] = lambda per_iter, remaining: min(per_iter, remaining)
        swaps[(search_settings, "warmup_samples")] = lambda batch: 100
    real = {k: getattr(*k) for k in swaps}
    for (mod, name), v in swaps.items():
        setattr(mod, name, v)
    return real


def _tune_arm(kernel: Any, desc: str, arm: str, seed: int, trials: int, target: Any, log_dir: Path) -> dict:
    from tvmprune.tune import db as dbm
    from tvmprune.tune.tasks import TuneTask
    from tvmprune.tune.tuner import tune_tasks

    real = _patch(arm)
    try:
        task = TuneTask(kernel.workload_key, kernel, 1, [desc], desc)
        rep = tune_tasks([task], target, log_dir, trials, seed=seed, measure_tuned=False, quiet=True,
                         log=lambda s: None, bar=False)
    finally:
        for (mod, name), v in real.items():
            setattr(mod, name, v)
    recs = dbm.read_log(log_dir, validate=False).records
    curve, best = [], math.inf
    for i, r in enumerate(recs):
        if r.run_secs:
            best = min(best, r.mean_sec)
        if (i + 1) % 16 == 0 or i + 1 == len(recs):
            curve.append(best * 1e3)
    return {"records": len(recs), "wall_s": rep.wall_s, "best_ms": best * 1e3, "curve_ms": curve}


def _retime(kernel: Any, dirs: list[Path], target: Any, rounds: int = 5) -> list[float]:
    """Default schedule + each directory's best record, timed side by side (ms)."""
    from tvmprune.kernels.identity import structural_hash
    from tvmprune.tune import db as dbm
    from tvmprune.tune.apply import apply_record
    from tvmprune.tune.measure import time_side_by_side

    shash = structural_hash(dbm.module_of(kernel.func))
    funcs = [kernel.scheduled()]
    for d in dirs:
        c = dbm.read_log(d, validate=False)
        funcs.append(apply_record(kernel, c, c.best(shash)))
    return [s * 1e3 for s in time_side_by_side(funcs, kernel.consts, target, rounds=rounds)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--target", default="x86-avx2")
    ap.add_argument("--arms", nargs="+", default=["before", "stock", "categorical"],
                    choices=["before", "stock", "categorical"])
    ap.add_argument("--only", default="", help="substring of the kernel description to run only those")
    ap.add_argument("--out", type=Path, default=Path("/tmp/ab_mutators"))
    ap.add_argument("--rounds", type=int, default=5, help="side-by-side rounds of the re-timing (best of them)")
    ap.add_argument("--retime-only", action="store_true", help="re-time the databases already in --out")
    a = ap.parse_args()
    from tvmprune.target import get_target

    target = get_target(a.target)
    result: dict[str, Any] = {}
    for desc, kernel in _kernels(target).items():
        if a.only not in desc:
            continue
        runs, dirs = {}, []
        for seed in a.seeds:
            for arm in a.arms:
                d = a.out / f"{kernel.name}_{arm}_s{seed}"
                if a.retime_only:
                    runs[f"{arm}/s{seed}"] = {}
                else:
                    runs[f"{arm}/s{seed}"] = _tune_arm(kernel, desc, arm, seed, a.trials, target, d)
                    print(desc, arm, seed, json.dumps(runs[f"{arm}/s{seed}"]), flush=True)
                dirs.append(d)
        times = _retime(kernel, dirs, target, a.rounds)
        result[desc] = {"default_ms": times[0], "runs": runs,
                        "retimed_ms": dict(zip(runs, times[1:]))}
        print(desc, "re-timed side by side (ms):", json.dumps(result[desc]["retimed_ms"]),
              f"default {times[0]:.4f}", flush=True)
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / ("retime.json" if a.retime_only else "ab.json")).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
