"""Talking to an RPC board with every network wait bounded (runs inside a :mod:`.rpc_worker`).

TVM's own client can wait forever: ``connect_tracker`` retries a refused tracker every 5 s
with a console warning, ``TrackerSession.request`` waits as long as the tracker queues the
request (no free server under the key), and the C++ ``rpc.connect`` / upload / run calls
have no timeout at all. Here

* :func:`request_session` speaks the tracker protocol itself on a socket with a timeout
  (a refused connection is retried quietly until the same deadline);
* the blocking C++ calls (connect to the server, upload, run) happen in a worker process
  whose parent kills it when a stage overruns the budget it announced (:func:`.rpc_worker`);
* the jobs below announce each stage (``session``, ``upload``, ``run``) with its budget
  through ``report(stage, budget_s)``, and raise :class:`BoardError` naming the stage.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

Report = Callable[[str, float], None]

#: stages of one job on a board, in order
SESSION, UPLOAD, RUN = "session", "upload", "run"


class BoardError(Exception):
    """A job on the board failed in ``stage`` (``session``, ``upload`` or ``run``)."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"{stage}: {message}")
        self.stage = stage
        self.message = message


@dataclass(frozen=True)
class BoardAddress:
    """A tracker and a device key, and how long each network wait may take (seconds)."""

    host: str
    port: int
    key: str
    rpc_timeout: float = 60.0  # connect to the tracker, get a session, upload
    session_timeout: float = 600.0  # the server drops a session older than this


def log_line(text: str) -> None:
    """Append ``HH:MM:SS text`` to this worker's log (its stderr, ``logs/rpc.log``) in one write.

    Several workers append to the same file; ``print`` writes the text and its newline separately,
    so two workers' lines could interleave mid-line. One ``os.write`` of a short line to an
    ``O_APPEND`` file lands whole.
    """
    sys.stderr.flush()
    os.write(sys.stderr.fileno(), f"{time.strftime('%H:%M:%S')} {text}\n".encode())


def _short(e: BaseException) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else type(e).__name__)[:300]


def _tracker_socket(addr: BoardAddress, deadline: float) -> socket.socket:
    """A connected socket to the tracker; a refused connection is retried until ``deadline``."""
    last: Exception | None = None
    while True:
        left = deadline - time.time()
        if left <= 0:
            raise BoardError(SESSION, f"cannot reach the RPC tracker at {addr.host}:{addr.port} "
                                      f"({_short(last) if last else 'no answer'})")
        try:
            sock = socket.create_connection((addr.host, addr.port), timeout=min(left, 10.0))
            sock.settimeout(max(left, 0.1))
            return sock
        except OSError as e:
            last = e
            time.sleep(min(1.0, max(0.0, deadline - time.time())))


def request_session(addr: BoardAddress, budget_s: float | None = None) -> Any:
    """An RPC session on a free board under ``addr.key``, within ``budget_s`` (default rpc_timeout).

    Raises:
        BoardError: (stage ``session``) the tracker is unreachable, says no, or no board
            under the key became free in time.
    """
    import struct

    from tvm import rpc
    from tvm.rpc import base

    deadline = time.time() + (addr.rpc_timeout if budget_s is None else budget_s)
    sock = _tracker_socket(addr, deadline)
    try:
        sock.sendall(struct.pack("<i", base.RPC_TRACKER_MAGIC))
        if struct.unpack("<i", base.recvall(sock, 4))[0] != base.RPC_TRACKER_MAGIC:
            raise BoardError(SESSION, f"{addr.host}:{addr.port} is not a TVM RPC tracker")
        base.sendjson(sock, [base.TrackerCode.REQUEST, addr.key, "", 1])
        value = base.recvjson(sock)
    except socket.timeout:
        raise BoardError(SESSION, f"no board under key {addr.key!r} became free within "
                                  f"{addr.rpc_timeout:.0f} s (tracker {addr.host}:{addr.port})") from None
    except (OSError, ValueError, struct.error) as e:
        raise BoardError(SESSION, f"the RPC tracker at {addr.host}:{addr.port} dropped the request "
                                  f"({_short(e)})") from None
    finally:
        sock.close()
    if not value or value[0] != base.TrackerCode.SUCCESS:
        raise BoardError(SESSION, f"the RPC tracker refused a session for key {addr.key!r}: {value}")
    url, port, matchkey = value[1]
    try:
        sess = rpc.connect(url, port, matchkey, session_timeout=int(addr.session_timeout))
        sess.tvmprune_board = f"{url}:{port}"  # which board served: for the worker's log
        return sess
    except Exception as e:  # noqa: BLE001 - a dead server shows as a TVM error
        raise BoardError(SESSION, f"the board at {url}:{port} (key {addr.key!r}) did not open a session "
                                  f"({_short(e)})") from None


