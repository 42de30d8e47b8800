"""scripts/bench_models.py runs end to end on a tiny model and writes the promised records.

The record format follows the benchmark's bar: each pattern's best engine on the *same* pruned
weights (peers + PyTorch), and tvmprune's own dense build as the second reference.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_bench_models_records_and_numerics(tmp_path):
    stdout, data = _run(tmp_path, "--patterns", "1x8@0.8,unstructured@0.8", "--peers", "none", "--per-layer")
    recs = data["records"]
    tvm = {r["pattern"]: r for r in recs if r["runtime"] == "tvmprune"}
    torch_ = {r["pattern"]: r for r in recs if r["runtime"] == "pytorch"}
    assert set(tvm) == set(torch_) == {"dense", "1x8@0.8", "unstructured@0.8"}
    for r in recs:
        for key in ("model", "pattern", "median_ms", "best_engine", "best_engine_ms", "best_engine_over_this",
                    "own_dense_over_this"):
            assert key in r, key
        assert r["numerics_ok"] and r["rel_err"] < 1e-3 and r["median_ms"] > 0
    for pat, r in tvm.items():  # the only other engine here is PyTorch on the same pruned weights
        assert r["best_engine"] == "pytorch" and r["best_engine_ms"] == torch_[pat]["median_ms"]
        assert abs(r["best_engine_over_this"] - torch_[pat]["median_ms"] / r["median_ms"]) < 1e-9
        assert abs(r["own_dense_over_this"] - tvm["dense"]["median_ms"] / r["median_ms"]) < 1e-9
    assert any("1x8" in f for f in tvm["1x8@0.8"]["formats"])
    assert "best engine ÷ tvmprune" in stdout
    # per-layer breakdown for each tvmprune build, with the in-model split
    assert {p["pattern"] for p in data["per_layer"]} == {"dense", "1x8@0.8", "unstructured@0.8"}
    for p in data["per_layer"]:
        assert p["layers"] and any(r["ms"] for r in p["layers"])
        assert p["in_model"][-1]["part"].startswith("whole model")
    assert "where the time goes" in stdout


def test_bench_models_says_which_peers_are_missing(tmp_path):
    stdout, data = _run(tmp_path, "--patterns", "1x8@0.8", "--peers", "deepsparse",
                        "--peer-python", "deepsparse=/nonexistent/python",
                        env_extra={"TVMPRUNE_PEERS_DIR": str(tmp_path / "none")})
    if "deepsparse" in data["config"]["peers"]:
        return  # installed for this interpreter: nothing is missing
    assert "missing peer: deepsparse not installed" in stdout
    assert "deepsparse" in data["missing_peers"]
