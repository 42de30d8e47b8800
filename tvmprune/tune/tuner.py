"""The tuning loop: MetaSchedule per task, resumable, with a progress display and a report.

Every conv / linear kernel of the model is a task (:func:`.tasks.extract_tasks`; layers with the
same ``workload_key`` share one task and its measurements, weight = their number). In order:

1. each task's default-schedule time is measured once and its space's size sampled (both kept
   in ``tasks.json``, so resuming does not redo them);
2. ``--trials`` are allotted by estimated gain (:mod:`.allot`: weight x default time x how much
   the space can offer), and tasks run most expensive first;
3. records already in the database count against a task's trials; a task that reached its
   count, or whose search space is exhausted, is skipped -- an exhausted task gives its unused
   trials to the tasks after it;
4. otherwise MetaSchedule tunes it (``ScheduleFn`` over the kernel's space with the mutators of
   :mod:`.mutators`, evolutionary search, XGBoost cost model steering from the second batch on,
   batches sized by :mod:`.search_settings`); every measured candidate is appended to the JSON
   database when its batch returns;
5. every task's best record is replayed and timed again, next to the default schedule.

``time_budget`` bounds the whole call (:mod:`.budget`: the search stops early enough for step
5 and the caller's reserve); what was measured stays in the database and the next run
continues from there. The display is :mod:`.console`; the best-so-far curve goes to
``curve.json`` / ``curve.png`` (:mod:`.curve`).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import BoardLostError, TuningError
from ..target import NamedTarget
from . import db as dbm
from . import search_settings
from .allot import TaskCost, allot, give_back
from .apply import family_key
from .budget import TimeBudget
from .console import TuneConsole, stderr_to_file
from .curve import CURVE_PNG, BestCurve, plot_curve
from .interrupt import InterruptGuard
from .logs import metaschedule_logs
from .measure import RemoteSpec
from .measurer import Measurer
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
    """What one tuning run did (JSON-serialisable through :meth:`to_json`; times in ms where named so)."""

    tasks: list[TaskResult] = field(default_factory=list)
    wall_s: float = 0.0
    new_trials: int = 0
    log_dir: str = ""
    emulated: bool = False
    model_default_ms: float | None = None
    model_tuned_ms: float | None = None
    time_budget_s: float | None = None
    curve_json: str = ""
    curve_png: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"tasks": [r.to_json() for r in self.tasks], "wall_s": self.wall_s, "new_trials": self.new_trials,
                "log_dir": self.log_dir, "emulated": self.emulated, "model_default_ms": self.model_default_ms,
                "model_tuned_ms": self.model_tuned_ms, "time_budget_s": self.time_budget_s,
                "curve_json": self.curve_json, "curve_png": self.curve_png}


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


def allocate_trials(total: int, tasks: list[TuneTask], default_s: dict[str, float], minimum: int = 4) -> dict[str, int]:
    """Split ``total`` trials by ``weight x default time`` (spaces assumed large; see :func:`.allot.allot`)."""
    return allot(total, [TaskCost(t.key, t.weight, default_s.get(t.key), 10**6, False) for t in tasks], minimum)


#: draws of a task's space when its size is estimated for the allotment
SPACE_SAMPLES = 32


@dataclass
class TuneSettings:
    """Search settings shared by all tasks of one run."""

    trials_per_iter: int = 16
    population: int = 64
    seed: int = 0
    builder_timeout: float = 300.0
    measure_tuned: bool = True
    emulated: bool = False
    deadline: float | None = None  # time.time() by which the whole tune_tasks call ends
    reserve_s: float = 0.0  # kept back from the deadline for the caller's work after tuning
    quiet: bool = False  # no progress bar, no per-task lines


@dataclass
class TaskProgress:
    """What the progress callback knows and counts while one task is searched (times in seconds)."""

    key: str
    label: str
    done0: int  # records of this task before this run
    target: int  # the task's trial target
    default_s: float | None
    best_s: float = math.inf
    remaining: int = 0  # trials asked of MetaSchedule in this run (it ends the task itself at that count)
    new: int = 0  # candidates that came back this run (measured or failed)
    failed: int = 0
    unmeasured: int = 0  # lost with a board: not recorded, measured again by a rerun
    first_error: str | None = None
    stopped: str = ""  # why the task was ended early
    t0: float = field(default_factory=time.time)
    t_batch: float = field(default_factory=time.time)  # when the last batch came back

    def line(self, desc: str, weight: int, emulated: bool) -> str:
        """The task's one line when it ends."""
        rel = f" ({self.default_s / self.best_s:.2f}x default)" if self.default_s and self.best_s < math.inf else ""
        best = f"best {self.best_s * 1e3:.4f} ms" if self.best_s < math.inf else "nothing measured"
        before = f", {self.done0} in the log" if self.done0 else ""
        stop = f"; {self.stopped}" if self.stopped else ""
        return (f"  task {self.label} {desc} (x{weight}): trials {self.done0 + self.new}/{self.target}{before}, "
                f"{self.failed} failed, {best}{rel}{' (EMULATED, not a real time)' if emulated else ''}"
                f", {time.time() - self.t0:.0f} s{stop}")


