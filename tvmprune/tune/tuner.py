"""The tuning loop: MetaSchedule per task, resumable, with a progress display and a report.

For each task (kernel), in order:

1. its default-schedule time is measured once (kept in ``tasks.json``, so resuming does not
   re-measure), which also sizes the task's share of the trial budget: half of ``--trials``
   is spread evenly, half in proportion to ``weight x default time`` (where the model spends
   its time);
2. records already in the database count against the task's trials; a task that reached
   its count, or whose search space is exhausted, is skipped;
3. otherwise MetaSchedule tunes it (``ScheduleFn`` over the kernel's space, evolutionary
   search, XGBoost cost model) for the remaining trials; every measured candidate is
   appended to the JSON database when its batch returns;
4. the best record is replayed and timed again, next to the default schedule.

``time_budget`` stops the search (between measurement batches) when it is spent; what was
measured stays in the database and the next run continues from there.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
import sys
import tempfile
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import TuningError
from ..target import NamedTarget
from . import db as dbm
from .measure import (RemoteSpec, make_builder, make_runner, point_to, save_consts, time_kernel,
                      time_side_by_side)
from .apply import family_key
from .logs import metaschedule_logs
from .tasks import TuneTask, space_generator

Log = Callable[[str], None]


@dataclass
class TaskResult:
    """Outcome of one task (times in seconds; None where not measured)."""

    key: str
    name: str
    desc: str
    weight: int
    trials: int  # records in the database for this task
    target_trials: int
    default_s: float | None = None
    tuned_s: float | None = None  # best record, re-timed
    best_record_s: float | None = None  # as measured during tuning
    skipped: str = ""  # why no tuning was done in this run
    new_trials: int = 0

    @property
    def speedup(self) -> float | None:
        if self.default_s and self.tuned_s:
            return self.default_s / self.tuned_s
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key, "name": self.name, "desc": self.desc, "weight": self.weight, "trials": self.trials,
            "target_trials": self.target_trials, "new_trials": self.new_trials,
            "default_ms": None if self.default_s is None else self.default_s * 1e3,
            "tuned_ms": None if self.tuned_s is None else self.tuned_s * 1e3,
            "speedup": self.speedup, "skipped": self.skipped,
        }


@dataclass
class TuneReport:
    tasks: list[TaskResult] = field(default_factory=list)
    wall_s: float = 0.0
    new_trials: int = 0
    log_dir: str = ""
    emulated: bool = False
    model_default_ms: float | None = None
    model_tuned_ms: float | None = None


@contextlib.contextmanager
def _no_tensor_intrin():
    """``TuneContext`` imports ``tvm.s_tir.tensor_intrin`` (20-40 s here) only to register
    tensor intrinsics for tensorizing schedule rules, which our spaces do not use. Stand in
    an empty module while the contexts are made, unless it is already imported."""
    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        yield
        return
    sys.modules[name] = types.ModuleType(name)
    try:
        yield
    finally:
        if isinstance(sys.modules.get(name), types.ModuleType) and not hasattr(sys.modules[name], "__file__"):
            del sys.modules[name]


@contextlib.contextmanager
def _interrupt_guard():
    """Remember a Ctrl-C: inside MetaSchedule's C++ loop it surfaces as a generic RuntimeError."""
    import signal
    import threading

    state = {"flag": False}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    old = signal.getsignal(signal.SIGINT)

    def on_int(signum: int, frame: Any) -> None:
        state["flag"] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_int)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, old)


def allocate_trials(total: int, tasks: list[TuneTask], default_s: dict[str, float], minimum: int = 4) -> dict[str, int]:
    """Split ``total`` trials: half evenly, half by ``weight x default time`` (at least ``minimum``)."""
    if not tasks:
        return {}
    cost = {t.key: t.weight * max(default_s.get(t.key) or 0.0, 1e-9) for t in tasks}
    s = sum(cost.values())
    out = {}
    for t in tasks:
        share = 0.5 * total / len(tasks) + 0.5 * total * cost[t.key] / s
        out[t.key] = max(minimum, int(round(share)))
    return out


