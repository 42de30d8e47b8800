"""Boards under one tracker key: measuring on them with retries, and deciding when they are lost.

:class:`BoardPool` owns one :class:`.rpc_worker.BoardWorker` per parallel measurement (one
per board the tracker had under the key when tuning started). Each job asks the tracker
for a session, so a job retried after a failure lands on whichever board is free: losing
one of several boards slows the run down but does not stop it.

What a failure means:

* the session could not be had (tracker down, no board free in time, the server does not
  answer): the *board* is at fault. The job is retried until ``rpc_timeout`` has passed
  since its first failure; then the pool is **lost** (:attr:`BoardPool.lost`) and every
  job still waiting is aborted.
* the kernel failed to upload or run: retried once on a fresh session; a second failure
  with a working session is the *candidate's* fault (:class:`CandidateFailed`).
* the run overran its budget: the candidate is recorded as failed (it is never counted as
  measured); :data:`MAX_RUN_TIMEOUTS` of those in a row mean the board hangs (lost).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import BoardLostError
from .rpc_session import RUN, SESSION, BoardAddress, BoardError
from .rpc_worker import BoardAborted, BoardTimeout, BoardWorker

#: this many run timeouts in a row (no success between) and the board counts as hanging
MAX_RUN_TIMEOUTS = 3
#: pause between retries of a job whose board failed (seconds)
RETRY_PAUSE_S = 1.0


class CandidateFailed(Exception):
    """The board worked but this kernel did not (error or run timeout): record it as failed."""


@dataclass(frozen=True)
class Evaluation:
    """How a kernel is timed: ``repeat`` samples of ``number`` calls, each at least ``min_repeat_ms``."""

    number: int = 3
    repeat: int = 3
    min_repeat_ms: int = 20

    def budget_s(self, expected_s: float | None, floor_s: float) -> float:
        """Run budget for one evaluation of a kernel expected to take ``expected_s`` per call:
        50x the expected evaluator time (a candidate can be far slower than the default
        schedule), at least ``floor_s``."""
        if not expected_s:
            return floor_s
        one = self.repeat * max(self.min_repeat_ms * 1e-3, self.number * expected_s)
        return max(floor_s, 50.0 * one)


class BoardPool:
    """Jobs on the boards of ``addr`` through ``workers`` worker processes."""

    def __init__(self, addr: BoardAddress, workers: int = 1, log_path: "str | os.PathLike[str] | None" = None,
                 abort: Callable[[], bool] | None = None, log: Callable[[str], None] | None = None) -> None:
        self.addr = addr
        self.lost: str | None = None
        self._abort = abort or (lambda: False)
        self._log = log or (lambda s: None)
        self._free: "queue.Queue[BoardWorker]" = queue.Queue()
        self._all = [BoardWorker(log_path) for _ in range(max(1, workers))]
        for w in self._all:
            self._free.put(w)
        self._lock = threading.Lock()
        self._run_timeouts = 0
        self._announced: set[str] = set()

    @property
    def workers(self) -> int:
        return len(self._all)

    def aborted(self) -> bool:
        return self.lost is not None or self._abort()

    def close(self) -> None:
        """Kill the worker processes."""
        for w in self._all:
            w.kill()

    def _say_once(self, key: str, msg: str) -> None:
        with self._lock:
            if key in self._announced:
                return
            self._announced.add(key)
        self._log(msg)

    def _declare_lost(self, why: str) -> None:
        with self._lock:
            if self.lost is None:
                self.lost = why

    def _ok(self) -> None:
        with self._lock:
            self._run_timeouts = 0

    def run(self, job: str, kwargs: dict[str, Any]) -> Any:
        """Run a job of :mod:`.rpc_session` (``addr`` and ``report`` are supplied) with retries.

        Raises:
            BoardLostError: the boards stopped answering (also set as :attr:`lost`) or the run was aborted.
            CandidateFailed: the board works but this kernel fails or overruns.
        """
        w = self._free.get()
        try:
            return self._run_on(w, job, kwargs)
        finally:
            self._free.put(w)

    def _run_on(self, w: BoardWorker, job: str, kwargs: dict[str, Any]) -> Any:
        first_failure: float | None = None
        retried_run = False
        while True:
            if self.aborted():
                raise BoardLostError(self.lost or "aborted")
            started = time.time()
            try:
                value = w.run(job, {"addr": self.addr, **kwargs}, abort=self.aborted)
                self._ok()
                return value
            except BoardAborted:
                raise BoardLostError(self.lost or "aborted") from None
            except BoardTimeout as e:
                if e.stage == RUN:
                    self._run_timeout()
                    raise CandidateFailed(f"no answer from the board within the run budget "
                                          f"({kwargs.get('run_budget_s', 0):.0f} s)") from None
                err: BoardError = BoardError(e.stage, f"no answer within {self.addr.rpc_timeout:.0f} s")
            except BoardError as e:
                if e.stage != SESSION and retried_run:
                    raise CandidateFailed(e.message) from None
                retried_run = retried_run or e.stage != SESSION
                err = e
            now = time.time()
            # a session that could not be had failed from the moment it was asked for
            first_failure = first_failure or (started if err.stage == SESSION else now)
            self._say_once(err.stage + err.message[:40], f"    board trouble ({err.stage}): {err.message}; retrying")
            if now - first_failure >= self.addr.rpc_timeout:
                self._declare_lost(f"{err.stage} failed for {now - first_failure:.0f} s: {err.message}")
                raise BoardLostError(self.lost or err.message)
            time.sleep(RETRY_PAUSE_S)

    def _run_timeout(self) -> None:
        with self._lock:
            self._run_timeouts += 1
            n = self._run_timeouts
        if n >= MAX_RUN_TIMEOUTS:
            self._declare_lost(f"{n} runs in a row got no answer from the board")


def time_model_on_board(host: str, port: int, key: str, so_path: str, input_shape: tuple[int, ...], warmup: int,
                        repeat: int, rpc_timeout: float = 60.0, run_timeout: float | None = None) -> dict[str, float]:
    """``measure.model.time_vm`` of an exported model (``model.so``) on a board under ``key``, every wait bounded
    (``compare --tracker``). Returns the summary dict of :func:`..bench.summarize_ms`.

    Raises:
        BoardLostError: no board answered within ``rpc_timeout`` (retried meanwhile).
        RPCConnectionError: the board answered but the model failed or overran ``run_timeout``
            (default ``max(150 s, 5 x rpc_timeout)``).
    """
    from ..errors import RPCConnectionError

    pool = BoardPool(BoardAddress(host, int(port), key, rpc_timeout=rpc_timeout))
    try:
        return pool.run("time_relax_module", {"so_path": so_path, "input_shape": tuple(input_shape),
                                              "warmup": warmup, "repeat": repeat,
                                              "run_budget_s": run_timeout or max(150.0, 5 * rpc_timeout)})
    except CandidateFailed as e:
        raise RPCConnectionError(f"timing on {key!r} over RPC failed: {e}") from None
    finally:
        pool.close()
