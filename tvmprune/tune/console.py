"""What ``tvmprune tune`` shows while it runs: a progress bar, one line per task, or nothing.

* :func:`stderr_to_file` sends file descriptor 2 to ``<log dir>/logs/native_stderr.log`` for the
  duration of a block. LLVM and TVM's C++ write their warnings (``Unroll hint get ignore at
  CodeGenLLVM backend``, ``-mcpu=generic`` fallbacks ...) straight to fd 2, in this process and in
  the builder / runner worker processes, which inherit it when they start inside the block;
  Python's ``sys.stderr`` cannot catch them.
* :class:`TuneConsole` is the display. On a terminal (the original stderr, saved before the
  redirect) a tqdm bar over the run's trials shows the current task, its best time so far, the
  speedup over the default schedule and the ETA; elsewhere (a log file, CI, a test) one line per
  task goes to ``log``; ``quiet`` shows nothing but warnings.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, TextIO

NATIVE_STDERR = "native_stderr.log"
_active: list[TextIO] = []  # the terminal stream of the outermost active redirect


@contextlib.contextmanager
def stderr_to_file(log_dir: "str | os.PathLike[str]") -> Iterator[TextIO]:
    """Redirect fd 2 (and ``sys.stderr``) to ``log_dir/logs/native_stderr.log``; yields a text
    stream on the original stderr (for the progress bar). Nested uses share the outer redirect."""
    if _active:
        yield _active[-1]
        return
    path = Path(log_dir) / "logs"
    path.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    saved = os.dup(2)
    terminal = io.TextIOWrapper(os.fdopen(os.dup(saved), "wb", buffering=0), write_through=True,
                                encoding="utf-8", errors="replace")
    terminal.isatty_saved = os.isatty(saved)  # type: ignore[attr-defined]
    sink = open(path / NATIVE_STDERR, "ab")
    os.dup2(sink.fileno(), 2)
    old_py = sys.stderr
    sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(2), "wb", buffering=0), write_through=True,
                                  encoding="utf-8", errors="replace")
    _active.append(terminal)
    try:
        yield terminal
    finally:
        _active.pop()
        with contextlib.suppress(Exception):
            sys.stderr.flush()
            sys.stderr.close()
        sys.stderr = old_py
        os.dup2(saved, 2)
        os.close(saved)
        sink.close()
        terminal.close()


def terminal_stream() -> TextIO | None:
    """The original stderr while :func:`stderr_to_file` is active, else None."""
    return _active[-1] if _active else None


def _is_tty(stream: Any) -> bool:
    flag = getattr(stream, "isatty_saved", None)
    if flag is not None:
        return bool(flag)
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _ms(s: float | None) -> str:
    return "-" if s is None or not math.isfinite(s) else f"{s * 1e3:.4f} ms"


class TuneConsole:
    """The display of one tuning run (see the module docstring).

    Args:
        log: where lines go (task lines when there is no bar; notes and warnings always).
        quiet: no bar and no task lines.
        stream: the terminal stream for the bar (None: ``terminal_stream()`` or ``sys.stderr``).
        bar: force the bar on / off (None: on when ``stream`` is a terminal).
        emulated: times are from an emulated board (said on each line).
    """

    def __init__(self, log: Callable[[str], None], quiet: bool = False, stream: TextIO | None = None,
                 bar: bool | None = None, emulated: bool = False) -> None:
        self.log, self.quiet, self.emulated = log, quiet, emulated
        self.stream = stream or terminal_stream() or sys.stderr
        self.use_bar = (not quiet) and (_is_tty(self.stream) if bar is None else bar)
        self._bar: Any = None
        self._deadline: float | None = None

    def note(self, msg: str) -> None:
        """A line that is not progress (start, totals); hidden when quiet."""
        if self.quiet:
            return
        self._write_line(msg)

    def warn(self, msg: str) -> None:
        """Always shown."""
        self._write_line(msg)

    def _write_line(self, msg: str) -> None:
        if self._bar is not None:
            self._bar.clear()
            self.log(msg)
            self._bar.refresh()
        else:
            self.log(msg)

    def start(self, total_trials: int, deadline: float | None) -> None:
        """The run's bar over ``total_trials`` (trials still to go over all tasks)."""
        self._deadline = deadline
        if not self.use_bar:
            return
        from tqdm import tqdm

        self._bar = tqdm(total=max(1, total_trials), file=self.stream, unit="trial", dynamic_ncols=True,
                         leave=True, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]{postfix}")

    def task(self, label: str, weight: int, default_s: float | None, best_s: float) -> None:
        if self._bar is not None:
            self._bar.set_description_str(f"task {label}", refresh=False)
            self._postfix(default_s, best_s)

    def _postfix(self, default_s: float | None, best_s: float) -> None:
        rel = f" {default_s / best_s:.2f}x" if default_s and math.isfinite(best_s) else ""
        left = ""
        if self._deadline is not None:
            left = f" budget {max(0.0, self._deadline - time.time()):.0f}s left"
        self._bar.set_postfix_str(f"best {_ms(best_s)}{rel}{left}", refresh=True)

    def batch(self, n_back: int, default_s: float | None, best_s: float) -> None:
        """A measured batch of ``n_back`` candidates of the current task came back."""
        if self._bar is not None:
            self._bar.update(n_back)
            self._postfix(default_s, best_s)

    def task_done(self, line: str) -> None:
        """One line per task (the bar moves on instead, when there is one)."""
        if not self.quiet:
            self._write_line(line)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