def _make_progress_callback(state: dict[str, Any]) -> Any:
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    @derived_object
    class Progress(PyMeasureCallback):
        """Prints one line per measured batch; stops the task when the time budget is spent."""

        def apply(self, task_scheduler: Any, task_id: int, measure_candidates: Any, builder_results: Any,
                  runner_results: Any) -> None:
            if not runner_results:
                return
            n_ok = 0
            for br, rr in zip(builder_results, runner_results):
                secs = [float(x) for x in (rr.run_secs or [])] if rr.error_msg is None and br.error_msg is None else []
                state["new"] += 1
                if secs:
                    n_ok += 1
                    m = sum(secs) / len(secs)
                    if m < state["best"]:
                        state["best"] = m
                elif state["first_error"] is None:
                    state["first_error"] = (br.error_msg or rr.error_msg or "")
            state["failed"] += len(runner_results) - n_ok
            best = state["best"]
            dflt = state.get("default")
            rel = f" ({dflt / best:.2f}x default)" if dflt and best < math.inf else ""
            state["log"](
                f"    [{state['label']}] trials {state['done0'] + state['new']}/{state['target']}"
                f"  batch ok {n_ok}/{len(runner_results)}"
                f"  best {best * 1e3:.4f} ms{rel}{' (EMULATED, not a real time)' if state.get('emulated') else ''}"
                f"  elapsed {time.time() - state['t0']:.0f} s"
            )
            if state["deadline"] is not None and time.time() > state["deadline"]:
                state["stopped"] = "time budget spent"
                task_scheduler.terminate_task(task_id)

    return Progress()


def _replay_best(task: TuneTask, contents: dbm.LogContents, shash: str) -> Any:
    from .apply import apply_record

    rec = contents.best(shash)
    if rec is None:
        return None, None
    return apply_record(task.kernel, contents, rec), rec


