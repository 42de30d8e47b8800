"""Ctrl-C and SIGTERM during tuning: stop soon, keep the records, leave no worker processes.

Inside MetaSchedule's C++ search loop a Python exception raised by a signal handler turns
into a generic error somewhere in C++ (or is swallowed). So while the search runs
(:meth:`InterruptGuard.deferred`) the first signal only sets :attr:`InterruptGuard.signum`
and kills the worker processes (builders, runners, board workers), and keeps killing new
ones until the search returns: every wait then returns at once, the measure callback sees the flag and ends the task, and the tuner raises
``KeyboardInterrupt`` itself. A second signal, or one outside the search, raises
``KeyboardInterrupt`` at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import Any, Iterator


def kill_popen_workers() -> None:
    """Kill the MetaSchedule / TVM ``popen_worker`` children of this process (and their children)."""
    import psutil

    try:
        children = psutil.Process(os.getpid()).children(recursive=False)
    except psutil.Error:
        return
    for c in children:
        try:
            if any("tvm.exec.popen_worker" in part for part in c.cmdline()):
                for g in c.children(recursive=True):
                    g.kill()
                c.kill()
                c.wait(timeout=5)
        except (psutil.Error, OSError):
            pass


def kill_workers() -> None:
    """Every worker process this process started for tuning: board workers and popen workers."""
    from .rpc_worker import kill_all_workers

    kill_all_workers()
    kill_popen_workers()


class InterruptGuard:
    """Catches SIGINT / SIGTERM for the duration of a ``with`` block (main thread only)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._defer = False
        self._old: dict[int, Any] = {}

    @property
    def interrupted(self) -> bool:
        return self.signum is not None

    def _on_signal(self, signum: int, frame: Any) -> None:
        first = self.signum is None
        self.signum = signum
        kill_workers()
        if not (self._defer and first):
            raise KeyboardInterrupt
        # MetaSchedule's builder pool restarts a killed worker for its next candidate (a fresh
        # worker imports TVM: tens of seconds); keep killing them until the search has returned
        threading.Thread(target=self._reap, daemon=True, name="tvmprune-reaper").start()

    def _reap(self) -> None:
        while self._defer:
            kill_workers()
            time.sleep(0.2)

    def __enter__(self) -> "InterruptGuard":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._on_signal)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Inside, the first signal only sets the flag (see the module docstring)."""
        self._defer = True
        try:
            yield
        finally:
            self._defer = False
