"""Builder and runner glue between tvmprune kernels and MetaSchedule.

Three things the stock MetaSchedule pieces get wrong for our kernels (see the stack notes):

* the default builder imports ``tvm.s_tir.tensor_intrin`` in every fresh worker (30-40 s on a
  busy 2-core machine, beyond its 30 s timeout): :func:`build_module` builds without it;
* the default export writes a ``.tar`` that the runner links on the board; we export a
  finished shared object, cross-compiled for ARM targets (:class:`ExportSO`);
* the default runner fills every argument with random bits, so int32 index arrays point
  gigabytes out of bounds: :class:`AllocArgs` supplies the kernel's real ``consts`` (weights,
  indices, indptr, bias) and random activations.

Everything here is picklable by reference (module-level functions and small classes), so
MetaSchedule's popen workers import this module, not the whole of tvmprune.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import RPCConnectionError

# ----------------------------------------------------------------------------------------
# builder
# ----------------------------------------------------------------------------------------


def build_module(mod: Any, target: Any, _params: Any = None) -> Any:
    """``f_build`` of the LocalBuilder: ``tvm.driver.build`` without importing tensor intrinsics."""
    from tvm.driver import build as tvm_build

    return tvm_build(mod, target=target)


class ExportSO:
    """``f_export``: write a finished shared object (cross-compiled when ``cross_compiler`` is set)."""

    def __init__(self, cross_compiler: str | None = None) -> None:
        self.cross_compiler = cross_compiler

    def __call__(self, rt_mod: Any) -> str:
        path = os.path.join(tempfile.mkdtemp(prefix="tvmprune_ms_"), "kernel.so")
        if self.cross_compiler:
            from tvm.support import cc

            rt_mod.export_library(path, fcompile=cc.cross_compiler(self.cross_compiler))
        else:
            rt_mod.export_library(path)
        return path


def build_candidate(mod: Any, target: Any, cross_compiler: str | None) -> str:
    """Build one candidate and export its shared object (runs in a builder worker); returns its path."""
    return ExportSO(cross_compiler)(build_module(mod, target))


def warm_worker() -> None:
    """Import what building needs (a builder worker's first job, so the first batch does not pay for it)."""
    import tvm.driver  # noqa: F401


def make_builder(cross_compiler: str | None, timeout_sec: float = 300.0, max_workers: int | None = None) -> Any:
    """A MetaSchedule LocalBuilder with :func:`build_module` and :class:`ExportSO`."""
    from tvm.s_tir import meta_schedule as ms

    if max_workers is None:
        max_workers = max(1, min(os.cpu_count() or 1, 4))
    return ms.builder.LocalBuilder(
        max_workers=max_workers, timeout_sec=timeout_sec, f_build=build_module, f_export=ExportSO(cross_compiler)
    )


# ----------------------------------------------------------------------------------------
# arguments
# ----------------------------------------------------------------------------------------

_CONST_CACHE: dict[str, list[np.ndarray]] = {}


def save_consts(consts: list[np.ndarray], directory: str) -> str:
    """Write a kernel's constant arrays to ``directory/consts.npz`` (read by the runner workers)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "consts.npz")
    np.savez(path, *[np.ascontiguousarray(c) for c in consts])
    return path


def load_consts(path: str) -> list[np.ndarray]:
    if path not in _CONST_CACHE:
        with np.load(path) as z:
            _CONST_CACHE[path] = [z[f"arr_{i}"] for i in range(len(z.files))]
    return _CONST_CACHE[path]


def host_arguments(consts: list[np.ndarray], args_info: list[Any], seed: int = 0) -> list[np.ndarray]:
    """numpy arguments in PrimFunc order: random ``data``, the real ``consts``, random rest.

    ``args_info`` is MetaSchedule's JSON list ``["TENSOR", dtype, shape]`` per argument. The
    arguments after the consts (residual, out) get random values / zeros.
    """
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    n = len(args_info)
    for i, info in enumerate(args_info):
        _, dtype, shape = info[0], str(info[1]), tuple(int(s) for s in info[2])
        if 1 <= i <= len(consts):
            c = consts[i - 1]
            if tuple(c.shape) != shape or str(c.dtype) != dtype:
                raise ValueError(f"argument {i}: kernel const is {c.dtype}{c.shape}, PrimFunc wants {dtype}{shape}")
            out.append(c)
        elif i == n - 1:
            out.append(np.zeros(shape, dtype=dtype))
        else:
            out.append(rng.standard_normal(shape).astype(dtype))
    return out


def point_to(pointer_path: str, consts_path: str) -> None:
    """Make the runner's :class:`AllocArgs` use ``consts_path`` from now on (tasks run one at a time)."""
    tmp = pointer_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(consts_path)
    os.replace(tmp, pointer_path)


class AllocArgs:
    """``f_alloc_argument`` of the Local / RPC runner supplying the kernel's real consts.

    The consts live in an ``.npz`` next to the log so the runner workers do not receive
    megabytes of pickled weights per candidate. ``consts_path`` is either that file or a
    *pointer* file holding its path (one runner serves all tasks, see :func:`point_to`).
    """

    def __init__(self, consts_path: str, rpc: bool = False) -> None:
        self.consts_path = consts_path
        self.rpc = rpc

    def _path(self) -> str:
        if self.consts_path.endswith(".npz"):
            return self.consts_path
        with open(self.consts_path, encoding="utf-8") as f:
            return f.read().strip()

    def __call__(self, *args: Any) -> list[list[Any]]:
        import tvm

        if self.rpc:
            _session, device, args_info, alloc_repeat = args
        else:
            device, args_info, alloc_repeat = args
        consts = load_consts(self._path())
        repeated = []
        for r in range(alloc_repeat):
            host = host_arguments(consts, list(args_info), seed=r)
            repeated.append([tvm.runtime.tensor(a, device) for a in host])
        return repeated


@dataclass
class RemoteSpec:
    """Where candidates run: the local machine (``tracker_host`` None) or an RPC tracker key.

    ``rpc_timeout`` bounds every network wait (reach the tracker, get a session, upload);
    ``run_timeout`` (None: derived from the kernel's expected time) bounds one candidate's run;
    ``session_timeout_sec`` is how long the server keeps one session alive.
    """

    tracker_host: str | None = None
    tracker_port: int | None = None
    key: str | None = None
    session_timeout_sec: int = 600
    rpc_timeout: float = 60.0
    run_timeout: float | None = None
    boards: int = 1  # boards under the key: candidates measured in parallel

    @property
    def is_rpc(self) -> bool:
        return self.tracker_host is not None

    def address(self) -> Any:
        """The :class:`.rpc_session.BoardAddress` of this spec (RPC specs only)."""
        from .rpc_session import BoardAddress

        return BoardAddress(str(self.tracker_host), int(self.tracker_port or 0), str(self.key),
                            rpc_timeout=float(self.rpc_timeout), session_timeout=float(self.session_timeout_sec))


def evaluator_config(quick: bool = False) -> Any:
    from tvm.s_tir import meta_schedule as ms

    if quick:
        return ms.runner.EvaluatorConfig(number=2, repeat=2, min_repeat_ms=5, enable_cpu_cache_flush=False)
    return ms.runner.EvaluatorConfig(number=3, repeat=3, min_repeat_ms=20, enable_cpu_cache_flush=False)


def make_runner(consts_path: str, timeout_sec: float = 120.0, quick: bool = False) -> Any:
    """A LocalRunner whose argument allocation uses the real consts (RPC boards: :mod:`.board_runner`)."""
    from tvm.s_tir import meta_schedule as ms

    return ms.runner.LocalRunner(
        timeout_sec=timeout_sec, evaluator_config=evaluator_config(quick),
        f_alloc_argument=AllocArgs(consts_path, rpc=False),
    )


# ----------------------------------------------------------------------------------------
# RPC connectivity
# ----------------------------------------------------------------------------------------


def parse_hostport(s: str) -> tuple[str, int]:
    host, sep, port = str(s).rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RPCConnectionError(f"--tracker must be HOST:PORT (e.g. 127.0.0.1:9190), got {s!r}")
    return host, int(port)


def call_with_timeout(fn: Any, timeout: float, what: str) -> Any:
    """Run ``fn()`` in a daemon thread; raise RPCConnectionError when it takes longer than ``timeout``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - reported below
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise RPCConnectionError(f"{what}: no answer within {timeout:.0f} s")
    if "error" in box:
        msg = str(box["error"]).strip().splitlines()
        raise RPCConnectionError(f"{what}: {msg[-1] if msg else type(box['error']).__name__}")
    return box.get("value")


def check_tracker(remote: RemoteSpec, timeout: float = 10.0) -> dict[str, Any]:
    """Make sure the tracker answers and a server with ``remote.key`` can be had, within ``timeout``.

    Returns ``{"servers": n, "device": "..."}``.

    Raises:
        RPCConnectionError: the tracker is unreachable, has no server under the key, or the
            server does not open a session in time (the message says which and what to check).
    """
    host, port, key = remote.tracker_host, int(remote.tracker_port or 0), remote.key
    hint = (f"check the tracker with `python -m tvm.exec.query_rpc_tracker --host {host} --port {port}` "
            "(see docs/tuning.md for the board-side setup)")
    # plain TCP first: a closed port fails immediately, a filtered one must not hang
    t0 = time.time()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        raise RPCConnectionError(f"cannot reach the RPC tracker at {host}:{port} ({e.strerror or e}); {hint}") from None
    from tvm import rpc

    left = max(1.0, timeout - (time.time() - t0))
    tracker = call_with_timeout(lambda: rpc.connect_tracker(host, port), left, f"RPC tracker {host}:{port}")
    summary = call_with_timeout(tracker.summary, left, f"RPC tracker {host}:{port} summary")
    servers = 0
    for item in summary.get("server_info", []):
        k = str(item.get("key", ""))
        if k.split(":", 1)[-1] == key:
            servers += 1
    if servers == 0:
        keys = sorted({str(i.get("key", "")).split(":", 1)[-1] for i in summary.get("server_info", [])})
        raise RPCConnectionError(
            f"the RPC tracker at {host}:{port} has no server registered under key {key!r} "
            f"(keys there: {', '.join(keys) or 'none'}); start the board's server with --key {key}. {hint}"
        )
    left = max(1.0, timeout - (time.time() - t0))

    def _session() -> str:
        from .rpc_session import BoardError, request_session

        addr = remote.address()
        try:
            sess = request_session(addr, budget_s=left)
        except BoardError as e:
            raise RPCConnectionError(e.message) from None
        dev = sess.cpu(0)
        return f"{key} ({'present' if dev.exist else 'no cpu device'})"

    device = call_with_timeout(_session, left, f"RPC server with key {key!r} via {host}:{port}")
    return {"servers": servers, "device": device}


# ----------------------------------------------------------------------------------------
# timing a scheduled kernel outside MetaSchedule (default schedule vs tuned record)
# ----------------------------------------------------------------------------------------


def arg_info(func: Any) -> list[Any]:
    """MetaSchedule's ``["TENSOR", dtype, shape]`` per PrimFunc argument."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    out = []
    for a in ArgInfo.from_prim_func(func):
        j = a.as_json()
        out.append([str(j[0]), str(j[1]), [int(s) for s in j[2]]])
    return out


def _export(lib: Any, target: Any, directory: str, name: str) -> str:
    so = os.path.join(directory, name)
    if target.cross_compiler:
        from tvm.support import cc

        lib.export_library(so, fcompile=cc.cross_compiler(target.cross_compiler))
    else:
        lib.export_library(so)
    return so


def _compile(func: Any, target: Any) -> Any:
    import tvm

    return tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target.tvm_target)


