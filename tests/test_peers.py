"""Peer engines in their own processes, and interleaved timing (no speed is asserted: only behaviour)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tvmprune.measure.peers import PeerEngine, PeerEngineError, PeerRunner, engine_name, export_onnx, find_engine
from tvmprune.measure.runners import TorchRunner, max_rel_err, time_interleaved


class _FakeRunner:
    runtime, pattern = "fake", "dense"

    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name

    def sample(self, k: int) -> list[float]:
        self.log += [self.name] * k
        return [0.001 * (1 + len(self.log))] * k

    def close(self) -> None:
        pass


def test_time_interleaved_takes_blocks_in_rounds() -> None:
    log: list[str] = []
    stats = time_interleaved([_FakeRunner(log, "a"), _FakeRunner(log, "b")], repeat=6, rounds=2, settle_s=0)
    # per round and runner: one discarded run, then the block of 3
    assert log == ["a"] * 4 + ["b"] * 4 + ["a"] * 4 + ["b"] * 4
    assert [s["repeats"] for s in stats] == [6, 6]


def test_engine_names_and_errors() -> None:
    assert engine_name("ORT") == "onnxruntime" and engine_name("ov") == "openvino"
    with pytest.raises(PeerEngineError, match="unknown engine 'tensorrt'.*onnxruntime, openvino, deepsparse"):
        engine_name("tensorrt")


def test_missing_engine_says_how_to_install(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TVMPRUNE_PEERS_DIR", str(tmp_path))
    fake = tmp_path / "nopython"
    r = find_engine("deepsparse", {"deepsparse": str(fake)})
    if isinstance(r, PeerEngine):
        pytest.skip("deepsparse is importable by this interpreter")
    assert "deepsparse not installed" in r and "scripts/install_peers.sh deepsparse" in r


def test_broken_model_is_a_clear_error(tmp_path) -> None:
    peer = find_engine("onnxruntime")
    if not isinstance(peer, PeerEngine):
        pytest.skip(peer)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(PeerEngineError, match="onnxruntime could not load the model"):
        PeerRunner(peer, str(bad), (1, 3, 8, 8), threads=1, warmup=0)


def test_peer_runs_same_weights_as_pytorch(tmp_path) -> None:
    peer = find_engine("onnxruntime")
    if not isinstance(peer, PeerEngine):
        pytest.skip(peer)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4)).eval()
    shape = (1, 3, 16, 16)
    path = export_onnx(model, shape, tmp_path / "m.onnx")
    r = PeerRunner(peer, path, shape, threads=1, warmup=1)
    try:
        x = np.random.default_rng(3).standard_normal(shape).astype("float32")
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        assert max_rel_err(r.run(x, tmp_path), ref) < 1e-5
        t = TorchRunner(model, "dense", shape, warmup=0)
        stats = time_interleaved([r, t], repeat=4, settle_s=0)
        assert all(s["repeats"] == 4 and s["median_ms"] > 0 for s in stats)
    finally:
        r.close()
    assert r.proc.poll() is not None  # the worker process is gone