def _count_batch(progress: TaskProgress, builder_results: Any, runner_results: Any) -> int:
    """Count a batch into ``progress``; returns how many candidates came back (measured or failed)."""
    from .board_runner import UNMEASURED

    n_ok = n_back = 0
    for br, rr in zip(builder_results, runner_results):
        if rr.error_msg and str(rr.error_msg).startswith(UNMEASURED):
            progress.unmeasured += 1
            continue
        n_back += 1
        secs = [float(x) for x in (rr.run_secs or [])] if rr.error_msg is None and br.error_msg is None else []
        progress.new += 1
        if secs:
            n_ok += 1
            progress.best_s = min(progress.best_s, sum(secs) / len(secs))
        elif progress.first_error is None:
            progress.first_error = str(br.error_msg or rr.error_msg or "")
    progress.failed += n_back - n_ok
    return n_back


def _make_progress_callback(progress: TaskProgress, env: "_Run") -> Any:
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    @derived_object
    class Progress(PyMeasureCallback):
        """Moves the display and the curve per measured batch; ends the task when the next batch
        would not fit the time budget, on an interrupt, or when the boards are lost."""

        def apply(self, task_scheduler: Any, task_id: int, measure_candidates: Any, builder_results: Any,
                  runner_results: Any) -> None:
            if progress.stopped:  # already ended; a batch still in flight came back
                return
            why = env.stop_reason()
            if why:
                progress.stopped = why
                if progress.new + progress.unmeasured < progress.remaining:
                    task_scheduler.terminate_task(task_id)
                return
            if not runner_results:
                return
            n_back = _count_batch(progress, builder_results, runner_results)
            now = time.time()
            env.budget.note_batch(now - progress.t_batch, len(runner_results))
            progress.t_batch = now
            env.console.batch(n_back, progress.default_s, progress.best_s)
            env.curve.batch(progress.key, n_back, progress.done0 + progress.new, progress.best_s)
            if not env.budget.may_start_batch():
                progress.stopped = "time budget spent"
                if progress.new + progress.unmeasured < progress.remaining:  # else MetaSchedule ends it itself
                    task_scheduler.terminate_task(task_id)

    return Progress()


