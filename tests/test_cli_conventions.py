"""--quiet / --json the same on every command; progress bars only where a person watches; bench --vs
for a module compiled from an ONNX file."""

import json
import sys

import numpy as np
import pytest

from tvmprune import console
from tvmprune.cli import main

SHAPE = "1x3x16x16"


def _cli(capfd, *argv):
    """Run the CLI in this process; (exit status, stdout, stderr) at the file-descriptor level."""
    rc = main([str(a) for a in argv])
    out, err = capfd.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """tiny_cnn pruned 1x4@0.5, compiled once for the tests below."""
    d = tmp_path_factory.mktemp("conv") / "mod"
    assert main(["compile", "--model", "tiny_cnn", "--input-shape", SHAPE, "--prune", "1x4@0.5", "-o", str(d),
                 "--quiet"]) == 0
    return d


def test_compile_json_is_one_document_and_progress_goes_to_stderr(tmp_path, capfd):
    rc, out, err = _cli(capfd, "compile", "--model", "tiny_cnn", "--input-shape", SHAPE, "-o", tmp_path / "m",
                        "--explain", "--json")
    assert rc == 0
    data = json.loads(out)  # the whole of stdout is one JSON document
    assert data["output"] == str(tmp_path / "m") and data["input_shape"] == [1, 3, 16, 16]
    assert sum(data["formats"].values()) == len(data["layers"]) > 0
    assert "compiling tiny_cnn" in err and "per-layer plan" not in out


def test_compile_quiet_prints_only_the_result_line(tmp_path, capfd):
    rc, out, err = _cli(capfd, "compile", "--model", "tiny_cnn", "--input-shape", SHAPE, "-o", tmp_path / "m",
                        "--quiet")
    assert rc == 0 and err == ""
    assert out.strip().splitlines() == [out.strip()] and out.startswith(f"wrote {tmp_path / 'm'}/model.so")


def test_bench_and_run_json_and_quiet(compiled, tmp_path, capfd):
    rc, out, err = _cli(capfd, "bench", compiled, "--repeat", "2", "--warmup", "0", "--json")
    rows = json.loads(out)
    assert rc == 0 and [r["runtime"] for r in rows] == ["tvm"] and rows[0]["repeats"] == 2
    rc, out, err = _cli(capfd, "bench", compiled, "--repeat", "2", "--warmup", "0", "--quiet")
    assert rc == 0 and err == "" and "median ms" in out.splitlines()[0]
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 16, 16), dtype="float32"))
    rc, out, err = _cli(capfd, "run", compiled, "--input", tmp_path / "x.npy", "--repeat", "2", "--json")
    lat = json.loads(out)
    assert rc == 0 and lat["repeats"] == 2 and lat["median_ms"] > 0
    rc, out, err = _cli(capfd, "run", compiled, "--input", tmp_path / "x.npy", "--repeat", "2", "--quiet")
    assert rc == 0 and out.startswith("ran ") and len(out.strip().splitlines()) == 2


def test_prune_json_and_quiet(tmp_path, capfd):
    rc, out, err = _cli(capfd, "prune", "--model", "tiny_cnn", "--pattern", "filter@0.5", "--input-shape", SHAPE,
                        "-o", tmp_path / "p", "--json")
    data = json.loads(out)
    assert rc == 0 and data["pattern"] == "filter@0.5" and data["params"] < data["params_before"]
    assert data["output"] == str(tmp_path / "p") and (tmp_path / "p" / "pruning.json").is_file()
    assert all({"name", "shape", "pattern"} <= set(r) for r in data["layers"])
    assert "layer" in err  # the per-layer table went to stderr
    rc, out, err = _cli(capfd, "prune", "--model", "tiny_cnn", "--pattern", "filter@0.5", "--input-shape", SHAPE,
                        "--quiet")
    lines = out.strip().splitlines()
    assert rc == 0 and err == "" and len(lines) == 2
    assert lines[0].startswith("pattern filter@0.5:") and lines[1].startswith("pruned in")


def test_targets_and_compare_json(tmp_path, capfd):
    rc, out, _ = _cli(capfd, "targets", "--json")
    assert rc == 0 and "x86" in {t["name"] for t in json.loads(out)}
    rc, out, err = _cli(capfd, "compare", "--model", "tiny_cnn", "--input-shape", SHAPE, "--patterns", "dense",
                        "--repeat", "2", "--warmup", "0", "--no-plot", "-o", tmp_path / "c", "--json")
    rep = json.loads(out)
    assert rc == 0 and [r["pattern"] for r in rep["results"]] == ["dense"]
    assert rep == json.loads((tmp_path / "c" / "compare.json").read_text())
    assert "compare tiny_cnn" in err


