"""A board or tracker that fails mid-tune: bounded waits, a one-line error, records kept, resume.

Everything runs on loopback: TVM's stock ``rpc_tracker`` and ``rpc_server`` processes, started
by the tests in their own process groups and stopped by their PIDs in a ``finally``. The
tuned model is one 16->32 3x3 conv on 8x8 (a few ms per candidate); ``--rpc-timeout`` is
short so that each fault ends the run within seconds of the configured bound.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("tvm")

from tvmprune.tune import db as dbm  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RPC_TIMEOUT = 10.0
MODEL = textwrap.dedent("""
    import torch

    def make():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU())
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Loopback:
    """A tracker and servers on 127.0.0.1 (each in its own process group)."""

    def __init__(self, key: str = "faulty") -> None:
        self.key = key
        self.port = _free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.start_tracker()

    def _spawn(self, name: str, argv: list[str]) -> None:
        self.procs[name] = subprocess.Popen([sys.executable, "-m", *argv], stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, env=_env(), start_new_session=True)

    def start_tracker(self) -> None:
        self._spawn("tracker", ["tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(self.port),
                                "--port-end", str(self.port + 1)])
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("tracker did not come up")

    def start_server(self, name: str) -> None:
        p = _free_port()
        self._spawn(name, ["tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(p), "--port-end",
                           str(p + 1), "--tracker", f"127.0.0.1:{self.port}", "--key", self.key])

    def wait_servers(self, n: int, timeout: float = 180) -> None:
        from tvm.rpc import base

        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                    s.settimeout(5)
                    import struct

                    s.sendall(struct.pack("<i", base.RPC_TRACKER_MAGIC))
                    base.recvall(s, 4)
                    base.sendjson(s, [base.TrackerCode.SUMMARY])
                    summary = base.recvjson(s)[1]
                    if sum(1 for i in summary.get("server_info", []) if i["key"].endswith(self.key)) >= n:
                        return
            except OSError:
                pass
            time.sleep(1)
        raise RuntimeError(f"{n} server(s) did not register")

    def signal(self, name: str, sig: int) -> None:
        p = self.procs[name]
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        if sig == signal.SIGKILL:
            p.wait()

    def stop(self) -> None:
        for p in self.procs.values():
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass
            p.wait()


def _n_records(log_dir: Path) -> int:
    p = log_dir / dbm.RECORD_FILE
    return sum(1 for ln in p.read_text().splitlines() if ln.strip()) if p.is_file() else 0


def _tune_argv(tmp: Path, board: Loopback, trials: int = 400, *extra: str) -> list[str]:
    mf = tmp / "one_conv.py"
    mf.write_text(MODEL)
    return [sys.executable, "-m", "tvmprune", "tune", "--model", f"{mf}:make", "--input-shape", "1x16x8x8",
            "--formats", "dense", "--trials", str(trials), "--trials-per-iter", "4", "--population", "16",
            "--tracker", f"127.0.0.1:{board.port}", "--key", board.key, "--rpc-timeout", str(RPC_TIMEOUT),
            "--log", str(tmp / "log"), *extra]