def _time_on_board(funcs: list[Any], consts: list[np.ndarray], target: Any, remote: RemoteSpec, rounds: int,
                   repeat: int, min_repeat_ms: int, pool: Any = None) -> list[float]:
    """Best-of-rounds median seconds of each PrimFunc on the board, measured alternately in one session."""
    import shutil

    from .board_pool import BoardPool, Evaluation

    tmp = tempfile.mkdtemp(prefix="tvmprune_time_")
    own = pool is None
    if own:
        pool = BoardPool(remote.address(), 1)
    try:
        paths = [_export(_compile(f, target), target, tmp, f"kernel_{os.path.basename(tmp)}_{i}.so")
                 for i, f in enumerate(funcs)]
        consts_path = save_consts(consts, os.path.join(tmp, "consts"))
        ev = Evaluation(number=1, repeat=repeat, min_repeat_ms=min_repeat_ms)
        budget = remote.run_timeout or ev.budget_s(None, max(30.0, remote.rpc_timeout)) * rounds
        out = pool.run("measure_artifacts", {
            "artifacts": paths, "args_info": arg_info(funcs[0]), "consts_path": consts_path, "number": 1,
            "repeat": repeat, "min_repeat_ms": min_repeat_ms, "rounds": rounds, "run_budget_s": budget})
    finally:
        if own:
            pool.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return [min(float(np.median(secs[r * repeat:(r + 1) * repeat])) for r in range(rounds)) for secs in out]