def _tune_context(task: TuneTask, index: int, target: NamedTarget, logger: Any, settings: TuneSettings) -> Any:
    from tvm.s_tir import meta_schedule as ms

    with _no_tensor_intrin(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        ctx = ms.TuneContext(
            mod=task.module(),
            target=target.tvm_target,
            space_generator=space_generator(task.kernel),
            search_strategy=ms.search_strategy.EvolutionarySearch(
                population_size=settings.population, init_measured_ratio=0.2,
                init_min_unmeasured=min(settings.population, 16), genetic_num_iters=3, max_fail_count=5),
            task_name=task.name,
            rand_state=settings.seed + index,
            num_threads=max(1, target.cores if target.runs_on_host else (os.cpu_count() or 1)),
            logger=logger,
        ).clone()
    return ctx


def _search(task: TuneTask, index: int, remaining: int, progress: TaskProgress, env: "_Run") -> None:
    """MetaSchedule on one task for ``remaining`` trials; records go to ``env.database``."""
    from tvm.s_tir import meta_schedule as ms

    ctx = _tune_context(task, index, env.target, env.ms_logs.task_logger(task.name), env.settings)
    runner = env.measurer.runner_for(task, env.manifest.tasks[task.key])
    per_iter = env.budget.batch_size(search_settings.batch_size(env.settings.trials_per_iter, remaining))
    cost_model = ms.cost_model.XGBModel(extractor=ms.feature_extractor.PerStoreFeature(), adaptive_training=True,
                                        num_tuning_cores=max(1, os.cpu_count() or 1),
                                        num_warmup_samples=search_settings.warmup_samples(per_iter))
    from .board_runner import make_keep_measured

    callbacks = [make_keep_measured(list(ms.measure_callback.MeasureCallback.create("default")),
                                    lambda: env.guard.interrupted),
                 _make_progress_callback(progress, env)]
    progress.t_batch = time.time()
    with env.guard.deferred():
        try:
            ms.task_scheduler.RoundRobin().tune(
                tasks=[ctx], task_weights=[1.0], max_trials_global=remaining, max_trials_per_task=remaining,
                num_trials_per_iter=per_iter, builder=env.measurer.builder,
                runner=runner, measure_callbacks=callbacks, database=env.database, cost_model=cost_model)
        except BaseException as ex:  # noqa: BLE001 - Ctrl-C can arrive as a TVM RuntimeError
            if env.guard.interrupted or isinstance(ex, KeyboardInterrupt):
                raise KeyboardInterrupt from None
            if progress.stopped and "is_terminated" in str(ex) and not env.measurer.lost:
                return  # we ended the task and MetaSchedule tried to end it too (its space ran out)
            if env.measurer.lost:
                raise _board_lost(task, env) from None
            msg = str(ex).strip().splitlines()
            raise TuningError(f"MetaSchedule failed on task {task.desc}: {msg[-1] if msg else type(ex).__name__}"
                              f" ({env.kept()} record(s) kept in {env.log_dir}; details in {env.log_dir}/logs)") from ex
    if env.guard.interrupted:
        raise KeyboardInterrupt
    if env.measurer.lost:
        raise _board_lost(task, env)


def _board_lost(task: TuneTask, env: "_Run") -> BoardLostError:
    return BoardLostError(
        f"lost the RPC board(s) under key {env.remote.key!r} during task {task.desc} ({env.measurer.lost}); "
        f"{env.kept()} record(s) kept in {env.log_dir}: run the same command again to resume "
        f"(details in {env.log_dir}/logs/rpc.log)")


@dataclass
class _Run:
    """Everything one ``tune_tasks`` call shares between its steps."""

    target: NamedTarget
    remote: RemoteSpec
    log_dir: Path
    settings: TuneSettings
    guard: InterruptGuard
    console: TuneConsole
    budget: TimeBudget
    manifest: dbm.Manifest = field(default_factory=dbm.Manifest)
    contents: dbm.LogContents = field(default_factory=dbm.LogContents)
    measurer: Any = None
    database: Any = None
    ms_logs: Any = None  # logs.MetaScheduleLogs of this run
    curve: BestCurve = field(default_factory=BestCurve)

    def kept(self) -> int:
        return len(dbm.read_log(self.log_dir, validate=False).records)

    def stop_reason(self) -> str:
        if self.guard.interrupted:
            return "interrupted"
        if self.measurer.lost:
            return "board lost"
        return ""


def _space_size(t: TuneTask, e: dbm.TaskEntry) -> None:
    """Sample the task's space once (kept in the manifest): ``e.points``, ``e.space_complete``."""
    if e.points is not None:
        return
    from .space_points import count_points

    if t.kernel.schedule_space is None:
        e.points, e.space_complete = 1, True
        return
    try:
        n = count_points(t.kernel, SPACE_SAMPLES)
    except Exception:  # noqa: BLE001 - a space that cannot be sampled here: let MetaSchedule judge
        n = SPACE_SAMPLES
    e.points, e.space_complete = n, n < SPACE_SAMPLES // 2


def _time_defaults(tasks: list[TuneTask], env: _Run) -> None:
    """Step 1: each task's manifest entry, its default-schedule time and its space size (once; kept for resume)."""
    for t in tasks:
        e = env.manifest.tasks.setdefault(t.key, dbm.TaskEntry())
        e.name, e.desc, e.weight, e.kind = t.name, t.desc, t.weight, t.kernel.kind
        e.shash, e.layers, e.family = t.shash(), t.layers[:8], family_key(t.kernel)
        took = None
        if e.default_s is None:
            t0 = time.time()
            try:
                e.default_s = env.measurer.time_default(t)
                took = time.time() - t0
            except BoardLostError:
                raise
            except Exception as ex:  # noqa: BLE001 - reported; the task is still tuned
                env.console.warn(f"  warning: could not time the default schedule of {t.desc}: "
                                 f"{str(ex).splitlines()[-1]}")
        env.budget.note_default_timing(t.key, took)
    env.measurer.warm()  # after the timings: importing TVM in the workers would distort them
    for t in tasks:
        _space_size(t, env.manifest.tasks[t.key])
    env.measurer.wait_warm()  # the setup is paid before the budget decides anything
    env.manifest.save(env.log_dir)
    total = sum((env.manifest.tasks[t.key].default_s or 0) * t.weight for t in tasks)
    if total:
        env.console.note(f"  default schedules: {total * 1e3:.2f} ms per inference over these kernels"
                         + (" (EMULATED board: not a real time)" if env.settings.emulated else ""))


def _why_skip(key: str, e: dbm.TaskEntry, done0: int, budget: TimeBudget) -> str:
    if e.target_trials - done0 <= 0:
        return f"done ({done0} records)"
    if e.exhausted_at is not None and done0 >= int(e.exhausted_at):
        return f"search space exhausted at {done0} records"
    if budget.deadline is not None and not budget.may_start_task(key):
        return "time budget spent"
    return ""


def _tune_one(i: int, n: int, t: TuneTask, target_n: int, env: _Run) -> TaskResult:
    """Step 3-4 for one task: skip it, or search it; update its manifest entry."""
    e = env.manifest.tasks[t.key]
    done0 = env.contents.count(e.shash)
    e.target_trials = target_n
    label = f"{i + 1}/{n}"
    res = TaskResult(key=t.key, name=t.name, desc=t.desc, weight=t.weight, trials=done0, target_trials=target_n,
                     default_s=e.default_s)
    best = env.contents.best(e.shash)
    res.skipped = _why_skip(t.key, e, done0, env.budget)
    if res.skipped:
        env.console.task_done(f"  task {label} {t.desc}: {res.skipped}, skipped")
        return res
    remaining = target_n - done0
    env.budget.with_records.add(t.key)  # it will have records to re-time
    progress = TaskProgress(t.key, label, done0, target_n, e.default_s, best.mean_sec if best else math.inf,
                            remaining)
    env.console.task(f"{label} {t.desc} x{t.weight}", t.weight, e.default_s, progress.best_s)
    try:
        _search(t, i, remaining, progress, env)
    finally:
        res.new_trials = progress.new
    env.contents = dbm.read_log(env.log_dir, validate=False)
    res.trials = env.contents.count(e.shash)
    if progress.stopped:
        res.skipped = progress.stopped
    elif res.trials < target_n and not progress.unmeasured:
        e.exhausted_at = res.trials  # the search found no new candidates: resuming must not retry forever
    env.console.task_done(progress.line(t.desc, t.weight, env.settings.emulated))
    if progress.failed and progress.failed == progress.new:
        env.console.warn(f"    warning: every candidate of this task failed; first error: "
                         f"{(progress.first_error or '').strip().splitlines()[-1:] or ['?']}")
    env.manifest.save(env.log_dir)
    return res


def _retime_best(tasks: list[TuneTask], results: list[TaskResult], env: _Run) -> None:
    """Step 5: re-time the best record of every task next to its default schedule."""
    from .apply import apply_record

    contents = dbm.read_log(env.log_dir, validate=False)
    if env.settings.measure_tuned:
        env.console.note("  timing default vs tuned schedules side by side ...")
    for t, res in zip(tasks, results):
        e = env.manifest.tasks[t.key]
        res.trials = contents.count(e.shash)
        best = contents.best(e.shash)
        if best is None:
            continue
        res.best_record_s = best.mean_sec
        if not env.settings.measure_tuned:
            res.tuned_s = best.mean_sec
            continue
        try:
            func = apply_record(t.kernel, contents, best)
            res.default_s, res.tuned_s = env.measurer.side_by_side(t, [t.kernel.scheduled(), func])
        except BoardLostError:
            raise
        except Exception as ex:  # noqa: BLE001
            env.console.warn(f"  warning: could not replay the best record of {t.desc}: {str(ex).splitlines()[-1]}")
        e.tuned_s, e.default_vs_tuned_s = res.tuned_s, res.default_s
        e.speedup = (res.default_s / res.tuned_s) if res.default_s and res.tuned_s else None
    env.manifest.save(env.log_dir)


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
    quiet: bool = False,
    deadline: float | None = None,
    reserve_s: float = 0.0,
    bar: bool | None = None,
) -> TuneReport:
    """Tune ``tasks`` for ``target``, appending to the database in ``log_dir``.

    Args:
        tasks: from :func:`.tasks.extract_tasks`.
        target: compilation target (measured locally, or on ``remote``'s RPC board).
        log_dir: database directory (created; resumed when it holds records).
        trials: total measurement budget over all tasks (existing records count).
        time_budget: seconds this call may take, re-timing included (the search stops early enough).
        remote: RPC tracker / key; None or a non-RPC spec measures on this machine.
        trials_per_iter: candidates built and measured per batch.
        population: evolutionary search population size.
        measure_tuned: re-time the best record of every task next to the default schedule.
        emulated: the board is emulated: progress lines say their times mean nothing.
        log: where lines go (one per task when there is no progress bar).
        quiet: no progress bar and no per-task lines (warnings still go to ``log``).
        deadline: absolute ``time.time()`` end instead of ``time_budget`` (the caller's clock).
        reserve_s: seconds kept back from the deadline for the caller's work afterwards.
        bar: force the progress bar on / off (None: on when stderr is a terminal).

    Raises:
        TuningError: no tasks, unusable log directory, or nothing could be measured.
        BoardLostError: the RPC board(s) stopped answering (records so far are kept).
        KeyboardInterrupt: Ctrl-C or SIGTERM (records so far are kept, no worker process left).
    """
    if not tasks:
        raise TuningError("nothing to tune: the model has no conv / linear kernels")
    remote = remote or RemoteSpec()
    if not remote.is_rpc and not target.runs_on_host:
        raise TuningError(
            f"target {target.name} ({target.arch}) cannot run on this machine: give --tracker HOST:PORT --key KEY "
            "of an RPC board (see docs/tuning.md; scripts/emulated_board.py [--arch armv7] starts an emulated "
            "aarch64 or Cortex-A7 one)"
        )
    d = dbm.open_log_dir(log_dir)
    t_start = time.time()
    if deadline is None and time_budget:
        deadline = t_start + float(time_budget)
    settings = TuneSettings(trials_per_iter, population, seed, builder_timeout, measure_tuned, emulated,
                            deadline, reserve_s, quiet)
    report = TuneReport(log_dir=str(d), emulated=emulated, time_budget_s=time_budget)
    with dbm.LogLock(d), stderr_to_file(d) as terminal, InterruptGuard() as guard, metaschedule_logs(d) as ms_logs:
        console = TuneConsole(log, quiet=quiet, stream=terminal, bar=bar, emulated=emulated)
        env = _Run(target, remote, d, settings, guard, console, TimeBudget(deadline, reserve_s), ms_logs=ms_logs)
        try:
            _tune_all(tasks, trials, env, report)
        except KeyboardInterrupt:
            console.close()
            log(f"interrupted: {env.kept()} record(s) kept in {d}; run the same command again to resume")
            raise
        finally:
            console.close()
            if env.measurer is not None:
                env.measurer.close()
    report.wall_s = time.time() - t_start
    if not any(r.trials for r in report.tasks) and not any(r.skipped == "time budget spent" for r in report.tasks):
        raise TuningError(f"no candidate could be measured; see the MetaSchedule logs in {d}/logs")
    return report


