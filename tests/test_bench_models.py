"""scripts/bench_models.py runs end to end on a tiny model and writes the promised records.

The record format follows the benchmark's bar: each pattern's best engine on the *same* pruned
weights (peers + PyTorch), and tvmprune's own dense build as the second reference.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_models.py"


def _run(tmp_path, *extra, env_extra=None):
    out = tmp_path / "bench.json"
    env = dict(os.environ, **(env_extra or {}))
    env.pop("TVM_NUM_THREADS", None)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--models", "tiny_cnn", "--input-shape", "1x3x16x16", "--repeat", "3",
         "--rounds", "2", "--warmup", "1", "--json", str(out), *extra],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


@pytest.mark.slow  # a subprocess compiling and timing two models: ~45 s
def test_bench_models_records_and_numerics(tmp_path):
    # the only peer asked for is one this interpreter cannot have: the run says it is missing
    stdout, data = _run(tmp_path, "--patterns", "1x8@0.8,unstructured@0.8", "--peers", "deepsparse",
                        "--peer-python", "deepsparse=/nonexistent/python", "--per-layer",
                        env_extra={"TVMPRUNE_PEERS_DIR": str(tmp_path / "none")})
    if "deepsparse" not in data["config"]["peers"]:
        assert "missing peer: deepsparse not installed" in stdout and "deepsparse" in data["missing_peers"]
    recs = data["records"]
    tvm = {r["pattern"]: r for r in recs if r["runtime"] == "tvmprune"}
    torch_ = {r["pattern"]: r for r in recs if r["runtime"] == "pytorch"}
    assert set(tvm) == set(torch_) == {"dense", "1x8@0.8", "unstructured@0.8"}
    for r in recs:
        for key in ("model", "pattern", "median_ms", "best_engine", "best_engine_ms", "best_engine_over_this",
                    "own_dense_over_this"):
            assert key in r, key
        assert r["numerics_ok"] and r["rel_err"] < 1e-3 and r["median_ms"] > 0
    for pat, r in tvm.items():  # best engine: the fastest non-tvmprune candidate on the same pruned weights
        others = [o for o in recs if o["pattern"] == pat and o["runtime"] != "tvmprune"]
        best = min(others, key=lambda o: o["median_ms"])
        assert r["best_engine"] == best["runtime"] and r["best_engine_ms"] == best["median_ms"]
        assert abs(r["best_engine_over_this"] - best["median_ms"] / r["median_ms"]) < 1e-9
        assert abs(r["own_dense_over_this"] - tvm["dense"]["median_ms"] / r["median_ms"]) < 1e-9
    assert any("1x8" in f for f in tvm["1x8@0.8"]["formats"])
    assert "best engine ÷ tvmprune" in stdout
    # per-layer breakdown for each tvmprune build, with the in-model split
    assert {p["pattern"] for p in data["per_layer"]} == {"dense", "1x8@0.8", "unstructured@0.8"}
    for p in data["per_layer"]:
        assert p["layers"] and any(r["ms"] for r in p["layers"])
        assert p["in_model"][-1]["part"].startswith("whole model")
    assert "where the time goes" in stdout
