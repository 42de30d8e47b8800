"""The CLI as a user runs it: clear one-line errors, no tracebacks, files written."""

import json
import os
import subprocess
import sys

import pytest


def run_cli(*args, check=False):
    p = subprocess.run([sys.executable, "-m", "tvmprune.cli", *args], capture_output=True, text=True)
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
def test_bad_input_gives_clear_error_without_traceback(tmp_path, args, message):
    (tmp_path / "file.txt").write_text("x")
    p = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert p.returncode == 2
    assert message in p.stderr
    assert "Traceback" not in p.stderr
    assert p.stderr.startswith("error: ")


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


def test_targets_command():
    p = run_cli("targets", check=True)
    for name in ("x86", "x86-avx2", "x86-avx512", "arm_cpu", "aarch64"):
        assert name in p.stdout
    js = json.loads(run_cli("targets", "--json", check=True).stdout)
    assert {t["name"] for t in js} == {"x86", "x86-avx2", "x86-avx512", "arm_cpu", "aarch64"}