def _costs(tasks: list[TuneTask], mt: dict[str, dbm.TaskEntry]) -> list[TaskCost]:
    return [TaskCost(t.key, t.weight, mt[t.key].default_s, mt[t.key].points or SPACE_SAMPLES,
                     bool(mt[t.key].space_complete)) for t in tasks]


def _tune_all(tasks: list[TuneTask], trials: int, env: _Run, report: TuneReport) -> None:
    env.contents = dbm.sanitize(env.log_dir, log=env.console.warn)
    env.manifest = dbm.Manifest.load(env.log_dir)
    env.manifest.target = env.target.to_json()
    env.measurer = Measurer(env.target, env.remote, env.log_dir, env.settings.builder_timeout, env.guard,
                            env.console.warn)
    env.console.note(f"{len(tasks)} tuning task(s) for {env.target.name}; log {env.log_dir}")
    _time_defaults(tasks, env)
    mt = env.manifest.tasks
    # the most expensive kernels first, so that a time budget is spent where it matters
    tasks = sorted(tasks, key=lambda t: -(mt[t.key].default_s or 0.0) * t.weight)
    costs = _costs(tasks, mt)
    alloc = allot(trials, costs)
    env.database = dbm.open_database(env.log_dir)
    for t in tasks:
        best = env.contents.best(mt[t.key].shash)
        if best is not None:
            env.budget.with_records.add(t.key)
        env.curve.add_task(t.key, t.desc, t.weight, mt[t.key].default_s, best.mean_sec if best else math.inf)
    if env.budget.deadline is not None:
        env.console.note(f"  time budget: {max(0.0, env.budget.search_left()):.0f} s left for the search "
                         f"({env.budget.reserve_s:.0f} s kept back for re-timing"
                         + (" and the end-to-end build)" if env.budget.extra_s else ")"))
    to_go = sum(max(0, alloc[t.key] - env.contents.count(mt[t.key].shash)) for t in tasks)
    env.console.start(to_go, env.budget.deadline)
    for i, t in enumerate(tasks):
        res = _tune_one(i, len(tasks), t, alloc[t.key], env)
        report.tasks.append(res)
        report.new_trials += res.new_trials
        e = mt[t.key]
        if e.exhausted_at is not None and res.trials < alloc[t.key]:
            alloc = give_back(alloc, alloc[t.key] - res.trials, costs[i + 1:])
    env.console.close()
    _retime_best(tasks, report.tasks, env)
    _save_curve(env, report)