def tune_tasks(
    tasks: list[TuneTask],
    target: NamedTarget,
    log_dir: "str | os.PathLike[str]",
    trials: int,
    *,
    time_budget: float | None = None,
    remote: RemoteSpec | None = None,
    trials_per_iter: int = 16,
    population: int = 64,
    seed: int = 0,
    builder_timeout: float = 300.0,
    measure_tuned: bool = True,
    emulated: bool = False,
    log: Log = print,
) -> TuneReport:
    """Tune ``tasks`` for ``target``, appending to the database in ``log_dir``.

    Args:
        tasks: from :func:`.tasks.extract_tasks`.
        target: compilation target (measured locally, or on ``remote``'s RPC board).
        log_dir: database directory (created; resumed when it holds records).
        trials: total measurement budget over all tasks (existing records count).
        time_budget: seconds after which the search stops (between batches).
        remote: RPC tracker / key; None or a non-RPC spec measures on this machine.
        trials_per_iter: candidates built and measured per batch.
        population: evolutionary search population size.
        measure_tuned: re-time the best record of every task next to the default schedule.
        emulated: the board is emulated: progress lines say their times mean nothing.

    Raises:
        TuningError: no tasks, unusable log directory, or nothing could be measured.
    """
    import tvm
    from tvm.s_tir import meta_schedule as ms

    if not tasks:
        raise TuningError("nothing to tune: the model has no conv / linear kernels")
    remote = remote or RemoteSpec()
    if not remote.is_rpc and not target.runs_on_host:
        raise TuningError(
            f"target {target.name} ({target.arch}) cannot run on this machine: give --tracker HOST:PORT --key KEY "
            "of an RPC board (see docs/tuning.md; scripts/emulated_board.py starts an emulated aarch64 one)"
        )
    d = Path(log_dir)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TuningError(f"cannot create the tuning log directory {d}: {e.strerror}") from None
    t_start = time.time()
    deadline = None if not time_budget else t_start + float(time_budget)
    report = TuneReport(log_dir=str(d), emulated=emulated)
    with dbm.LogLock(d), metaschedule_logs(d) as ms_logs:
        contents = dbm.sanitize(d, log=log)
        manifest = dbm.read_manifest(d)
        mt = manifest.setdefault("tasks", {})
        manifest["target"] = target.to_json()
        # 1. default-schedule times (once per task; kept for resume)
        log(f"{len(tasks)} tuning task(s) for {target.name}; log {d}")
        for i, t in enumerate(tasks):
            e = mt.setdefault(t.key, {})
            e.update({"name": t.name, "desc": t.desc, "weight": t.weight, "kind": t.kernel.kind,
                      "shash": t.shash(), "layers": t.layers[:8],
                      "family": family_key(t.kernel)})
            if e.get("default_s") is None:
                try:
                    e["default_s"] = time_kernel(t.kernel.scheduled(), t.kernel.consts, target, remote)
                except Exception as ex:  # noqa: BLE001 - reported; the task is still tuned
                    log(f"  warning: could not time the default schedule of {t.desc}: {str(ex).splitlines()[-1]}")
                    e["default_s"] = None
        dbm.write_manifest(d, manifest)
        alloc = allocate_trials(trials, tasks, {k: (v.get("default_s") or 0.0) for k, v in mt.items()})
        total_default = sum((mt[t.key].get("default_s") or 0) * t.weight for t in tasks)
        if total_default:
            log(f"  default schedules: {total_default * 1e3:.2f} ms per inference over these kernels"
                + (" (EMULATED board: not a real time)" if emulated else ""))
        database = dbm.open_database(d)
        builder = make_builder(target.cross_compiler, timeout_sec=builder_timeout)
        # the runner workers read each task's real consts from here (removed at the end)
        cons_dir = Path(tempfile.mkdtemp(prefix="tvmprune_consts_"))
        pointer = str(cons_dir / "current")
        runner = None
        # the most expensive kernels first, so that a time budget is spent where it matters
        tasks = sorted(tasks, key=lambda t: -(mt[t.key].get("default_s") or 0.0) * t.weight)
        for i, t in enumerate(tasks):
            e = mt[t.key]
            shash = e["shash"]
            done0 = contents.count(shash)
            target_n = alloc[t.key]
            e["target_trials"] = target_n
            label = f"{i + 1}/{len(tasks)} {t.desc}"
            res = TaskResult(key=t.key, name=t.name, desc=t.desc, weight=t.weight, trials=done0,
                             target_trials=target_n, default_s=e.get("default_s"))
            report.tasks.append(res)
            remaining = target_n - done0
            if remaining <= 0:
                res.skipped = f"done ({done0} records)"
                log(f"  task {label}: {res.skipped}, skipped")
                continue
            if e.get("exhausted_at") is not None and done0 >= int(e["exhausted_at"]):
                res.skipped = f"search space exhausted at {done0} records"
                log(f"  task {label}: {res.skipped}, skipped")
                continue
            if deadline is not None and time.time() > deadline:
                res.skipped = "time budget spent"
                log(f"  task {label}: {res.skipped}, skipped")
                continue
            log(f"  task {label} (x{t.weight}): {remaining} trial(s) to go"
                + (f", {done0} in the log" if done0 else "")
                + (f"; default {e['default_s'] * 1e3:.4f} ms" if e.get("default_s") else ""))
            point_to(pointer, save_consts(t.kernel.consts, str(cons_dir / t.key)))
            if runner is None:
                runner = make_runner(pointer, remote)
            state = {"label": f"{i + 1}/{len(tasks)}", "done0": done0, "target": target_n, "new": 0, "failed": 0,
                     "best": (contents.best(shash).mean_sec if contents.best(shash) else math.inf),
                     "default": e.get("default_s"), "t0": time.time(), "deadline": deadline, "stopped": "",
                     "first_error": None, "log": log, "emulated": emulated}
            with _no_tensor_intrin(), contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                ctx = ms.TuneContext(
                    mod=t.module(),
                    target=target.tvm_target,
                    space_generator=space_generator(t.kernel),
                    search_strategy=ms.search_strategy.EvolutionarySearch(
                        population_size=population, init_measured_ratio=0.2, init_min_unmeasured=min(population, 16),
                        genetic_num_iters=3, max_fail_count=5),
                    task_name=t.name,
                    rand_state=seed + i,
                    num_threads=max(1, target.cores if target.runs_on_host else (os.cpu_count() or 1)),
                    logger=ms_logs.task_logger(t.name),
                ).clone()
            cost_model = ms.cost_model.XGBModel(
                extractor=ms.feature_extractor.PerStoreFeature(), adaptive_training=True,
                num_tuning_cores=max(1, os.cpu_count() or 1))
            callbacks = list(ms.measure_callback.MeasureCallback.create("default")) + [
                _make_progress_callback(state)]
            with _interrupt_guard() as interrupted:
                try:
                    ms.task_scheduler.RoundRobin().tune(
                        tasks=[ctx], task_weights=[1.0], max_trials_global=remaining,
                        max_trials_per_task=remaining, num_trials_per_iter=min(trials_per_iter, remaining),
                        builder=builder, runner=runner, measure_callbacks=callbacks, database=database,
                        cost_model=cost_model,
                    )
                except BaseException as ex:  # noqa: BLE001 - Ctrl-C arrives as a TVM RuntimeError
                    kept = len(dbm.read_log(d, validate=False).records)
                    if interrupted["flag"] or isinstance(ex, KeyboardInterrupt):
                        log(f"interrupted: {kept} record(s) kept in {d}; run the same command again to resume")
                        raise KeyboardInterrupt from None
                    msg = str(ex).strip().splitlines()
                    raise TuningError(f"MetaSchedule failed on task {t.desc}: {msg[-1] if msg else type(ex).__name__}"
                                      f" ({kept} record(s) kept in {d}; details in {d}/logs)") from ex
            res.new_trials = state["new"]
            report.new_trials += state["new"]
            contents = dbm.read_log(d, validate=False)
            res.trials = contents.count(shash)
            if state["stopped"]:
                res.skipped = state["stopped"]
            elif res.trials < target_n:
                # the search found no new candidates: remember, so resuming does not retry forever
                e["exhausted_at"] = res.trials
            if state["failed"] and state["failed"] == state["new"]:
                log(f"    warning: every candidate of this task failed; first error: "
                    f"{(state['first_error'] or '').strip().splitlines()[-1:] or ['?']}")
            dbm.write_manifest(d, manifest)
        if runner is not None:
            with contextlib.suppress(Exception):
                runner.pool.shutdown()
        shutil.rmtree(cons_dir, ignore_errors=True)
        # 4. re-time the best record of every task next to its default schedule
        contents = dbm.read_log(d, validate=False)
        if measure_tuned:
            log("  timing default vs tuned schedules side by side ...")
        for t, res in zip(tasks, report.tasks):
            e = mt[t.key]
            res.trials = contents.count(e["shash"])
            best = contents.best(e["shash"])
            if best is None:
                continue
            res.best_record_s = best.mean_sec
            if not measure_tuned:
                res.tuned_s = best.mean_sec
                continue
            try:
                func, _ = _replay_best(t, contents, e["shash"])
                if func is not None:
                    # default and tuned side by side, alternately: this is the reported comparison
                    res.default_s, res.tuned_s = time_side_by_side([t.kernel.scheduled(), func], t.kernel.consts,
                                                                   target, remote)
            except Exception as ex:  # noqa: BLE001
                log(f"  warning: could not replay the best record of {t.desc}: {str(ex).splitlines()[-1]}")
            e["tuned_s"] = res.tuned_s
            e["default_vs_tuned_s"] = res.default_s
        dbm.write_manifest(d, manifest)
    report.wall_s = time.time() - t_start
    if not any(r.trials for r in report.tasks):
        raise TuningError(f"no candidate could be measured; see the MetaSchedule logs in {d}/logs")
    return report