class Tune:
    """``tvmprune tune`` in a subprocess (own process group), output to files."""

    def __init__(self, argv: list[str], tmp: Path) -> None:
        self.out, self.err = tmp / "tune.out", tmp / "tune.err"
        with open(self.out, "wb") as o, open(self.err, "wb") as e:
            self.proc = subprocess.Popen(argv, stdout=o, stderr=e, env=_env(), start_new_session=True)
        self.seen: dict[int, float] = {}  # pid -> create time of every descendant seen

    def sample_children(self) -> None:
        import psutil

        try:
            for c in psutil.Process(self.proc.pid).children(recursive=True):
                self.seen[c.pid] = c.create_time()
        except psutil.Error:
            pass

    def children_left(self) -> list[int]:
        """Descendants seen while it ran that are still alive (the same process, not a reused pid)."""
        import psutil

        left = []
        for pid, created in self.seen.items():
            try:
                p = psutil.Process(pid)
                if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                    left.append(pid)
            except psutil.Error:
                pass
        return left

    def wait_records(self, log_dir: Path, n: int = 1, timeout: float = 400) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline and _n_records(log_dir) < n and self.proc.poll() is None:
            self.sample_children()
            time.sleep(0.5)
        self.sample_children()
        assert _n_records(log_dir) >= n, f"no record appeared:\n{self.text()}"

    def wait_exit(self, timeout: float) -> tuple[int, float]:
        t0 = time.time()
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"tune still running {timeout:.0f} s after the fault:\n{self.text()}")
        return rc, time.time() - t0

    def text(self) -> str:
        return self.out.read_text(errors="replace") + "\n--- stderr ---\n" + self.err.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()


def _assert_clean_console(tune: Tune) -> None:
    text = tune.text()
    assert "Traceback" not in text, text
    assert "Cannot connect to tracker" not in text, text
    assert "RPCRunner" not in text, text


def _assert_database_ok(log_dir: Path) -> int:
    contents = dbm.read_log(log_dir)
    assert not contents.bad_lines, contents.bad_lines
    assert len(contents.records) >= 1
    assert all(r.run_secs or r.raw[1] for r in contents.records)
    return len(contents.records)


# ----------------------------------------------------------------------------------------
# fast: the bounded pieces on their own
# ----------------------------------------------------------------------------------------


def test_session_request_is_bounded_for_a_silent_tracker_and_a_missing_key():
    from tvmprune.tune.rpc_session import BoardAddress, BoardError, request_session

    with socket.socket() as silent:  # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        t0 = time.time()
        with pytest.raises(BoardError, match="no board under key 'k' became free within 2 s") as ei:
            request_session(BoardAddress("127.0.0.1", silent.getsockname()[1], "k", rpc_timeout=2))
        assert ei.value.stage == "session" and time.time() - t0 < 4
    t0 = time.time()
    with pytest.raises(BoardError, match="cannot reach the RPC tracker"):
        request_session(BoardAddress("127.0.0.1", _free_port(), "k", rpc_timeout=2))
    assert 1.5 < time.time() - t0 < 4  # a refused tracker is retried quietly until the bound


def test_run_budget_follows_the_expected_time():
    from tvmprune.tune.board_pool import Evaluation

    ev = Evaluation(number=3, repeat=3, min_repeat_ms=20)
    assert ev.budget_s(None, 10.0) == 10.0
    assert ev.budget_s(1e-4, 10.0) == 10.0  # tiny kernels: the floor
    assert ev.budget_s(0.5, 10.0) == pytest.approx(50 * 3 * 1.5)


def test_pool_gives_up_a_missing_tracker_within_the_bound_and_leaves_no_worker():
    import psutil

    from tvmprune.errors import BoardLostError
    from tvmprune.tune.board_pool import BoardPool
    from tvmprune.tune.rpc_session import BoardAddress

    lines: list[str] = []
    pool = BoardPool(BoardAddress("127.0.0.1", _free_port(), "k", rpc_timeout=3), log=lines.append)
    try:
        t0 = time.time()
        with pytest.raises(BoardLostError, match="cannot reach the RPC tracker"):
            pool.run("measure_artifacts", {"artifacts": [], "args_info": [], "consts_path": None, "number": 1,
                                           "repeat": 1, "min_repeat_ms": 1, "rounds": 1, "run_budget_s": 1})
        took = time.time() - t0
        pids = [w.proc.pid for w in pool._all if w.proc is not None]
        assert pool.lost and "session" in pool.lost
        assert any("board trouble" in ln for ln in lines)
    finally:
        pool.close()
    assert took < 3 + 180  # the bound plus the worker's start (importing TVM on a loaded machine)
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def _fake_tracker_pointing_at(server_port: int) -> tuple[socket.socket, "threading.Thread"]:
    """A tracker that answers one session request with ``127.0.0.1:server_port`` (a silent 'board')."""
    import json
    import struct
    import threading

    from tvm.rpc import base

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)

    def serve() -> None:
        try:
            conn, _ = lsock.accept()
        except OSError:
            return
        with conn:
            base.recvall(conn, 4)
            conn.sendall(struct.pack("<i", base.RPC_TRACKER_MAGIC))
            base.recvjson(conn)
            reply = json.dumps([base.TrackerCode.SUCCESS, ["127.0.0.1", server_port, "k:0.1"]]).encode()
            conn.sendall(struct.pack("<i", len(reply)) + reply)
            time.sleep(5)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return lsock, t