def kernel_timer(func: Any, consts: list[np.ndarray], target: Any, repeat: int = 5, min_repeat_ms: int = 50) -> Any:
    """Build a scheduled kernel once; returns ``f() -> median seconds of one call`` on this machine (real consts)."""
    import tvm

    lib = _compile(func, target)
    host = host_arguments(consts, arg_info(func))
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(a, dev) for a in host]
    rt = lib.mod if hasattr(lib, "mod") else lib
    f = rt.time_evaluator("main", dev, number=1, repeat=repeat, min_repeat_ms=min_repeat_ms)

    def timer() -> float:
        return float(np.median(f(*args).results))

    timer.keep = (lib, args, f)  # type: ignore[attr-defined]
    return timer


def time_kernel(func: Any, consts: list[np.ndarray], target: Any, remote: RemoteSpec | None = None,
                repeat: int = 5, min_repeat_ms: int = 50, pool: Any = None) -> float:
    """Median seconds of one call of a scheduled kernel PrimFunc with its real consts
    (on the RPC board of ``remote``, through ``pool`` when given, with bounded waits)."""
    if remote is not None and remote.is_rpc:
        return _time_on_board([func], consts, target, remote, 1, repeat, min_repeat_ms, pool)[0]
    return kernel_timer(func, consts, target, repeat, min_repeat_ms)()


