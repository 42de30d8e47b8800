"""Autotuning: MetaSchedule on our kernels, the JSON database (resume, kill, corruption), apply in
compile, RPC measurement, and the emulated aarch64 board (slow).

The default part tunes tiny kernels (16->32 3x3 on 8x8) with 4-8 trials each.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

tvm = pytest.importorskip("tvm")

from tvmprune.errors import RPCConnectionError, TuningError  # noqa: E402
from tvmprune.kernels.base import ConvSpec  # noqa: E402
from tvmprune.kernels.dense_conv2d import dense_conv2d  # noqa: E402
from tvmprune.target import get_target  # noqa: E402
from tvmprune.tune import db as dbm  # noqa: E402
from tvmprune.tune.apply import schedule_source_for  # noqa: E402
from tvmprune.tune.measure import RemoteSpec, check_tracker, host_arguments, run_kernel  # noqa: E402
from tvmprune.tune.tasks import TuneTask, extract_tasks  # noqa: E402
from tvmprune.tune.tuner import allocate_trials, tune_tasks  # noqa: E402

X86 = get_target("x86")
SPEC = ConvSpec(1, 8, 8, 16, 32, 3, 3, padding=(1, 1, 1, 1), bias=True, activation="relu")
REPO = Path(__file__).resolve().parents[1]


def _weights(seed: int = 0, density: float = 1.0, n: int = 16):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(SPEC.weight_shape).astype(np.float32)
    if density < 1.0:
        nb = -(-SPEC.cout // n)
        mask = rng.random((nb, SPEC.kh * SPEC.kw * SPEC.cin)) < density
        m = np.repeat(mask, n, axis=0)[: SPEC.cout].reshape(SPEC.cout, SPEC.kh, SPEC.kw, SPEC.cin)
        w = (w * m.transpose(0, 3, 1, 2)).astype(np.float32)
    b = rng.standard_normal(SPEC.cout).astype(np.float32)
    return w, b


def _torch_ref(x_nhwc, w, b):
    y = torch.nn.functional.conv2d(torch.from_numpy(x_nhwc).permute(0, 3, 1, 2), torch.from_numpy(w),
                                   torch.from_numpy(b), padding=1)
    return torch.relu(y).permute(0, 2, 3, 1).numpy()


def _dense_task(seed: int = 0):
    w, b = _weights(seed)
    k = dense_conv2d(SPEC, w, b, X86)
    return TuneTask(k.workload_key, k, 1, ["conv"], "conv 16->32 3x3 @8x8 dense"), w, b


def _sparse_task(seed: int = 1):
    sc = pytest.importorskip("tvmprune.kernels.sparse_conv2d")
    w, b = _weights(seed, density=0.3)
    k = sc.sparse_conv2d_1xn(SPEC, w, b, 16, X86)
    return TuneTask(k.workload_key, k, 1, ["conv"], "conv 16->32 3x3 @8x8 1x16"), w, b


def _check_numerics(task, w, b, log_dir):
    src = schedule_source_for(log_dir, X86, use_shipped=False, log=None)
    assert src is not None
    contents = dbm.read_log(log_dir)
    best = contents.best(task.shash())
    assert best is not None
    from tvmprune.tune.apply import apply_record

    func = apply_record(task.kernel, contents, best)  # the best record, even if slower than default
    x = np.random.default_rng(7).standard_normal(SPEC.in_shape).astype(np.float32)
    y = run_kernel(func, task.kernel.consts, X86, [x])
    ref = _torch_ref(x, w, b)
    assert np.abs(ref).max() > 0.1
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    return src


def _n_records(log_dir) -> int:
    p = Path(log_dir) / dbm.RECORD_FILE
    return sum(1 for ln in p.read_text().splitlines() if ln.strip()) if p.is_file() else 0


# ----------------------------------------------------------------------------------------
# pure helpers
# ----------------------------------------------------------------------------------------


def test_allocate_trials_and_log_dir_name():
    t1, _, _ = _dense_task(0)
    t2 = TuneTask("k2", t1.kernel, 3, ["a", "b", "c"], "x")
    alloc = allocate_trials(100, [t1, t2], {t1.key: 1e-3, "k2": 1e-3})
    assert alloc[t1.key] + alloc["k2"] == 100
    assert alloc["k2"] > alloc[t1.key]  # used by 3 layers
    assert min(allocate_trials(2, [t1, t2], {}).values()) >= 4
    from tvmprune.tune.command import default_log_dir

    assert default_log_dir("resnet50", "1x16@0.8", "x86") == Path("tuning_logs/resnet50-1x16@0.8-x86")
    assert default_log_dir("models/my.py:make", "dense", "aarch64").name == "my-dense-aarch64"


def test_host_arguments_use_real_consts():
    task, _, _ = _dense_task(0)
    from tvmprune.tune.measure import arg_info

    info = arg_info(task.kernel.func)
    args = host_arguments(task.kernel.consts, info)
    assert len(args) == len(info)
    for c, a in zip(task.kernel.consts, args[1:]):
        assert a is c
    assert not args[-1].any()  # out starts zeroed


def test_extract_tasks_groups_by_workload():
    class P:
        def __init__(self, k, name):
            self.kernel, self.fmt, self.n, self.format_label = k, "dense", 0, "dense"
            self.info = type("I", (), {"name": name, "shape_str": "conv", "density": 1.0})()

    t, _, _ = _dense_task(0)
    t_other, _, _ = _dense_task(0)  # same shape: same workload, other weights
    tasks = extract_tasks([P(t.kernel, "a"), P(t_other.kernel, "b"), P(None, "c")])
    assert len(tasks) == 1 and tasks[0].weight == 2 and tasks[0].layers == ["a", "b"]


# ----------------------------------------------------------------------------------------
# tuning, database, resume
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dense_log(tmp_path_factory):
    d = tmp_path_factory.mktemp("dense_log")
    task, w, b = _dense_task(0)
    lines: list[str] = []
    rep = tune_tasks([task], X86, d, 8, trials_per_iter=8, population=32, log=lines.append)
    return d, task, w, b, rep, lines


def test_tune_dense_kernel_writes_database_and_matches_torch(dense_log):
    d, task, w, b, rep, lines = dense_log
    assert (d / dbm.WORKLOAD_FILE).is_file() and (d / dbm.RECORD_FILE).is_file()
    assert 1 <= _n_records(d) <= 8
    assert rep.new_trials == _n_records(d)
    r = rep.tasks[0]
    assert r.default_s and r.tuned_s and r.speedup
    assert any("trials" in ln and "best" in ln for ln in lines)  # progress lines
    manifest = json.loads((d / dbm.MANIFEST_FILE).read_text())
    assert manifest["tasks"][task.key]["shash"] == task.shash()
    src = _check_numerics(task, w, b, d)
    # the source applies the record to the kernel (unless it measured slower than the default)
    out = src(task.kernel, X86)
    entry = manifest["tasks"][task.key]
    if entry["tuned_s"] <= entry["default_vs_tuned_s"] * 1.02:
        assert out is not None and src.stats["exact"] == 1
    else:  # the default schedule won the side-by-side timing: it is kept
        assert out is None and src.stats["default"] == 1


def test_resume_does_no_duplicate_work(dense_log):
    d, task, _, _, _, _ = dense_log
    before = _n_records(d)
    lines: list[str] = []
    rep = tune_tasks([task], X86, d, 8, trials_per_iter=8, population=32, log=lines.append)
    assert rep.new_trials == 0
    assert _n_records(d) == before
    assert any("skipped" in ln for ln in lines)


@pytest.mark.slow  # re-reads a tuning database through a fresh tuning round: ~15 s
def test_corrupt_lines_are_skipped_with_a_warning(dense_log, tmp_path):
    d0, task, w, b, _, _ = dense_log
    d = tmp_path / "corrupt"
    shutil.copytree(d0, d, ignore=shutil.ignore_patterns(".lock"))
    good = _n_records(d)
    with open(d / dbm.RECORD_FILE, "a") as f:
        f.write('[0, ["truncated by a kill\n')
        f.write("this is not json\n")
        f.write("[99, []]\n")
    warnings: list[str] = []
    src = schedule_source_for(d, X86, use_shipped=False, log=warnings.append)
    assert src is not None
    assert sum("damaged" in x for x in warnings) == 3, warnings
    # tune sanitizes the files (bad lines moved aside) and carries on: nothing new to do
    lines: list[str] = []
    rep = tune_tasks([task], X86, d, 8, trials_per_iter=8, log=lines.append)
    assert any("damaged" in ln for ln in lines)
    assert rep.new_trials == 0
    assert _n_records(d) == good
    assert (d / (dbm.RECORD_FILE + ".corrupt")).is_file()
    db = dbm.open_database(d)  # MetaSchedule itself can read it
    assert len(db) == good
    _check_numerics(task, w, b, d)


@pytest.mark.slow  # ~20 s of tuning; the dense kernel's tuning round runs by default
def test_tune_sparse_1xn_kernel(tmp_path):
    task, w, b = _sparse_task(1)
    rep = tune_tasks([task], X86, tmp_path, 8, trials_per_iter=8, population=32, log=lambda s: None)
    assert _n_records(tmp_path) >= 1
    assert rep.tasks[0].tuned_s
    _check_numerics(task, w, b, tmp_path)
    # another sparsity of the same layer shape (another pruned model): the family record replays
    other, w2, b2 = _sparse_task(9)
    assert other.shash() != task.shash()
    m = json.loads((tmp_path / dbm.MANIFEST_FILE).read_text())
    for e in m["tasks"].values():  # a record that lost to its default is not used for another sparsity
        e["tuned_s"], e["speedup"] = None, 0.9
    (tmp_path / dbm.MANIFEST_FILE).write_text(json.dumps(m))
    assert schedule_source_for(tmp_path, X86, use_shipped=False, log=None)(other.kernel, X86) is None
    for e in m["tasks"].values():
        e["speedup"] = 1.5  # as if it had beaten the default when tuned (a busy machine may say otherwise)
    (tmp_path / dbm.MANIFEST_FILE).write_text(json.dumps(m))
    src = schedule_source_for(tmp_path, X86, use_shipped=False, log=None)
    func = src(other.kernel, X86)
    assert func is not None and src.stats["similar"] == 1
    x = np.random.default_rng(8).standard_normal(SPEC.in_shape).astype(np.float32)
    np.testing.assert_allclose(run_kernel(func, other.kernel.consts, X86, [x]), _torch_ref(x, w2, b2),
                               rtol=1e-4, atol=1e-4)


_KILL_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    from tests.test_tune import _dense_task, X86
    from tvmprune.tune.tuner import tune_tasks
    task, _, _ = _dense_task(3)
    tune_tasks([task], X86, sys.argv[1], 200, trials_per_iter=4, population=32)
""")