def test_a_board_that_accepts_but_never_answers_is_killed_at_its_budget():
    """What a SIGSTOPped server looks like: TCP accepts, the RPC handshake never comes (C++ blocks)."""
    from tvmprune.tune.rpc_session import BoardAddress
    from tvmprune.tune.rpc_worker import BoardTimeout, BoardWorker

    w = BoardWorker()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        tracker, _ = _fake_tracker_pointing_at(silent.getsockname()[1])
        try:
            w.run("measure_artifacts", {"addr": BoardAddress("127.0.0.1", 1, "k", rpc_timeout=0.5), "artifacts": [],
                                        "args_info": [], "consts_path": None, "number": 1, "repeat": 1,
                                        "min_repeat_ms": 1, "rounds": 1, "run_budget_s": 1})  # warm the worker
        except Exception:  # noqa: BLE001 - port 1 refuses: only the start matters
            pass
        try:
            pid = w.proc.pid
            t0 = time.time()
            with pytest.raises(BoardTimeout) as ei:
                w.run("measure_artifacts", {"addr": BoardAddress("127.0.0.1", tracker.getsockname()[1], "k",
                                                                 rpc_timeout=3),
                                            "artifacts": [], "args_info": [], "consts_path": None, "number": 1,
                                            "repeat": 1, "min_repeat_ms": 1, "rounds": 1, "run_budget_s": 1})
            took = time.time() - t0
            assert ei.value.stage == "session"
            assert 3 <= took < 3 + 2 + 5
            assert w.proc is None
            import psutil

            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        finally:
            w.kill()
            tracker.close()


# the bound: building the next batch (up to a minute on a loaded 2-core machine) + the session wait
# (rpc timeout, twice for a stopped server) + worker kill + exit
BOUND_S = RPC_TIMEOUT * 2 + 150