def _save_curve(env: _Run, report: TuneReport) -> None:
    report.curve_json = str(env.curve.save(env.log_dir))
    try:
        report.curve_png = str(plot_curve(env.curve.to_json(), env.log_dir / CURVE_PNG,
                                          f"tuning {env.target.name}: best so far"))
    except Exception as ex:  # noqa: BLE001 - the plot is a convenience
        env.console.warn(f"  warning: could not plot the best-so-far curve: {str(ex).strip()[:200]}")


def format_report(report: TuneReport) -> str:
    """Per-task table: default vs tuned time, speedup, trials; then totals."""
    from ..reports.tables import format_table

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
    budget = f" (time budget {report.time_budget_s:.0f} s)" if report.time_budget_s else ""
    lines.append(f"{report.new_trials} new trial(s) in {report.wall_s:.0f} s{budget}; database: {report.log_dir}")
    if report.curve_png:
        lines.append(f"best-so-far curve: {report.curve_json}, {report.curve_png}")
    if report.model_default_ms is not None and report.model_tuned_ms is not None:
        lines.append(f"end to end: default {report.model_default_ms:.3f} ms -> tuned {report.model_tuned_ms:.3f} ms "
                     f"({report.model_default_ms / report.model_tuned_ms:.2f}x)")
    if report.emulated:
        lines.append("NOTE: measured on an emulated board: these times say nothing about real hardware")
    return "\n".join(lines)
