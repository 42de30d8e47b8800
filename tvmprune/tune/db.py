"""The tuning log directory: a MetaSchedule JSON database plus tvmprune's task manifest.

Files in a log directory::

    database_workload.json        MetaSchedule workloads, one JSON line each: [shash, module]
    database_tuning_record.json   one line per measured candidate: [workload_index, record]
    tasks.json                    tvmprune's manifest: per task (workload_key) its name, shape,
                                  weight, structural hash, trial target, default time, state

MetaSchedule's ``JSONDatabase`` appends one line per measured candidate as soon as its
result arrives, so an interrupted tune loses at most the batch in flight. A killed process
can leave a truncated last line, and a hand-edited file can hold anything: before the
database is opened, :func:`sanitize` checks every line (JSON, structure, deserialisable
workload / trace), moves bad lines to ``<file>.corrupt`` and reports them; they are never
fatal.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import TuningError

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
MANIFEST_FILE = "tasks.json"


def module_of(func: Any) -> Any:
    """The IRModule a kernel is tuned as: ``{"main": func}`` (the kernel's own name kept)."""
    import tvm

    return tvm.IRModule({"main": func})


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("inf")


def _valid_secs(secs: Any) -> list[float] | None:
    if not isinstance(secs, list) or not secs:
        return None
    try:
        v = [float(s) for s in secs]
    except (TypeError, ValueError):
        return None
    if any(s <= 0 or s >= 1e9 for s in v):  # MetaSchedule writes 1e10 for failed runs
        return None
    return v


@dataclass
class Record:
    """One tuning record line."""

    workload_index: int
    raw: Any  # the JSON record: [trace, run_secs, target, args_info]
    line: str

    @property
    def run_secs(self) -> list[float] | None:
        try:
            return _valid_secs(self.raw[1])
        except (IndexError, TypeError):
            return None

    @property
    def mean_sec(self) -> float:
        s = self.run_secs
        return _mean(s) if s else float("inf")


@dataclass
class LogContents:
    """What a sanitized log directory holds."""

    workloads: list[tuple[str, Any, str]] = field(default_factory=list)  # (shash, module json, line)
    records: list[Record] = field(default_factory=list)
    bad_lines: list[str] = field(default_factory=list)  # human-readable reports

    def index_of(self, shash: str) -> list[int]:
        return [i for i, (h, _, _) in enumerate(self.workloads) if h == shash]

    def records_for(self, shash: str) -> list[Record]:
        idx = set(self.index_of(shash))
        return [r for r in self.records if r.workload_index in idx]

    def count(self, shash: str) -> int:
        return len(self.records_for(shash))

    def best(self, shash: str) -> Record | None:
        recs = [r for r in self.records_for(shash) if r.run_secs]
        return min(recs, key=lambda r: r.mean_sec) if recs else None


def _check_workload(obj: Any) -> Any:
    from tvm.s_tir import meta_schedule as ms

    if not (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], str)):
        raise ValueError("not [shash, module]")
    return ms.database.Workload.from_json(obj)


def _check_record(obj: Any, workloads: list[Any]) -> None:
    from tvm.s_tir import meta_schedule as ms

    if not (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], int) and isinstance(obj[1], list)):
        raise ValueError("not [workload_index, record]")
    if not 0 <= obj[0] < len(workloads) or workloads[obj[0]] is None:
        raise ValueError(f"workload index {obj[0]} does not exist")
    ms.database.TuningRecord.from_json(obj[1], workloads[obj[0]])


def read_log(log_dir: "str | os.PathLike[str]", validate: bool = True) -> LogContents:
    """Parse a log directory's database files, skipping (and reporting) bad lines.

    Does not modify anything (see :func:`sanitize`). Workload indices of the returned
    records refer to ``contents.workloads`` (renumbered when a workload line was dropped).
    """
    d = Path(log_dir)
    out = LogContents()
    wl_objs: list[Any] = []
    remap: dict[int, int] = {}
    wp, rp = d / WORKLOAD_FILE, d / RECORD_FILE
    if wp.is_file():
        raw_i = -1  # MetaSchedule numbers the non-empty lines of the workload file
        for n, line in enumerate(wp.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            raw_i += 1
            try:
                obj = json.loads(line)
                w = _check_workload(obj) if validate else None
            except Exception as e:  # noqa: BLE001 - any damage is reported, never fatal
                out.bad_lines.append(f"{wp.name} line {n}: {_short(e)}")
                continue
            remap[raw_i] = len(out.workloads)
            out.workloads.append((obj[0], obj[1], line))
            wl_objs.append(w)
    if rp.is_file():
        for n, line in enumerate(rp.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], int)):
                    raise ValueError("not [workload_index, record]")
                if obj[0] not in remap:
                    raise ValueError(f"refers to workload {obj[0]}, which is missing or damaged")
                idx = remap[obj[0]]
                if validate:
                    _check_record([idx, obj[1]], wl_objs)
            except Exception as e:  # noqa: BLE001
                out.bad_lines.append(f"{rp.name} line {n}: {_short(e)}")
                continue
            out.records.append(Record(idx, obj[1], json.dumps([idx, obj[1]]) if idx != obj[0] else line))
    return out