class _Rig:
    """A loopback board and the ``tvmprune tune`` runs started on it; :meth:`close` kills them all."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.board, self.tunes = tmp, Loopback(), []

    def start_tune(self, trials: int = 400, *extra: str) -> Tune:
        tune = Tune(_tune_argv(self.tmp, self.board, trials, *extra), self.tmp)
        self.tunes.append(tune)
        return tune

    def tune_with_records(self, servers: tuple[str, ...] = ("s1",), trials: int = 400, *extra: str) -> Tune:
        """Start ``servers``, wait until they registered, start a tune and wait for its first 2 records."""
        for name in servers:
            self.board.start_server(name)
        self.board.wait_servers(len(servers))
        tune = self.start_tune(trials, *extra)
        tune.wait_records(self.tmp / "log", 2)
        return tune

    def close(self) -> None:
        for tune in self.tunes:
            tune.kill()
        self.board.stop()


@pytest.fixture
def rig(tmp_path):
    r = _Rig(tmp_path)
    try:
        yield r
    finally:
        r.close()


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["server", "tracker"])
def test_board_or_tracker_killed_mid_tune_stops_with_one_line_and_resumes(tmp_path, rig, fault):
    board = rig.board
    tune = rig.tune_with_records()
    board.signal("s1" if fault == "server" else "tracker", signal.SIGKILL)
    rc, took = tune.wait_exit(BOUND_S + 60)
    print(f"{fault} killed: tune exited {rc} after {took:.1f} s")
    assert rc == 2, tune.text()
    err = tune.err.read_text()
    assert "lost the RPC board" in err and "run the same command again" in err, tune.text()
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1, err
    assert took < BOUND_S, f"took {took:.0f} s"
    _assert_clean_console(tune)
    assert tune.seen and not tune.children_left(), tune.children_left()
    n = _assert_database_ok(tmp_path / "log")
    # a rerun resumes: the records are counted, new ones are added
    if fault == "tracker":
        board.start_tracker()
    board.start_server("s2")
    board.wait_servers(1)
    rerun = rig.start_tune(n + 4)
    rc2, _ = rerun.wait_exit(600)
    assert rc2 == 0, rerun.text()
    assert f"{n} in the log" in rerun.out.read_text()
    assert _n_records(tmp_path / "log") > n


@pytest.mark.slow
def test_stopped_server_times_out_instead_of_hanging(tmp_path, rig):
    tune = rig.tune_with_records()
    rig.board.signal("s1", signal.SIGSTOP)
    rc, took = tune.wait_exit(BOUND_S + 60)
    print(f"server stopped: tune exited {rc} after {took:.1f} s")
    assert rc == 2, tune.text()
    assert "lost the RPC board" in tune.err.read_text(), tune.text()
    assert took < BOUND_S
    _assert_clean_console(tune)
    assert not tune.children_left()
    _assert_database_ok(tmp_path / "log")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_while_waiting_on_a_stopped_board_exits_130_and_leaves_no_process(tmp_path, rig, sig):
    tune = rig.tune_with_records(("s1",), 400, "--rpc-timeout", "600")
    rig.board.signal("s1", signal.SIGSTOP)
    time.sleep(RPC_TIMEOUT)  # the next batch is building or waiting on the stopped board
    tune.sample_children()
    n_before = _n_records(tmp_path / "log")
    os.kill(tune.proc.pid, sig)
    rc, took = tune.wait_exit(60)
    print(f"signal {sig} while waiting: tune exited {rc} after {took:.1f} s")
    assert rc == 130, tune.text()
    assert "records kept" in tune.out.read_text() or "record(s) kept" in tune.out.read_text(), tune.text()
    time.sleep(1)
    assert not tune.children_left(), tune.children_left()
    _assert_clean_console(tune)
    assert _assert_database_ok(tmp_path / "log") >= n_before


@pytest.mark.slow
def test_two_boards_one_killed_the_run_completes_on_the_other(tmp_path, rig):
    tune = rig.tune_with_records(("s1", "s2"), 16)
    rig.board.signal("s1", signal.SIGKILL)
    rc, took = tune.wait_exit(900)
    print(f"one of two boards killed: tune finished {rc} {took:.1f} s later")
    assert rc == 0, tune.text()
    assert "2 server(s)" in tune.out.read_text()
    assert _assert_database_ok(tmp_path / "log") >= 8
    _assert_clean_console(tune)


@pytest.mark.slow
def test_two_boards_on_one_tracker_both_measure(tmp_path, rig):
    """Two loopback servers under one key: the pool measures on both (``logs/rpc.log`` names the
    board of every measurement) and the console says how many candidates run at once."""
    import re

    tune = rig.tune_with_records(("s1", "s2"), 12)
    rc, _ = tune.wait_exit(600)
    assert rc == 0, tune.text()
    assert "2 candidate(s) measured at once" in tune.out.read_text(), tune.text()
    rpc_log = (tmp_path / "log" / "logs" / "rpc.log").read_text()
    boards = set(re.findall(r"on board (\S+)", rpc_log))
    assert len(boards) == 2, rpc_log
    _assert_clean_console(tune)
    assert _assert_database_ok(tmp_path / "log") >= 2
