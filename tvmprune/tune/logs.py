"""Where MetaSchedule's log lines go while tvmprune tunes: files in ``<log dir>/logs/``.

MetaSchedule's own ``logging.get_loggers_from_work_dir`` rebuilds the process-wide logging
configuration with ``logging.config.dictConfig`` on every call, listing the handlers already on
the ``tvm.s_tir.meta_schedule`` logger by name; a handler without a name (one added by the
user's application, a notebook or a test runner) makes it crash (``'NoneType' object has no
attribute 'format'``) on the second call in one process. tvmprune never calls it: it attaches
plain file handlers for the duration of a tuning run and restores the loggers afterwards, so
tuning twice in one process works and the caller's logging configuration is left alone.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path

MS_LOGGER = "tvm.s_tir.meta_schedule"
FORMAT = "%(asctime)s [%(levelname)s] %(message)s"


class MetaScheduleLogs:
    """File loggers for one tuning run: ``logs/task_scheduler.log`` for MetaSchedule's global
    logger (builder, runner, search) and ``logs/<task>.log`` per tuning task."""

    def __init__(self, log_dir: Path) -> None:
        self.dir = Path(log_dir) / "logs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._handlers: list[logging.Handler] = []
        self._task_loggers: list[logging.Logger] = []

    def _file_handler(self, name: str) -> logging.Handler:
        h = logging.FileHandler(self.dir / f"{name}.log", mode="a")
        h.setFormatter(logging.Formatter(FORMAT, "%Y-%m-%d %H:%M:%S"))
        h.setLevel(logging.DEBUG)
        self._handlers.append(h)
        return h

    def task_logger(self, task_name: str) -> logging.Logger:
        """The logger to give ``ms.TuneContext(logger=...)`` for one task (file only)."""
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", task_name)
        lg = logging.getLogger(f"{MS_LOGGER}.tvmprune_task.{safe}")
        lg.setLevel(logging.DEBUG)
        lg.propagate = False
        lg.addHandler(self._file_handler(safe))
        self._task_loggers.append(lg)
        return lg

    def close(self) -> None:
        for lg in self._task_loggers:
            for h in list(lg.handlers):
                if h in self._handlers:
                    lg.removeHandler(h)
        for h in self._handlers:
            h.close()
        self._handlers.clear()
        self._task_loggers.clear()


@contextlib.contextmanager
def metaschedule_logs(log_dir: "str | Path") -> Iterator[MetaScheduleLogs]:
    """Route MetaSchedule's logging to ``<log_dir>/logs/`` (nothing on the console) for the
    duration of the block; the ``tvm.s_tir.meta_schedule`` logger's handlers, level and
    propagation are restored afterwards."""
    logs = MetaScheduleLogs(Path(log_dir))
    ms = logging.getLogger(MS_LOGGER)
    saved = (list(ms.handlers), ms.level, ms.propagate)
    for h in saved[0]:
        ms.removeHandler(h)
    ms.setLevel(logging.DEBUG)
    ms.propagate = False
    ms.addHandler(logs._file_handler("task_scheduler"))
    try:
        yield logs
    finally:
        for h in list(ms.handlers):
            ms.removeHandler(h)
        for h in saved[0]:
            ms.addHandler(h)
        ms.setLevel(saved[1])
        ms.propagate = saved[2]
        logs.close()