def _short(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return (s[-1] if s else type(e).__name__)[:200]


def sanitize(log_dir: "str | os.PathLike[str]", log: Callable[[str], None] = print) -> LogContents:
    """Make the database files of ``log_dir`` safe to open with ``JSONDatabase``.

    Bad lines (truncated by a kill, hand-edited, undeserialisable) are reported through
    ``log``, appended to ``<file>.corrupt`` and removed; the files are rewritten atomically
    only when something was wrong. Returns the valid contents.
    """
    d = Path(log_dir)
    contents = read_log(d)
    if not contents.bad_lines:
        return contents
    for b in contents.bad_lines:
        log(f"warning: skipping damaged tuning-log line: {b}")
    for name, lines, originals in (
        (WORKLOAD_FILE, [w[2] for w in contents.workloads], None),
        (RECORD_FILE, [r.line for r in contents.records], None),
    ):
        p = d / name
        if not p.is_file():
            continue
        old = [ln for ln in p.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
        keep = set(lines)
        dropped = [ln for ln in old if ln not in keep]
        if dropped:
            with open(d / (name + ".corrupt"), "a", encoding="utf-8") as f:
                for ln in dropped:
                    f.write(ln + "\n")
        tmp = p.with_suffix(".json.tmp")
        tmp.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
        os.replace(tmp, p)
    log(f"  {len(contents.bad_lines)} damaged line(s) moved to {d}/*.corrupt; "
        f"{len(contents.records)} valid record(s) kept")
    return contents


def open_log_dir(log_dir: "str | os.PathLike[str]") -> Path:
    """``log_dir`` as a Path, created if missing; a TuningError when it cannot be."""
    d = Path(log_dir)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TuningError(f"cannot create the tuning log directory {d}: {e.strerror}") from None
    return d


def open_database(log_dir: "str | os.PathLike[str]") -> Any:
    """MetaSchedule ``JSONDatabase`` on ``log_dir`` (call :func:`sanitize` first)."""
    from tvm.s_tir import meta_schedule as ms

    d = open_log_dir(log_dir)
    return ms.database.JSONDatabase(str(d / WORKLOAD_FILE), str(d / RECORD_FILE), allow_missing=True,
                                    module_equality="structural")


def read_manifest(log_dir: "str | os.PathLike[str]") -> dict[str, Any]:
    p = Path(log_dir) / MANIFEST_FILE
    if not p.is_file():
        return {"tasks": {}}
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(m, dict) or not isinstance(m.get("tasks"), dict):
            raise ValueError("no tasks table")
        return m
    except (ValueError, OSError) as e:
        # the manifest is a convenience; the database is the truth
        print(f"warning: {p} is damaged ({e}); rebuilding it from the database")
        return {"tasks": {}}


def write_manifest(log_dir: "str | os.PathLike[str]", manifest: dict[str, Any]) -> None:
    p = Path(log_dir) / MANIFEST_FILE
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, p)


@dataclass
class TaskEntry:
    """One task's line in ``tasks.json`` (times in seconds; None where not measured)."""

    name: str = ""
    desc: str = ""
    weight: int = 1
    kind: str = ""
    shash: str = ""
    family: str = ""
    layers: list[str] = field(default_factory=list)
    default_s: float | None = None  # the default schedule, timed once when the task is first seen
    target_trials: int = 0
    exhausted_at: int | None = None  # record count at which the search found nothing new
    tuned_s: float | None = None  # the best record, re-timed next to the default schedule
    default_vs_tuned_s: float | None = None  # the default schedule in that side-by-side timing
    speedup: float | None = None  # default_vs_tuned_s / tuned_s: what the record gained when it was tuned
    points: int | None = None  # distinct points sampled from the task's space (see tuner.SPACE_SAMPLES)
    space_complete: bool | None = None  # sampling saw the whole space (points is its size)

    @classmethod
    def from_json(cls, obj: Any) -> "TaskEntry":
        known = {k: v for k, v in (obj if isinstance(obj, dict) else {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Manifest:
    """``tasks.json``: the tasks of a log directory (by workload key) and the target they were tuned for."""

    tasks: dict[str, TaskEntry] = field(default_factory=dict)
    target: Any = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys written by other tools (kept)

    @classmethod
    def load(cls, log_dir: "str | os.PathLike[str]") -> "Manifest":
        raw = read_manifest(log_dir)
        extra = {k: v for k, v in raw.items() if k not in ("tasks", "target")}
        return cls({k: TaskEntry.from_json(v) for k, v in raw["tasks"].items()}, raw.get("target"), extra)

    def save(self, log_dir: "str | os.PathLike[str]") -> None:
        write_manifest(log_dir, {**self.extra, "target": self.target,
                                 "tasks": {k: e.to_json() for k, e in self.tasks.items()}})


class LogLock:
    """An exclusive lock on a log directory (two tunes appending to one database would interleave)."""

    def __init__(self, log_dir: "str | os.PathLike[str]") -> None:
        self.path = Path(log_dir) / ".lock"
        self.f: Any = None

    def __enter__(self) -> "LogLock":
        import fcntl

        self.f = open(self.path, "w")
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.f.close()
            raise TuningError(f"another `tvmprune tune` is writing to {self.path.parent}; wait for it or use "
                              "another --log directory") from None
        return self

    def __exit__(self, *exc: Any) -> None:
        import fcntl

        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()