def time_side_by_side(funcs: list[Any], consts: list[np.ndarray], target: Any, remote: RemoteSpec | None = None,
                      rounds: int = 3, pool: Any = None) -> list[float]:
    """Best-of-``rounds`` seconds of each PrimFunc, measured alternately (a busy machine's load
    then hits all of them alike; timing them minutes apart is not a comparison)."""
    if remote is not None and remote.is_rpc:
        return _time_on_board(funcs, consts, target, remote, rounds, 5, 50, pool)
    timers = [kernel_timer(f, consts, target) for f in funcs]
    best = [float("inf")] * len(funcs)
    for _ in range(rounds):
        for i, tm in enumerate(timers):
            best[i] = min(best[i], tm())
    return best


def run_kernel(func: Any, consts: list[np.ndarray], target: Any, inputs: list[np.ndarray]) -> np.ndarray:
    """Run a scheduled kernel on this machine: ``inputs`` = data (+ residual); returns ``out``."""
    import tvm

    mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    lib = tvm.compile(mod, target=target.tvm_target)
    info = arg_info(func)
    dev = tvm.cpu()
    args = [inputs[0], *consts, *inputs[1:]]
    out = np.zeros(info[-1][2], dtype=info[-1][1])
    targs = [tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in args] + [tvm.runtime.tensor(out, dev)]
    lib["main"](*targs)
    return targs[-1].numpy()