def format_report(report: TuneReport) -> str:
    """Per-task table: default vs tuned time, speedup, trials; then totals."""
    from ..bench import format_table

    rows = []
    tot_d = tot_t = 0.0
    for r in report.tasks:
        rows.append({
            "task": r.desc, "w": r.weight, "trials": f"{r.trials}/{r.target_trials}",
            "default": f"{r.default_s * 1e3:.4f}" if r.default_s else "-",
            "tuned": f"{r.tuned_s * 1e3:.4f}" if r.tuned_s else "-",
            "speedup": f"{r.speedup:.2f}x" if r.speedup else "-",
            "note": r.skipped,
        })
        if r.default_s:
            tot_d += r.default_s * r.weight
            tot_t += min(r.tuned_s or r.default_s, r.default_s) * r.weight
    lines = [format_table(rows, [("task", "task"), ("w", "layers"), ("trials", "trials"), ("default", "default ms"),
                                 ("tuned", "tuned ms"), ("speedup", "speedup"), ("note", "note")])]
    if tot_d:
        lines.append(f"kernels, weighted by layers: default {tot_d * 1e3:.3f} ms -> tuned {tot_t * 1e3:.3f} ms "
                     f"({tot_d / tot_t:.2f}x)")
    lines.append(f"{report.new_trials} new trial(s) in {report.wall_s:.0f} s; database: {report.log_dir}")
    if report.model_default_ms is not None and report.model_tuned_ms is not None:
        lines.append(f"end to end: default {report.model_default_ms:.3f} ms -> tuned {report.model_tuned_ms:.3f} ms "
                     f"({report.model_default_ms / report.model_tuned_ms:.2f}x)")
    if report.emulated:
        lines.append("NOTE: measured on an emulated board: these times say nothing about real hardware")
    return "\n".join(lines)