@pytest.mark.parametrize("argv, message", [
    (["targets", "--json", "--quiet"], None),  # argparse: not allowed together (exit 2 from argparse)
    (["compile", "--model", "resnet9000", "-o", "{tmp}/o"], "unknown model 'resnet9000'"),
    (["prune", "--model", "tiny_cnn", "--pattern", "1x3@0.5"], "1x3"),
    (["tune", "--model", "tiny_cnn", "--trials", "0"], "--trials must be positive"),
    (["bench", "{tmp}"], "no meta.json"),
    (["calibrate", "--density", "2"], "--density must be in (0, 1)"),
    (["compare", "--model", "resnet9000", "-o", "{tmp}/o"], "resnet9000"),
    (["run", "{tmp}", "--input", "{tmp}/x.npy"], "{tmp}"),
])
def test_errors_under_json_are_one_json_document_and_one_line(argv, message, tmp_path, capfd):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if message is None:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and "not allowed with argument" in capfd.readouterr().err
        return
    rc, out, err = _cli(capfd, *argv, "--json")
    doc = json.loads(out)
    assert rc == 2 and message.replace("{tmp}", str(tmp_path)) in doc["error"] and doc["type"].endswith("Error")
    assert err.startswith("error: ") and "Traceback" not in err and err.strip().endswith(doc["error"].splitlines()[-1])


def test_progress_bars_only_in_normal_mode_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert console.progress_enabled() and not console.progress(range(3)).disable
    for mode in (console.OutputMode.QUIET, console.OutputMode.JSON):
        monkeypatch.setattr(console, "_mode", mode)
        assert not console.progress_enabled() and console.progress(range(3)).disable
    monkeypatch.setattr(console, "_mode", console.OutputMode.NORMAL)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert not console.progress_enabled() and list(console.progress(range(3))) == [0, 1, 2]


def _peer_or_skip(name):
    from tvmprune.measure.peers import PeerEngine, find_engine

    if not isinstance(find_engine(name), PeerEngine):
        pytest.skip(f"{name} not installed (bash scripts/install_peers.sh)")


def test_bench_vs_ort_on_a_module_compiled_from_onnx(tmp_path, capfd):
    pytest.importorskip("onnx")
    _peer_or_skip("onnxruntime")
    import torch

    from tvmprune.frontend.model_source import load_model
    from tvmprune.measure.peers import export_onnx
    from tvmprune.prune import prune_model

    pruned = prune_model(load_model("tiny_cnn"), "1x4@0.5", torch.zeros(1, 3, 16, 16)).model
    onnx_path = export_onnx(pruned, (1, 3, 16, 16), tmp_path / "m.onnx")
    assert main(["compile", "--model", onnx_path, "-o", str(tmp_path / "mod"), "--quiet"]) == 0
    capfd.readouterr()
    rc, out, err = _cli(capfd, "bench", tmp_path / "mod", "--repeat", "3", "--warmup", "0", "--vs", "ort,pytorch",
                        "--json")
    rows = json.loads(out)
    assert rc == 0 and [r["runtime"] for r in rows] == ["tvm", "onnxruntime"]
    assert rows[0]["best_engine_over_this"] == pytest.approx(rows[1]["median_ms"] / rows[0]["median_ms"])
    assert "the ONNX file" in err and "pytorch not timed" in err and "no PyTorch form" in err


_ONE_CONV = """
import torch
def make():
    return torch.nn.Sequential(torch.nn.Conv2d(16, 16, 3, padding=1))
"""


@pytest.mark.slow  # a few tuning trials and two end-to-end builds
def test_tune_json_is_the_report_and_quiet_prints_no_progress(tmp_path, capfd):
    (tmp_path / "one_conv.py").write_text(_ONE_CONV)
    argv = ["tune", "--model", f"{tmp_path}/one_conv.py:make", "--input-shape", "1x16x8x8", "--formats", "dense",
            "--trials", "4", "--trials-per-iter", "4", "--population", "16", "--log", tmp_path / "log"]
    rc, out, err = _cli(capfd, *argv, "--json", "--no-e2e")
    rep = json.loads(out)
    assert rc == 0 and rep == json.loads((tmp_path / "log" / "report.json").read_text()) | {"log": str(tmp_path / "log")}
    assert rep["tasks"] and "tuning " in err
    rc, out, err = _cli(capfd, *argv, "--quiet", "--no-e2e")  # resumed: nothing new, the report only
    assert rc == 0 and err == "" and "tuning " not in out and "apply with" in out


def test_calibrate_json(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("TVMPRUNE_CACHE_DIR", str(tmp_path))
    rc, out, err = _cli(capfd, "calibrate", "--json")
    data = json.loads(out)
    assert rc == 0 and set(data["params"]) == set(data["builtin"]) and "calibrating" in err
