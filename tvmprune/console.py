"""What every ``tvmprune`` command prints, and where: ``--quiet`` / ``--json`` implemented once.

* normal: progress, notes and the result on stdout; progress bars on stderr when it is a terminal.
* ``--quiet``: only the final result (table / line) on stdout, and errors on stderr; no progress.
* ``--json``: exactly one JSON document on stdout (the command's result); everything the command
  prints while it runs goes to stderr; no progress bars. An error prints ``{"error": MESSAGE,
  "type": ERROR_CLASS}`` on stdout and the usual ``error: MESSAGE`` line on stderr (exit status 2),
  so a script always gets one JSON document to parse.

A command returns a :class:`CommandResult` (its JSON data and its human text); :func:`run_command`
sends each part where the mode says. Long loops use :func:`progress` (tqdm) so that they are
quiet under ``--quiet`` / ``--json`` and when stderr is not a terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, TypeVar

from .errors import TvmpruneError

T = TypeVar("T")


class OutputMode(enum.Enum):
    NORMAL = "normal"
    QUIET = "quiet"
    JSON = "json"


_mode = OutputMode.NORMAL


def output_mode() -> OutputMode:
    """The mode of the command now running (NORMAL outside the CLI)."""
    return _mode


def progress_enabled() -> bool:
    """Progress bars only in normal mode, and only when stderr is a terminal."""
    return _mode is OutputMode.NORMAL and sys.stderr.isatty()


def progress(iterable: Iterable[T] | None = None, **tqdm_kwargs: Any) -> Any:
    """``tqdm(iterable, **tqdm_kwargs)`` on stderr, disabled where :func:`progress_enabled` says."""
    from tqdm import tqdm

    tqdm_kwargs.setdefault("disable", not progress_enabled())
    tqdm_kwargs.setdefault("leave", False)
    tqdm_kwargs.setdefault("delay", 1.0)  # a loop done within a second draws no bar
    return tqdm(iterable, file=sys.stderr, **tqdm_kwargs)


@dataclass
class CommandResult:
    """What a command produced: ``data`` for ``--json``, ``text`` for a terminal (and ``--quiet``)."""

    data: Any
    text: str = ""


def add_output_flags(p: argparse.ArgumentParser) -> None:
    """``--quiet`` and ``--json`` (mutually exclusive) on a sub-command's parser."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quiet", action="store_true",
                   help="print only the final result (and errors); no progress or notes")
    g.add_argument("--json", action="store_true",
                   help="print exactly one JSON document (the result) on stdout; progress and notes go to stderr")


def mode_of(args: argparse.Namespace) -> OutputMode:
    if getattr(args, "json", False):
        return OutputMode.JSON
    return OutputMode.QUIET if getattr(args, "quiet", False) else OutputMode.NORMAL


@contextlib.contextmanager
def _stdout_to(stream: Any) -> Iterator[None]:
    """Send Python's and (where stdout is a real file) C code's stdout to ``stream`` meanwhile."""
    saved_fd = None
    try:
        out_fd, to_fd = sys.stdout.fileno(), stream.fileno()
    except (AttributeError, OSError, ValueError):  # captured / in-memory streams: Python level only
        out_fd = to_fd = None
    if out_fd is not None:
        sys.stdout.flush()
        saved_fd = os.dup(out_fd)
        os.dup2(to_fd, out_fd)
    try:
        with contextlib.redirect_stdout(stream):
            yield
    finally:
        if saved_fd is not None:
            sys.stdout.flush()
            os.dup2(saved_fd, out_fd)
            os.close(saved_fd)


def _emit(result: Any, mode: OutputMode) -> None:
    if not isinstance(result, CommandResult):
        return
    try:
        if mode is OutputMode.JSON:
            print(json.dumps(result.data, indent=2, default=str))
        elif result.text:
            print(result.text)
        sys.stdout.flush()
    except BrokenPipeError:  # `tvmprune ... | head`: the reader has gone, nothing left to say
        pass


def run_command(func: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> int:
    """Run one sub-command under its output mode; returns the exit status (2 on a user error)."""
    global _mode
    mode = _mode = mode_of(args)
    try:
        if mode is OutputMode.NORMAL:
            result = func(args)
        else:
            with open(os.devnull, "w") as devnull, _stdout_to(sys.stderr if mode is OutputMode.JSON else devnull):
                result = func(args)
    except TvmpruneError as e:
        if mode is OutputMode.JSON:
            print(json.dumps({"error": str(e), "type": type(e).__name__}))
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if mode is OutputMode.JSON:
            print(json.dumps({"error": "interrupted", "type": "KeyboardInterrupt"}))
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        _mode = OutputMode.NORMAL
    _emit(result, mode)
    return int(result) if isinstance(result, int) else 0
