"""scripts/bench_models.py runs end to end on a tiny model and writes the promised records."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_models.py"


def _run(tmp_path, *extra):
    out = tmp_path / "bench.json"
    env = dict(os.environ)
    env.pop("TVM_NUM_THREADS", None)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--models", "tiny_cnn", "--input-shape", "1x3x16x16", "--repeat", "3",
         "--rounds", "2", "--warmup", "1", "--json", str(out), *extra],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_bench_models_records_and_numerics(tmp_path):
    stdout, data = _run(tmp_path, "--patterns", "1x8@0.8,unstructured@0.8", "--no-ort", "--per-layer")
    recs = data["records"]
    tvm = {r["pattern"]: r for r in recs if r["runtime"] == "tvm"}
    assert set(tvm) == {"dense", "1x8@0.8", "unstructured@0.8"}
    assert any(r["runtime"] == "pytorch" for r in recs)
    for r in recs:
        for key in ("model", "pattern", "ms", "best_dense_ms", "best_dense_runtime", "speedup_vs_best_dense"):
            assert key in r, key
        assert r["numerics_ok"] and r["rel_err"] < 1e-3
        assert r["ms"] > 0 and r["speedup_vs_best_dense"] > 0
    best = min(r["ms"] for r in recs if r["pattern"] == "dense")
    assert all(abs(r["best_dense_ms"] - best) < 1e-9 for r in recs)
    assert any("1x8" in f for f in tvm["1x8@0.8"]["formats"])
    # per-layer breakdown for each pruned model, with the in-model split
    assert {p["pattern"] for p in data["per_layer"]} == {"1x8@0.8", "unstructured@0.8"}
    for p in data["per_layer"]:
        assert p["layers"] and any(r["ms"] for r in p["layers"])
        assert p["in_model"][-1]["part"].startswith("whole model")
    assert "where the time goes" in stdout


def test_bench_models_says_when_onnxruntime_is_missing(tmp_path):
    stdout, _ = _run(tmp_path, "--patterns", "1x8@0.8", "--no-ort")
    assert "ONNX Runtime: --no-ort" in stdout