@pytest.mark.slow  # a tuning subprocess killed mid-run: ~35 s
def test_killed_tune_leaves_a_readable_database(tmp_path):
    script = tmp_path / "kill_me.py"
    script.write_text(_KILL_SCRIPT.format(repo=str(REPO)))
    log_dir = tmp_path / "log"
    proc = subprocess.Popen([sys.executable, str(script), str(log_dir)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and _n_records(log_dir) < 1 and proc.poll() is None:
            time.sleep(0.5)
        assert _n_records(log_dir) >= 1, "no record appeared"
        time.sleep(1.0)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    n = _n_records(log_dir)
    contents = dbm.read_log(log_dir)
    assert len(contents.records) >= 1
    assert len(contents.records) + len(contents.bad_lines) == n
    db = dbm.open_database(log_dir) if not contents.bad_lines else None
    if db is not None:
        assert len(db) == n
    # the lock of the killed process is gone with it: resuming works and keeps the records
    task, w, b = _dense_task(3)
    rep = tune_tasks([task], X86, log_dir, len(contents.records), trials_per_iter=4, log=lambda s: None)
    assert rep.new_trials == 0
    _check_numerics(task, w, b, log_dir)


def test_apply_in_compile_model(tmp_path):
    """compile_model(schedule_source=schedule_source_for(log)) uses the tuned record; numerics hold."""
    from tvmprune.compiler import compile_model
    from tvmprune.frontend.model_source import load_model
    from tvmprune.plan.planners import dense_only
    from tvmprune.tune.tasks import lower_model

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU()).eval()
    shape = (1, 16, 8, 8)
    plans = lower_model(net, shape, X86, dense_only)
    tasks = extract_tasks(plans)
    assert len(tasks) == 1
    tune_tasks(tasks, X86, tmp_path, 4, trials_per_iter=4, population=16, log=lambda s: None)
    # force use of the record (it may have measured slower than the default on a busy machine)
    m = json.loads((tmp_path / dbm.MANIFEST_FILE).read_text())
    for e in m["tasks"].values():
        e["tuned_s"] = None
    (tmp_path / dbm.MANIFEST_FILE).write_text(json.dumps(m))
    msgs: list[str] = []
    src = schedule_source_for(tmp_path, X86, use_shipped=False, log=msgs.append)
    cm = compile_model(net, shape, X86, planner=dense_only, schedule_source=src)
    assert cm.meta["tuned_kernels"] == 1 and src.stats["exact"] == 1
    x = torch.randn(shape)
    with torch.no_grad():
        ref = net(x).numpy()
    np.testing.assert_allclose(cm.run(x.numpy()), ref, rtol=1e-4, atol=1e-4)
    del load_model


def test_schedule_source_for_missing_log(tmp_path):
    with pytest.raises(TuningError, match="not a tuning log"):
        schedule_source_for(tmp_path / "nope", X86, use_shipped=False)
    assert schedule_source_for(None, X86, use_shipped=False) is None


def test_shipped_schedules_are_found_and_small():
    from tvmprune.tune.apply import shipped_dir

    d = shipped_dir("x86-avx512")
    assert (d / dbm.RECORD_FILE).is_file(), "schedules/x86-avx512 ships no records"
    size = sum(p.stat().st_size for p in d.iterdir() if p.is_file())
    assert size < 500_000
    contents = dbm.read_log(d)
    assert not contents.bad_lines and len(contents.records) >= 1
    msgs: list[str] = []
    assert schedule_source_for(None, "x86-avx512", use_shipped=True, log=msgs.append) is not None
    assert any("shipped" in m for m in msgs)


def test_shipped_avx2_schedules_record_their_gain():
    from tvmprune.tune.apply import recorded_speedup, shipped_dir

    d = shipped_dir("x86-avx2")
    assert d.name == "x86-avx2" and (d / dbm.RECORD_FILE).is_file(), "schedules/x86-avx2 ships no records"
    contents = dbm.read_log(d)
    assert not contents.bad_lines and len(contents.records) >= 1
    entries = dbm.read_manifest(d)["tasks"].values()
    assert entries and all((recorded_speedup(e) or 0) >= 1.02 and e["family"] for e in entries)


# ----------------------------------------------------------------------------------------
# RPC
# ----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_tracker_fails_fast():
    port = _free_port()  # nothing listens there
    t0 = time.time()
    with pytest.raises(RPCConnectionError, match="cannot reach"):
        check_tracker(RemoteSpec("127.0.0.1", port, "x"), timeout=5)
    assert time.time() - t0 < 5
    # a port that accepts but never answers must not hang either
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        t0 = time.time()
        with pytest.raises(RPCConnectionError):
            check_tracker(RemoteSpec("127.0.0.1", silent.getsockname()[1], "x"), timeout=3)
        assert time.time() - t0 < 10


def test_cli_tune_unreachable_tracker_is_a_clean_error(capsys):
    from tvmprune.cli import main

    t0 = time.time()
    rc = main(["tune", "--model", "tiny_cnn", "--tracker", f"127.0.0.1:{_free_port()}", "--key", "k",
               "--connect-timeout", "3"])
    assert rc == 2
    assert "RPC tracker" in capsys.readouterr().err
    assert time.time() - t0 < 10


@pytest.fixture(scope="module")
def rpc_board():
    tport, sport = _free_port(), _free_port()
    env = dict(os.environ)
    procs = [subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port",
                               str(tport), "--port-end", str(tport + 1)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)]
    up = time.time() + 120  # the tracker imports TVM first: slow on a loaded machine
    while time.time() < up:
        try:
            socket.create_connection(("127.0.0.1", tport), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    procs.append(subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1", "--port",
                                   str(sport), "--port-end", str(sport + 1), "--tracker", f"127.0.0.1:{tport}",
                                   "--key", "x86test", "--no-fork"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                  start_new_session=True))
    remote = RemoteSpec("127.0.0.1", tport, "x86test", session_timeout_sec=60)
    deadline = time.time() + 90
    err = None
    while time.time() < deadline:
        try:
            check_tracker(remote, timeout=30)
            break
        except RPCConnectionError as e:
            err = e
            time.sleep(1)
    else:
        for p in procs:
            os.killpg(p.pid, signal.SIGKILL)
        pytest.fail(f"local RPC tracker/server did not come up: {err}")
    yield remote
    for p in procs:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


