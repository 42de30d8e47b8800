"""`tvmprune calibrate`: over RPC on a (loopback) board, and ARM parameters marked uncalibrated."""

from __future__ import annotations

import json
import time

import pytest

from tvmprune.cli import main
from tvmprune.kernels.base import ConvSpec
from tvmprune.plan import calibrate as calibrate_mod
from tvmprune.plan.roofline import calibration_path, params_for
from tvmprune.target import get_target


def test_arm_parameters_say_they_are_uncalibrated(tmp_path, monkeypatch):
    monkeypatch.setenv("TVMPRUNE_CACHE_DIR", str(tmp_path))
    for name in ("arm_cpu", "aarch64"):
        src = params_for(get_target(name)).source
        assert "UNCALIBRATED" in src and f"calibrate --target {name} --tracker" in src
    assert "UNCALIBRATED" not in params_for(get_target("x86")).source


def test_calibrate_board_target_without_tracker_is_a_clear_error(capsys):
    assert main(["calibrate", "--target", "arm_cpu"]) == 2
    assert "--tracker HOST:PORT --key KEY" in capsys.readouterr().err
    assert main(["calibrate", "--target", "arm_cpu", "--tracker", "127.0.0.1:9"]) == 2
    assert "give both --tracker" in capsys.readouterr().err


@pytest.mark.slow  # ~2-3 min: every probe kernel is uploaded and timed through the tracker
def test_calibrate_over_rpc_stores_board_parameters(tmp_path, monkeypatch, capsys):
    from tvm import rpc
    from tvm.rpc.server import Server
    from tvm.rpc.tracker import Tracker

    monkeypatch.setenv("TVMPRUNE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(calibrate_mod, "PROBE_LAYERS", {  # small probes: the test is about the path
        "3x3": ConvSpec(1, 8, 8, 16, 16, 3, 3, padding=(1, 1, 1, 1)), "1x1": ConvSpec(1, 8, 8, 32, 16, 1, 1)})
    tracker = Tracker("127.0.0.1", port=9720, port_end=9800, silent=True)
    server = Server("127.0.0.1", port=9810, port_end=9900, tracker_addr=("127.0.0.1", tracker.port),
                    key="calib-board", silent=True)
    try:
        for _ in range(60):
            if rpc.connect_tracker("127.0.0.1", tracker.port).summary().get("server_info"):
                break
            time.sleep(0.5)
        rc = main(["calibrate", "--target", "x86", "--tracker", f"127.0.0.1:{tracker.port}", "--key",
                   "calib-board", "--rpc-timeout", "60"])
        assert rc == 0, capsys.readouterr().err
    finally:
        server.terminate()
        tracker.terminate()
    out = capsys.readouterr().out
    assert "on board calib-board" in out
    body = json.loads(calibration_path(get_target("x86")).read_text())
    assert body["measured_on"] == f"rpc:127.0.0.1:{tracker.port}/calib-board"
    assert all(v > 0 for m in body["measurements"].values() for k, v in m.items() if k.endswith("_ms"))
    assert params_for(get_target("x86")).source.startswith("calibrated")
    assert body["params"]["dense_efficiency"] == pytest.approx(params_for(get_target("x86")).dense_efficiency)
