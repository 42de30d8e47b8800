"""Apply tuning records in ``compile``: the best record per kernel, replayed on ``kernel.func``.

Lookup, per kernel:

1. exact: the MetaSchedule workload whose structural hash (and structural equality) is the
   kernel's module -- the same layer shape and, for sparse kernels, the same number of
   nonzeros and row length;
2. similar (``family``): a record of a kernel of the same kind, block size and input /
   output shapes but another sparsity (a different pruned model of the same network, or a
   shipped schedule); its trace only decides tile sizes and unrolling, so it replays on the
   new kernel -- if the replay fails, the kernel keeps its default schedule. Only records
   that beat their own default schedule (``speedup`` >= :data:`MIN_FAMILY_SPEEDUP`, timed
   side by side when they were tuned and stored with them) are used this way, best first.

A kernel whose own record was re-timed (``tasks.json``) slower than its default schedule keeps
the default schedule (no family fallback either). Sources: ``--tuning-log DIR`` first, then the shipped ``schedules/<target>/`` database.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from ..kernels.base import KernelInstance
from ..kernels.identity import structural_hash
from ..target import NamedTarget, get_target
from . import db as dbm
from .tasks import postprocess

Log = Callable[[str], None]

def _shipped_root() -> Path:
    """Where the shipped records are: the package data folder ``tvmprune/schedules/`` of an
    installed wheel, else the repository's top-level ``schedules/`` (source checkout,
    editable install)."""
    package_data = Path(__file__).resolve().parents[1] / "schedules"
    return package_data if package_data.is_dir() else Path(__file__).resolve().parents[2] / "schedules"


SHIPPED_ROOT = _shipped_root()


def shipped_dir(target: "NamedTarget | str") -> Path:
    """``schedules/<name>/`` for a target; ``x86`` maps to its ISA (``x86-avx512`` / ``x86-avx2``)."""
    t = get_target(target)
    name = t.name
    if name in ("x86", "custom") and t.arch == "x86_64":
        name = {16: "x86-avx512", 8: "x86-avx2"}.get(t.vector_lanes, "x86")
    return SHIPPED_ROOT / name


def family_key(kernel: KernelInstance) -> str:
    """Kernels whose traces are interchangeable: kind, block size, argument count, in/out shapes."""
    from .measure import arg_info

    info = arg_info(kernel.func)
    return json.dumps([kernel.kind, kernel.info.get("n", 0), len(info), info[0][2], info[-1][2]])


def apply_record(kernel: KernelInstance, contents: dbm.LogContents, rec: dbm.Record) -> Any:
    """Replay ``rec`` on ``kernel.func`` (+ the sparse-loop postprocess); returns the PrimFunc."""
    from tvm import s_tir
    from tvm.s_tir import meta_schedule as ms

    shash, mod_json, _ = contents.workloads[rec.workload_index]
    workload = ms.database.Workload.from_json([shash, mod_json])
    record = ms.database.TuningRecord.from_json(rec.raw, workload)
    sch = s_tir.Schedule(dbm.module_of(kernel.func))
    record.trace.apply_to_schedule(sch, remove_postproc=False)
    postprocess(sch)
    return sch.mod["main"].with_attr("global_symbol", kernel.name)


#: a record is applied to another sparsity of its family only when it beat its own default by this much
MIN_FAMILY_SPEEDUP = 1.02


def recorded_speedup(entry: dict[str, Any]) -> float | None:
    """Default ÷ tuned time of a manifest entry, as re-timed side by side when it was tuned (None: not timed)."""
    if entry.get("speedup"):
        return float(entry["speedup"])
    d, tt = entry.get("default_vs_tuned_s"), entry.get("tuned_s")
    return float(d) / float(tt) if d and tt else None


class _Source:
    """Best records of one log directory, indexed by workload hash and by kernel family."""

    def __init__(self, path: Path, label: str, log: Log) -> None:
        self.path, self.label = path, label
        self.contents = dbm.read_log(path)
        for b in self.contents.bad_lines:
            log(f"warning: {label}: skipping damaged line: {b}")
        manifest = dbm.read_manifest(path)
        self.slower: set[str] = set()
        family: dict[str, list[tuple[float, str]]] = {}
        for e in manifest.get("tasks", {}).values():
            d, tt = e.get("default_vs_tuned_s") or e.get("default_s"), e.get("tuned_s")
            if d and tt and tt > d * 1.02:
                self.slower.add(e.get("shash"))
            fam, gain = e.get("family"), recorded_speedup(e)
            if fam and e.get("shash") and gain is not None and gain >= MIN_FAMILY_SPEEDUP:
                family.setdefault(fam, []).append((gain, e["shash"]))
        # the records that beat their default schedule most, first
        self.family = {f: [h for _, h in sorted(v, reverse=True)] for f, v in family.items()}

    def __len__(self) -> int:
        return len(self.contents.records)

    def lookup(self, kernel: KernelInstance, shash: str) -> tuple[Any, str] | None:
        import tvm_ffi

        if shash in self.slower:
            return None, "default"  # tuned directly and the default schedule won: keep it
        rec = self.contents.best(shash)
        if rec is not None:
            mod_json = self.contents.workloads[rec.workload_index][1]
            from tvm.s_tir import meta_schedule as ms

            wl = ms.database.Workload.from_json([shash, mod_json])
            if tvm_ffi.structural_equal(wl.mod, dbm.module_of(kernel.func)):
                return apply_record(kernel, self.contents, rec), "exact"
        for other in self.family.get(family_key(kernel), []):
            if other in self.slower:
                continue
            rec = self.contents.best(other)
            if rec is None:
                continue
            try:
                return apply_record(kernel, self.contents, rec), "similar"
            except Exception:  # noqa: BLE001 - a trace that does not fit: try the next one
                continue
        return None


def schedule_source_for(
    log_dir: "str | os.PathLike[str] | None",
    target: "NamedTarget | str",
    use_shipped: bool = True,
    log: Log | None = print,
) -> Callable[[KernelInstance, NamedTarget], Any] | None:
    """A ``compile_model(schedule_source=...)`` callable from a tuning log and/or shipped schedules.

    Args:
        log_dir: ``tvmprune tune --log`` directory, or None.
        target: the compilation target (selects the shipped database).
        use_shipped: fall back to ``schedules/<target>/``.
        log: where to say what is applied (None: silent).

    Returns:
        None when there is nothing to apply; else ``f(kernel, target) -> PrimFunc | None``.

    Raises:
        TuningError: ``log_dir`` given but missing or holding no database.
    """
    from ..errors import TuningError

    say = log or (lambda s: None)
    sources: list[_Source] = []
    if log_dir is not None:
        p = Path(log_dir)
        if not (p / dbm.RECORD_FILE).is_file() or not (p / dbm.WORKLOAD_FILE).is_file():
            raise TuningError(f"{p} is not a tuning log: it has no {dbm.WORKLOAD_FILE} / {dbm.RECORD_FILE} "
                              "(write one with `tvmprune tune --log DIR`)")
        src = _Source(p, f"tuning log {p}", say)
        say(f"  tuning log {p}: {len(src)} record(s) for {len(src.contents.workloads)} workload(s)")
        sources.append(src)
    if use_shipped:
        sd = shipped_dir(target)
        if (sd / dbm.RECORD_FILE).is_file():
            src = _Source(sd, f"shipped schedules {sd.name}", say)
            if len(src):
                sources.append(src)
                if log_dir is None:
                    say(f"  no --tuning-log: using the pre-tuned schedules shipped in schedules/{sd.name}/ "
                        f"({len(src.contents.workloads)} layer shape(s)); others keep their default schedule")
    if not sources:
        return None
    stats = {"exact": 0, "similar": 0, "default": 0}

    def source(kernel: KernelInstance, t: NamedTarget) -> Any:
        shash = structural_hash(dbm.module_of(kernel.func))
        for src in sources:
            try:
                hit = src.lookup(kernel, shash)
            except Exception as e:  # noqa: BLE001 - a record that does not replay: default schedule
                say(f"  warning: record for {kernel.name} from {src.label} did not replay "
                    f"({str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}); default schedule")
                continue
            if hit is not None:
                stats[hit[1]] = stats.get(hit[1], 0) + 1
                return hit[0]
        return None

    source.stats = stats  # type: ignore[attr-defined]
    return source