@pytest.mark.slow  # a tracker, a server and a tuning round over RPC: ~60 s; RPC faults: test_rpc_faults.py
def test_tune_over_rpc_tracker(rpc_board, tmp_path):
    info = check_tracker(rpc_board, timeout=60)  # a --no-fork server re-registers after the last session
    assert info["servers"] == 1
    with pytest.raises(RPCConnectionError, match="no server registered under key"):
        check_tracker(RemoteSpec(rpc_board.tracker_host, rpc_board.tracker_port, "other"), timeout=5)
    task, w, b = _dense_task(5)
    rep = tune_tasks([task], X86, tmp_path, 4, trials_per_iter=4, population=16, remote=rpc_board,
                     log=lambda s: None)
    contents = dbm.read_log(tmp_path)
    assert len(contents.records) >= 1 and any(r.run_secs for r in contents.records)
    assert rep.tasks[0].default_s  # the default schedule was timed through the RPC server too
    _check_numerics(task, w, b, tmp_path)


# ----------------------------------------------------------------------------------------
# emulated aarch64 and armv7 boards (slow)
# ----------------------------------------------------------------------------------------


def _emulated_board_root(arch: str):
    """(module, root) of the emulated board of ``arch``; skips with the reason where it cannot be built."""
    sys.path.insert(0, str(REPO / "scripts"))
    import emulated_board as eb

    why = eb.unavailable_reason(arch=arch)
    if why:
        pytest.skip(why)
    try:
        return eb, eb.ensure_root(arch=arch)
    except eb.BoardUnavailable as e:
        pytest.skip(str(e))


