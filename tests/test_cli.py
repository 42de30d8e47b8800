"""The CLI as a user runs it: clear one-line errors, no tracebacks, files written."""

import json
import os
import subprocess
import sys

import pytest


def run_cli(*args, check=False, cwd=None):
    p = subprocess.run([sys.executable, "-m", "tvmprune.cli", *args], capture_output=True, text=True, cwd=cwd)
    if check:
        assert p.returncode == 0, p.stderr
    return p


@pytest.mark.parametrize(
    "args, message",
    [
        (["compile", "--model", "tiny_cnn", "--target", "sparc", "-o", "{tmp}/o"], "unknown target 'sparc'"),
        (["compile", "--model", "resnet9000", "-o", "{tmp}/o"], "unknown model 'resnet9000'"),
        (["compile", "--model", "tiny_cnn", "--input-shape", "1x3x16", "-o", "{tmp}/o"], "bad input shape"),
        (["compile", "--model", "tiny_cnn", "--input-shape", "1x5x16x16", "-o", "{tmp}/o"], "does not fit the model"),
        (["compile", "--model", "tiny_cnn", "--input-shape", "1x3x16x16", "-o", "{tmp}/file.txt"], "not a directory"),
        (["compile", "--model", "nofile.py:make", "-o", "{tmp}/o"], "does not exist"),
        (["bench", "{tmp}"], "no meta.json"),
    ],
)
def test_bad_input_gives_clear_error_without_traceback(tmp_path, args, message, capfd):
    # in this process (a subprocess per case cost ~8 s of imports each); the exit status and stderr
    # of a real process: test_unwritable_output_dir_under_proc
    from tvmprune.cli import main

    (tmp_path / "file.txt").write_text("x")
    rc = main([a.replace("{tmp}", str(tmp_path)) for a in args])
    err = capfd.readouterr().err
    assert rc == 2
    assert message in err
    assert "Traceback" not in err
    assert err.startswith("error: ")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; read-only dir check needs a normal user")
