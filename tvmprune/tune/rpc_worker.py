"""A worker process for board jobs, and its parent-side handle with a watchdog.

TVM's RPC calls block in C++ (no timeout, no way to cancel a thread), so every job that
touches a board runs in a child process (``python -m tvmprune.tune.rpc_worker``). The job
announces each stage with a time budget (:mod:`.rpc_session`); :class:`BoardWorker.run`
kills the child, in its own process group, when a stage overruns its budget, when the
caller aborts (Ctrl-C, a lost board), or when the parent exits. The child's stderr (TVM
warnings, tracker retry messages) goes to a log file, never to the console.

Protocol on the child's stdin / stdout: 4-byte little-endian length + pickle.
Parent -> child: ``(job_name, kwargs)``. Child -> parent: ``("ready",)`` once, then per job
any number of ``("stage", name, budget_s)`` and one ``("ok", value)`` or
``("error", stage, message)``.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import weakref
from typing import Any, Callable

from .rpc_session import BoardError, log_line

#: seconds a fresh worker may take to import TVM (a loaded 2-core machine is slow)
START_BUDGET_S = 180.0
#: slack added to each stage budget before the worker is killed
GRACE_S = 2.0

_LIVE: "weakref.WeakSet[BoardWorker]" = weakref.WeakSet()


class BoardTimeout(BoardError):
    """A stage of a board job overran its budget; the worker was killed."""


class BoardAborted(BoardError):
    """The caller aborted the job (interrupt, or the board was given up)."""


def kill_all_workers() -> None:
    """Kill every live worker process of this process (Ctrl-C, SIGTERM, exit)."""
    try:
        workers = list(_LIVE)
    except RuntimeError:  # the set changed while copied (another thread): take the next round
        return
    for w in workers:
        w.kill()


class BoardWorker:
    """Parent-side handle of one worker process (started on first use, restarted after a kill)."""

    def __init__(self, log_path: "str | os.PathLike[str] | None" = None) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._buf = b""
        self._lock = threading.Lock()
        _LIVE.add(self)

    # -- process ------------------------------------------------------------------------

    def _start(self, abort: Callable[[], bool] | None) -> None:
        err: Any = subprocess.DEVNULL
        if self.log_path:
            os.makedirs(os.path.dirname(os.fspath(self.log_path)) or ".", exist_ok=True)
            err = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "tvmprune.tune.rpc_worker", str(os.getpid())],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                         start_new_session=True)
        finally:
            if err is not subprocess.DEVNULL:
                err.close()
        self._buf = b""
        msg = self._read(time.time() + START_BUDGET_S, "start", abort)
        if msg[0] != "ready":
            self.kill()
            raise BoardError("start", f"the RPC worker process did not start: {msg}")

    def kill(self) -> None:
        """Kill the worker and its process group; safe to call twice and from a signal handler."""
        p = self.proc
        self.proc = None
        if p is None:
            return
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for f in (p.stdin, p.stdout):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass

    # -- messages -----------------------------------------------------------------------

    def _read(self, deadline: float, stage: str, abort: Callable[[], bool] | None) -> tuple[Any, ...]:
        p = self.proc
        if p is None or p.stdout is None:
            raise BoardAborted(stage, "the worker was stopped")
        fd = p.stdout.fileno()
        while True:
            if len(self._buf) >= 4:
                n = struct.unpack("<i", self._buf[:4])[0]
                if len(self._buf) >= 4 + n:
                    msg = pickle.loads(self._buf[4:4 + n])
                    self._buf = self._buf[4 + n:]
                    return msg
            if abort is not None and abort():
                self.kill()
                raise BoardAborted(stage, "aborted")
            left = deadline - time.time()
            if left <= 0:
                self.kill()
                raise BoardTimeout(stage, "no answer in time")
            try:
                ready, _, _ = select.select([fd], [], [], min(left, 0.25))
            except (OSError, ValueError):
                raise BoardAborted(stage, "the worker was stopped") from None
            if ready:
                try:
                    chunk = os.read(fd, 1 << 16)
                except OSError:
                    chunk = b""
                if not chunk:
                    self.kill()
                    raise BoardError(stage, "the RPC worker process died (see the rpc log)")
                self._buf += chunk

    def run(self, job: str, kwargs: dict[str, Any], abort: Callable[[], bool] | None = None) -> Any:
        """Run ``job`` (a name in :data:`JOBS`) with ``kwargs``; returns its value.

        Raises:
            BoardTimeout: a stage overran its announced budget (the worker was killed).
            BoardAborted: ``abort()`` became true.
            BoardError: the job failed (``.stage`` says where).
        """
        with self._lock:
            if self.proc is None or self.proc.poll() is not None:
                self.kill()
                self._start(abort)
            assert self.proc is not None and self.proc.stdin is not None
            data = pickle.dumps((job, kwargs))
            try:
                self.proc.stdin.write(struct.pack("<i", len(data)) + data)
                self.proc.stdin.flush()
            except OSError:
                self.kill()
                raise BoardError("start", "the RPC worker process died") from None
            stage, deadline = "start", time.time() + 30.0
            while True:
                msg = self._read(deadline, stage, abort)
                if msg[0] == "stage":
                    stage, deadline = msg[1], time.time() + float(msg[2]) + GRACE_S
                elif msg[0] == "ok":
                    return msg[1]
                elif msg[0] == "error":
                    raise BoardError(msg[1], msg[2])


# ----------------------------------------------------------------------------------------
# the child side
# ----------------------------------------------------------------------------------------


def _jobs() -> dict[str, Callable[..., Any]]:
    from . import rpc_session

    return {"measure_artifacts": rpc_session.measure_artifacts, "time_relax_module": rpc_session.time_relax_module}


def _watch_parent(parent: int) -> None:
    """Exit when the parent is gone (it was SIGKILLed and could not kill us)."""
    while True:
        if os.getppid() != parent:
            os._exit(3)
        time.sleep(1.0)


def main() -> None:
    import logging

    parent = int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid()
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints of TVM go to the log, not into the protocol
    inp = sys.stdin.buffer
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop

    def send(msg: tuple[Any, ...]) -> None:
        data = pickle.dumps(msg)
        out.write(struct.pack("<i", len(data)) + data)
        out.flush()

    import tvm  # noqa: F401 - import once, before "ready"

    jobs = _jobs()
    send(("ready",))
    while True:
        head = inp.read(4)
        if len(head) != 4:
            return
        job, kwargs = pickle.loads(inp.read(struct.unpack("<i", head)[0]))
        try:
            send(("ok", jobs[job](report=lambda stage, budget: send(("stage", stage, budget)), **kwargs)))
        except BoardError as e:
            log_line(f"{job}: {e}")
            send(("error", e.stage, e.message))
        except Exception as e:  # noqa: BLE001 - reported to the parent
            import traceback

            traceback.print_exc()
            send(("error", "run", str(e).strip().splitlines()[-1:] and str(e).strip().splitlines()[-1] or repr(e)))


if __name__ == "__main__":
    main()