def _upload(sess: Any, path: str) -> Any:
    name = os.path.basename(path)
    sess.upload(path, name)
    return sess.load_module(name)


def measure_artifacts(addr: BoardAddress, report: Report, artifacts: list[str], args_info: list[Any],
                      consts_path: str | None, number: int, repeat: int, min_repeat_ms: int, rounds: int,
                      run_budget_s: float) -> list[list[float]]:
    """Seconds per call of each kernel ``.so`` in ``artifacts`` on one board, ``rounds`` times alternately.

    ``args_info`` is MetaSchedule's ``["TENSOR", dtype, shape]`` per PrimFunc argument (all
    artifacts share it); the kernel's real consts come from ``consts_path`` (an ``.npz``, see
    :func:`.measure.save_consts`). Returns ``out[i]`` = the ``repeat x rounds`` times of artifact i.
    """
    import tvm

    from .measure import host_arguments, load_consts

    report(SESSION, addr.rpc_timeout)
    sess = request_session(addr)
    report(UPLOAD, addr.rpc_timeout)
    try:
        mods = [_upload(sess, p) for p in artifacts]
        dev = sess.cpu(0)
        consts = load_consts(consts_path) if consts_path else []
        args = [tvm.runtime.tensor(a, dev) for a in host_arguments(consts, args_info)]
    except Exception as e:  # noqa: BLE001
        raise BoardError(UPLOAD, _short(e)) from None
    out: list[list[float]] = [[] for _ in artifacts]
    # one line per measurement in the worker's log (logs/rpc.log): which board served it
    log_line(f"measure {len(artifacts)} kernel(s) on board {getattr(sess, 'tvmprune_board', '?')}")
    try:
        for _ in range(rounds):
            for i, m in enumerate(mods):
                report(RUN, run_budget_s)
                f = m.time_evaluator(m.entry_name, dev, number=number, repeat=repeat, min_repeat_ms=min_repeat_ms)
                dev.sync()
                out[i].extend(float(x) for x in f(*args).results)
    except Exception as e:  # noqa: BLE001
        raise BoardError(RUN, _short(e)) from None
    return out


def time_relax_module(addr: BoardAddress, report: Report, so_path: str, input_shape: tuple[int, ...],
                      warmup: int, repeat: int, run_budget_s: float) -> dict[str, float]:
    """``measure.model.time_vm`` of an exported Relax module (``model.so``) on one board."""
    from tvm import relax

    from ..measure.model import time_vm

    report(SESSION, addr.rpc_timeout)
    sess = request_session(addr)
    report(UPLOAD, addr.rpc_timeout)
    try:
        rlib = _upload(sess, so_path)
        dev = sess.cpu()
        vm = relax.VirtualMachine(rlib, dev)
    except Exception as e:  # noqa: BLE001
        raise BoardError(UPLOAD, _short(e)) from None
    report(RUN, run_budget_s)
    try:
        return time_vm(vm, dev, tuple(input_shape), warmup=warmup, repeat=repeat)
    except Exception as e:  # noqa: BLE001
        raise BoardError(RUN, _short(e)) from None