def test_unwritable_output_dir(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    p = run_cli("compile", "--model", "tiny_cnn", "--input-shape", "1x3x16x16", "-o", str(ro / "out"))
    assert p.returncode == 2 and "not writable" in p.stderr


def test_unwritable_output_dir_under_proc(tmp_path):
    # /proc refuses new directories even for root
    p = run_cli("compile", "--model", "tiny_cnn", "--input-shape", "1x3x16x16", "-o", "/proc/tvmprune_out")
    assert p.returncode == 2 and "not writable" in p.stderr and "Traceback" not in p.stderr


def test_user_model_file_compile_and_bench(tmp_path):
    (tmp_path / "net.py").write_text(
        "import torch\n"
        "def make():\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),\n"
        "                               torch.nn.Conv2d(8, 16, 1), torch.nn.Flatten(), torch.nn.Linear(16*8*8, 5))\n"
    )
    out = tmp_path / "out"
    p = run_cli("compile", "--model", f"{tmp_path}/net.py:make", "--input-shape", "1x3x8x8", "-o", str(out),
                "--explain", check=True)
    assert "wrote" in p.stdout and "per-layer plan" in p.stdout
    meta = json.loads((out / "meta.json").read_text())
    assert meta["input_shape"] == [1, 3, 8, 8] and len(meta["layers"]) == 3
    p = run_cli("bench", str(out), "--repeat", "5", "--json", "--vs-torch", check=True)
    rows = json.loads(p.stdout)
    assert [r["runtime"] for r in rows] == ["tvm", "pytorch"]
    assert all(r["median_ms"] > 0 and r["repeats"] == 5 for r in rows)
    assert rows[0]["speedup_vs_torch"] == pytest.approx(rows[1]["median_ms"] / rows[0]["median_ms"])
    p = run_cli("bench", str(out), "--repeat", "3", check=True)
    assert "median ms" in p.stdout and "tvm" in p.stdout


@pytest.mark.slow  # three CLI subprocesses and ONNX Runtime: ~35 s; bench --vs-torch runs by default
def test_bench_vs_engines_same_weights(tmp_path):
    from tvmprune.measure.peers import PeerEngine, find_engine

    if not isinstance(find_engine("onnxruntime"), PeerEngine):
        pytest.skip("onnxruntime not installed (pip install -e '.[bench]')")
    run_cli("compile", "--model", "tiny_cnn", "--input-shape", "1x3x16x16", "--prune", "1x4@0.5", "-o", "out",
            cwd=tmp_path, check=True)
    p = run_cli("bench", "out", "--repeat", "4", "--json", "--vs", "ort,pytorch", cwd=tmp_path, check=True)
    rows = json.loads(p.stdout)
    assert [r["runtime"] for r in rows] == ["tvm", "pytorch", "onnxruntime"]
    best = min(r["median_ms"] for r in rows[1:])
    assert rows[0]["best_engine_over_this"] == pytest.approx(best / rows[0]["median_ms"])
    p = run_cli("bench", "out", "--vs", "tensorrt", cwd=tmp_path)
    assert p.returncode == 2 and "unknown engine 'tensorrt'" in p.stderr and "Traceback" not in p.stderr


def test_targets_command(capfd):
    from tvmprune.cli import main

    p = run_cli("targets", check=True)
    for name in ("x86", "x86-avx2", "x86-avx512", "arm_cpu", "aarch64"):
        assert name in p.stdout
    assert main(["targets", "--json"]) == 0
    js = json.loads(capfd.readouterr().out)
    assert {t["name"] for t in js} == {"x86", "x86-avx2", "x86-avx512", "arm_cpu", "aarch64"}


def _saved_pruned_tiny_cnn(directory):
    """tiny_cnn pruned 1x4@0.5 with its weights then scaled, so pruning again from the spec
    cannot reproduce it: only loading the saved directory gives these weights."""
    import torch

    from tvmprune.frontend.model_source import load_model
    from tvmprune.prune import prune_model, save_pruned

    res = prune_model(load_model("tiny_cnn"), "1x4@0.5", torch.zeros(1, 3, 16, 16))
    with torch.no_grad():
        for p in res.model.parameters():
            p.mul_(2.0)
    save_pruned(res, str(directory), "tiny_cnn", (1, 3, 16, 16))
    return res.model.state_dict()


def test_bench_vs_torch_loads_the_saved_pruned_model(tmp_path):
    import torch

    from tvmprune.model_request import torch_reference

    saved = _saved_pruned_tiny_cnn(tmp_path / "pruned")
    run_cli("compile", "--pruned", "pruned", "-o", "out", cwd=tmp_path, check=True)  # relative paths
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["pruned_dir"] == str(tmp_path / "pruned") and meta["pattern"] == "1x4@0.5"
    ref = torch_reference(meta)
    assert ref.pruned_dir == str(tmp_path / "pruned") and ref.input_shape == (1, 3, 16, 16)
    got = ref.model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in saved.items())
    p = run_cli("bench", str(tmp_path / "out"), "--repeat", "3", "--json", "--vs-torch", check=True)
    assert [r["runtime"] for r in json.loads(p.stdout)] == ["tvm", "pytorch"]
    assert f"pruned model from {tmp_path / 'pruned'}" in p.stderr
    (tmp_path / "pruned" / "pruning.json").unlink()
    p = run_cli("bench", str(tmp_path / "out"), "--repeat", "3", "--vs-torch")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "no PyTorch reference" in p.stderr and str(tmp_path / "pruned") in p.stderr


def test_torch_reference_prunes_again_only_what_it_can_rebuild():
    import torch

    from tvmprune.errors import NoTorchReferenceError
    from tvmprune.frontend.model_source import load_model
    from tvmprune.model_request import torch_reference
    from tvmprune.prune import prune_model

    ref = torch_reference({"model": "tiny_cnn", "pattern": "1x4@0.5", "input_shape": [1, 3, 16, 16]})
    want = prune_model(load_model("tiny_cnn"), "1x4@0.5", torch.zeros(1, 3, 16, 16)).model.state_dict()
    assert ref.pattern == "1x4@0.5" and all(torch.equal(ref.model.state_dict()[k], v) for k, v in want.items())
    with pytest.raises(NoTorchReferenceError, match="learns from training data.*--pruned DIR"):
        torch_reference({"model": "digits_cnn", "pattern": "gator@0.5", "input_shape": [1, 1, 16, 16]})
    with pytest.raises(NoTorchReferenceError, match="names no model"):
        torch_reference({"model": "", "pattern": "1x4@0.5", "input_shape": [1, 3, 16, 16]})
    with pytest.raises(NoTorchReferenceError, match="cannot be pruned again"):
        torch_reference({"model": "tiny_cnn", "pattern": "pruned", "input_shape": [1, 3, 16, 16]})