@pytest.mark.slow
@pytest.mark.parametrize("arch,target_name", [("aarch64", "aarch64"), ("armv7", "arm_cpu")])
def test_tune_on_emulated_board(tmp_path, arch, target_name):
    """Builds (or reuses) the qemu board's root, checks it registers at a local tracker under its
    key, tunes a 1x4 sparse conv through its RPC server, and checks the tuned kernel's numerics on
    the board against PyTorch. Emulated times mean nothing."""
    eb, root = _emulated_board_root(arch)
    target = get_target(target_name)
    sc = pytest.importorskip("tvmprune.kernels.sparse_conv2d")
    with eb.EmulatedBoard(root, arch=arch) as board:
        assert board.key == {"aarch64": "aarch64-emulated", "armv7": "cortex-a7"}[arch]
        remote = RemoteSpec("127.0.0.1", board.tracker_port, board.key, session_timeout_sec=600)
        info = check_tracker(remote, timeout=120)
        assert info["servers"] == 1 and "present" in info["device"]
        w, b = _weights(2, density=0.3, n=4)
        k = sc.sparse_conv2d_1xn(SPEC, w, b, 4, target)
        task = TuneTask(k.workload_key, k, 1, ["conv"], "conv 16->32 3x3 @8x8 1x4")
        tune_tasks([task], target, tmp_path, 4, trials_per_iter=4, population=16, remote=remote,
                   builder_timeout=600, emulated=True, log=print)
        contents = dbm.read_log(tmp_path)
        best = contents.best(task.shash())
        assert best is not None and best.run_secs
        from tvmprune.tune.apply import apply_record

        func = apply_record(k, contents, best)
        x = np.random.default_rng(3).standard_normal(SPEC.in_shape).astype(np.float32)
        y = board.run_kernel(func, k.consts, target, [x])
        np.testing.assert_allclose(y, _torch_ref(x, w, b), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------

_MODEL_FILE = textwrap.dedent("""
    import torch

    def make():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU())
""")


def test_cli_tune_report_resume_and_compile(tmp_path, capsys):
    from tvmprune.cli import main

    mf = tmp_path / "one_conv.py"
    mf.write_text(_MODEL_FILE)
    log = tmp_path / "log"
    argv = ["tune", "--model", f"{mf}:make", "--input-shape", "1x16x8x8", "--formats", "dense", "--trials", "4",
            "--trials-per-iter", "4", "--population", "16", "--log", str(log)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "1 distinct kernel" in out and "speedup" in out and "end to end" in out
    rep = json.loads((log / "report.json").read_text())
    assert rep["tasks"][0]["trials"] >= 1 and rep["tasks"][0]["default_ms"] > 0
    assert rep["model_default_ms"] > 0 and rep["model_tuned_ms"] > 0
    n = _n_records(log)
    assert main(argv + ["--no-e2e"]) == 0  # resume: nothing new
    assert "skipped" in capsys.readouterr().out and _n_records(log) == n
    assert main(["compile", "--model", f"{mf}:make", "--input-shape", "1x16x8x8", "--formats", "dense", "--tuning-log",
                 str(log), "-o", str(tmp_path / "mod")]) == 0
    assert "tuning log" in capsys.readouterr().out
    assert (tmp_path / "mod" / "model.so").is_file()
