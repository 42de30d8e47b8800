"""Where a tuning run's candidates are built and run (:class:`Measurer`)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

from ..target import NamedTarget
from . import db as dbm
from .interrupt import InterruptGuard, kill_workers
from .builder import make_warm_builder
from .measure import RemoteSpec, make_runner, point_to, save_consts, time_kernel, time_side_by_side
from .tasks import TuneTask

Log = Callable[[str], None]


class Measurer:
    """Where candidates are built and run: the builder, the runner (local, or on the boards of
    ``remote`` through a :class:`.board_pool.BoardPool`), and each task's consts for the runner."""

    def __init__(self, target: NamedTarget, remote: RemoteSpec, log_dir: Path, builder_timeout: float,
                 guard: InterruptGuard, log: Log) -> None:
        self.target, self.remote = target, remote
        self.builder = make_warm_builder(target.cross_compiler, timeout_sec=builder_timeout)
        self.cons_dir = Path(tempfile.mkdtemp(prefix="tvmprune_consts_"))
        self.pointer = str(self.cons_dir / "current")
        self.run_budget_s = remote.run_timeout or 10.0
        self.pool: Any = None
        self._runner: Any = None
        self._threads: Any = None
        self._warming: threading.Thread | None = None
        if remote.is_rpc:
            from .board_pool import BoardPool

            self.pool = BoardPool(remote.address(), workers=max(1, remote.boards),
                                  log_path=log_dir / "logs" / "rpc.log", abort=lambda: guard.interrupted, log=log)

    @property
    def lost(self) -> str | None:
        return self.pool.lost if self.pool is not None else None

    def time_default(self, task: TuneTask) -> float:
        return time_kernel(task.kernel.scheduled(), task.kernel.consts, self.target, self.remote, pool=self.pool)

    def side_by_side(self, task: TuneTask, funcs: list[Any]) -> list[float]:
        return time_side_by_side(funcs, task.kernel.consts, self.target, self.remote, pool=self.pool)

    def warm(self) -> None:
        """Start the builder's workers, and the local runner's (its start waits for a worker to
        import TVM: tens of seconds on a busy machine) in a thread, so that the search's first
        batch does not pay for them. Call it after the default timings (the imports would
        distort them)."""
        self.builder.warm()
        if self.pool is None and self._runner is None and self._warming is None:
            self._warming = threading.Thread(target=self._make_local_runner, daemon=True, name="tvmprune-runner")
            self._warming.start()

    def wait_warm(self) -> None:
        """Wait for the runner started by :meth:`warm`."""
        if self._warming is not None:
            self._warming.join()
            self._warming = None

    def _make_local_runner(self) -> None:
        self._runner = make_runner(self.pointer)

    def runner_for(self, task: TuneTask, entry: dbm.TaskEntry) -> Any:
        """The runner, pointed at ``task``'s consts and run budget."""
        self.wait_warm()
        point_to(self.pointer, save_consts(task.kernel.consts, str(self.cons_dir / task.key)))
        if self.pool is not None:
            from .board_pool import Evaluation

            self.run_budget_s = self.remote.run_timeout or Evaluation().budget_s(entry.default_s, 10.0)
        if self._runner is None:
            if self.pool is not None:
                from .board_pool import Evaluation
                from .board_runner import make_board_runner

                self._runner, self._threads = make_board_runner(self.pool, self.pointer, Evaluation(),
                                                                lambda: self.run_budget_s)
            else:
                self._make_local_runner()
        return self._runner

    def close(self) -> None:
        """Stop every worker process; remove the consts."""
        if self._warming is not None:
            self._warming.join(timeout=60)
        if self.pool is not None:
            self.pool.close()
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
        for pool in (getattr(self._runner, "pool", None), getattr(self.builder, "pool", None)):
            with contextlib.suppress(Exception):
                pool.shutdown(wait=False)
        kill_workers()
        shutil.rmtree(self.cons_dir, ignore_errors=True)
