"""Build the shipped schedule databases (``schedules/<target>/``) from tuning logs.

``compile`` falls back to these records when no ``--tuning-log`` is given. They come from
real tuning runs on a machine of the target's kind; only records that beat the default
schedule when re-timed are kept, one (the best) per workload, so the database stays small::

    python -m tvmprune.tune.shipped tuning_logs/resnet50-1x16@0.8-x86 --target x86-avx512 [--max N]

Sparse kernels are matched by family (kind, block size, input / output shapes, see
:func:`tvmprune.tune.apply.family_key`), dense ones exactly.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import db as dbm
from .apply import recorded_speedup, shipped_dir


def export_best(log_dirs: list[Path], out_dir: Path, max_workloads: int = 40, min_speedup: float = 1.02) -> int:
    """Append the best record per workload of ``log_dirs`` to the database in ``out_dir``.

    Returns the number of workloads written. Workloads already in ``out_dir`` are replaced
    only by a faster record.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = dbm.read_log(out_dir)
    old_manifest = dbm.read_manifest(out_dir)
    chosen: dict[str, tuple[float, dbm.LogContents, dbm.Record, dict]] = {}
    for shash, _, _ in existing.workloads:
        rec = existing.best(shash)
        entry = next((e for e in old_manifest["tasks"].values() if e.get("shash") == shash), {})
        if rec is not None:
            chosen[shash] = (rec.mean_sec, existing, rec, entry)
    for d in log_dirs:
        contents = dbm.read_log(d)
        manifest = dbm.read_manifest(d)
        for entry in manifest["tasks"].values():
            shash = entry.get("shash")
            dflt, tuned = entry.get("default_vs_tuned_s") or entry.get("default_s"), entry.get("tuned_s")
            if not shash or not dflt or not tuned or dflt / tuned < min_speedup:
                continue
            rec = contents.best(shash)
            if rec is None:
                continue
            if shash not in chosen or rec.mean_sec < chosen[shash][0]:
                chosen[shash] = (rec.mean_sec, contents, rec, entry)
    # keep the workloads with the largest absolute saving
    def saving(entry: dict) -> float:
        dflt = entry.get("default_vs_tuned_s") or entry.get("default_s") or 0.0
        return (dflt - (entry.get("tuned_s") or dflt)) * max(1, entry.get("weight") or 1)

    ranked = sorted(chosen.items(), key=lambda kv: -saving(kv[1][3]))[:max_workloads]
    wl_lines, rec_lines, tasks = [], [], {}
    for i, (shash, (_, contents, rec, entry)) in enumerate(ranked):
        wl_lines.append(contents.workloads[rec.workload_index][2])
        rec_lines.append(json.dumps([i, rec.raw]))
        e = {k: entry.get(k) for k in ("name", "desc", "kind", "shash", "family", "default_s", "default_vs_tuned_s",
                                         "tuned_s", "weight")}
        e["speedup"] = recorded_speedup(entry)  # what the record gained when it was tuned (family use needs it)
        tasks[entry.get("name") or shash] = e
    (out_dir / dbm.WORKLOAD_FILE).write_text("".join(x + "\n" for x in wl_lines), encoding="utf-8")
    (out_dir / dbm.RECORD_FILE).write_text("".join(x + "\n" for x in rec_lines), encoding="utf-8")
    dbm.write_manifest(out_dir, {"tasks": tasks, "source": [Path(d).name for d in log_dirs]})
    return len(ranked)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logs", nargs="+", help="tuning log directories")
    p.add_argument("--target", required=True, help="target name whose schedules/<target>/ to write")
    p.add_argument("--max", type=int, default=40, help="keep at most this many workloads")
    p.add_argument("--min-speedup", type=float, default=1.02, help="keep records at least this much faster than "
                   "the default schedule (timed side by side)")
    args = p.parse_args(argv)
    out = shipped_dir(args.target)
    n = export_best([Path(x) for x in args.logs], out, args.max, args.min_speedup)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"wrote {n} workload(s) to {out} ({size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
