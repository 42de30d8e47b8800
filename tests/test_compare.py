"""Tests of ``tvmprune compare``, its plot, the built-in data set and DigitsCNN."""

from __future__ import annotations

import csv
import json
import struct
import zlib

import numpy as np
import pytest
import torch

from tvmprune.cli import main
from tvmprune.compare import CSV_COLUMNS, count_model
from tvmprune.plot import DPI, FIGSIZE

ROW_FIELDS = {
    "pattern", "kind", "rate", "n", "params_nonzero", "params_total", "flops_dense", "flops_effective",
    "nonzeros", "latency_median_ms", "latency_spread_ms", "speedup", "accuracy", "trials", "formats", "layers",
}


def png_size(path) -> tuple[int, int]:
    """(width, height) from the PNG header (signature + IHDR chunk)."""
    with open(path, "rb") as f:
        head = f.read(33)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    length, kind = struct.unpack(">I4s", head[8:16])
    assert kind == b"IHDR" and length == 13
    w, h = struct.unpack(">II", head[16:24])
    assert zlib.crc32(head[12:29]) == struct.unpack(">I", head[29:33])[0], "bad IHDR CRC"
    return w, h


def assert_real_plot(path) -> None:
    import matplotlib.image as mpimg

    w, h = png_size(path)
    assert (w, h) == (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))
    assert path.stat().st_size > 20_000, "suspiciously small PNG"
    img = mpimg.imread(str(path))
    rgb = img[..., :3]
    # not blank: many non-white pixels, several distinct colours (lines / markers in colour)
    nonwhite = (rgb < 0.95).any(axis=-1).mean()
    assert 0.02 < nonwhite < 0.6, nonwhite
    colours = {tuple(c) for c in (rgb.reshape(-1, 3) * 255).astype(int)[::7]}
    assert len(colours) > 50
    saturated = (rgb.max(axis=-1) - rgb.min(axis=-1) > 0.3).mean()
    assert saturated > 0.001, "no coloured data drawn"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp_tiny")
    rc = main(["compare", "--model", "tiny_cnn", "--input-shape", "1x3x16x16",
               "--patterns", "dense,unstructured@0.7,1x4@0.75", "--repeat", "5", "--warmup", "1", "-o", str(out)])
    assert rc == 0
    return out


def test_compare_writes_json_csv_png(tiny_run, capsys):
    rep = json.loads((tiny_run / "compare.json").read_text())
    assert rep["model"] == "tiny_cnn" and rep["input_shape"] == [1, 3, 16, 16]
    assert rep["target"]["name"] == "x86" and rep["trials"] == 0 and rep["dataset"] is None
    rows = rep["results"]
    assert [r["pattern"] for r in rows] == ["dense", "unstructured@0.7", "1x4@0.75"]
    for r in rows:
        assert ROW_FIELDS <= set(r), ROW_FIELDS - set(r)
        assert r["latency_median_ms"] > 0 and r["latency_spread_ms"] >= 0
        assert r["speedup"] > 0 and r["accuracy"] is None and r["trials"] == 0
        assert sum(r["formats"].values()) == len(r["layers"]) == 6  # TinyCNN: 5 convs + fc
        assert r["tvm_max_abs_err"] < 1e-3  # the compiled module computes what PyTorch does
        assert r["flops_dense"] == rows[0]["flops_dense"]
    dense, unst, blk = rows
    assert dense["speedup"] == pytest.approx(1.0)
    assert dense["weights_nonzero"] == dense["weights_total"] and dense["flops_effective"] == dense["flops_dense"]
    assert dense["formats"] == {"dense": 6}
    # pruned: fewer nonzeros and effective FLOPs; same total parameters (zeros, not removed)
    for r in (unst, blk):
        assert r["params_total"] == dense["params_total"]
        assert r["nonzeros"] < 0.6 * dense["nonzeros"]
        assert r["flops_effective"] < 0.6 * r["flops_dense"]
        assert r["formats"].get("dense", 0) < 6  # some layer compiled sparse
    assert blk["kind"] == "1xN" and blk["n"] == 4 and blk["rate"] == 0.75

    with open(tiny_run / "compare.csv", newline="") as f:
        table = list(csv.reader(f))
    assert tuple(table[0]) == CSV_COLUMNS
    assert [t[0] for t in table[1:]] == ["dense", "unstructured@0.7", "1x4@0.75"]
    lat = table[0].index("latency_median_ms")
    assert all(float(t[lat]) > 0 for t in table[1:])

    assert_real_plot(tiny_run / "compare.png")


def test_count_model_filter_and_zeros():
    from tvmprune.data import TinyCNN
    from tvmprune.prune import prune_model

    torch.manual_seed(0)
    m = TinyCNN().eval()
    c = count_model(m, (1, 3, 16, 16))
    # stem 16x16x16x27, conv1/2 16x16x16x144, down 8x8x32x144, pw 8x8x32x32, fc 32x10 (MACs)
    macs = 256 * 16 * 27 + 2 * 256 * 16 * 144 + 64 * 32 * 144 + 64 * 32 * 32 + 320
    assert c["flops"] == 2 * macs == c["flops_nonzero"]
    with torch.no_grad():
        m.conv1.weight[:8] = 0
    c2 = count_model(m, (1, 3, 16, 16))
    assert c["flops"] - c2["flops_nonzero"] == 2 * 256 * 8 * 144
    f = prune_model(m, "filter@0.5", torch.zeros(1, 3, 16, 16)).model
    cf = count_model(f, (1, 3, 16, 16))
    assert cf["params_total"] < c["params_total"] and cf["flops"] < c["flops"]


def test_builtin_digits_data():
    from tvmprune.dataset import digits_tensors, load_digits_arrays

    images, labels = load_digits_arrays()
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    assert images.max() == 16 and set(np.unique(labels)) == set(range(10))
    xt, yt, xv, yv = digits_tensors()
    assert xt.shape[1:] == (1, 16, 16) and len(yt) + len(yv) == 1797 and 300 < len(yv) < 400
    assert abs(float(torch.cat([xt, xv]).mean())) < 1e-4


def test_compare_accuracy_on_builtin(tmp_path):
    """Built-in job, shortened: trains DigitsCNN, prunes, fine-tunes, measures accuracy."""
    out = tmp_path / "acc"
    rc = main(["compare", "--patterns", "dense,1x4@0.5", "--train-epochs", "2", "--repeat", "3",
               "--warmup", "1", "-o", str(out)])
    assert rc == 0
    rep = json.loads((out / "compare.json").read_text())
    assert rep["model"] == "digits" and rep["input_shape"] == [1, 1, 16, 16]
    assert rep["dataset"].startswith("builtin digits") and rep["finetune_epochs"] == 1
    dense, blk = rep["results"]
    assert dense["accuracy"] > 0.8, dense["accuracy"]
    assert 0.0 <= blk["accuracy_before_finetune"] <= 1.0 and blk["finetune_epochs"] == 1
    assert blk["accuracy"] > 0.5, blk["accuracy"]
    assert blk["formats"] and blk["latency_median_ms"] > 0
    assert_real_plot(out / "compare.png")


def test_bad_pattern_is_a_clear_error(tmp_path, capsys):
    rc = main(["compare", "--model", "tiny_cnn", "--patterns", "dense,1x3@0.8", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error:") and "1x3@0.8" in err and "Traceback" not in err
    rc = main(["compare", "--model", "tiny_cnn", "--patterns", "dense,sparse@0.8", "-o", str(tmp_path / "o")])
    assert rc == 2 and "cannot parse pruning pattern" in capsys.readouterr().err


def test_unknown_model_is_a_clear_error(tmp_path, capsys):
    rc = main(["compare", "--model", "resnet_does_not_exist", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown model 'resnet_does_not_exist'" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "compare.json").exists()


def test_bad_dataset_and_tracker_are_clear_errors(tmp_path, capsys):
    rc = main(["compare", "--model", "tiny_cnn", "--dataset", str(tmp_path / "nope"), "-o", str(tmp_path / "o")])
    assert rc == 2 and "unknown data set" in capsys.readouterr().err
    rc = main(["compare", "--model", "tiny_cnn", "--input-shape", "1x3x16x16", "--patterns", "dense",
               "--tracker", "127.0.0.1:1", "--key", "rpi", "--rpc-timeout", "2", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot reach the RPC tracker at 127.0.0.1:1" in err


def test_board_target_without_tracker_writes_null_latency(tmp_path, capsys):
    pytest.importorskip("tvm")
    out = tmp_path / "arm"
    rc = main(["compare", "--model", "tiny_cnn", "--input-shape", "1x3x16x16", "--patterns", "dense,1x4@0.75",
               "--target", "aarch64", "-o", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "latency is not measured" in text and "--tracker" in text
    rep = json.loads((out / "compare.json").read_text())
    assert all(r["latency_median_ms"] is None and r["speedup"] is None for r in rep["results"])
    assert rep["measured_on"] is None and any("not measured" in n for n in rep["notes"])
    assert_real_plot(out / "compare.png")


def test_trials_without_tuning_support_says_so(tmp_path, capsys, monkeypatch):
    import tvmprune.compare as cmp

    monkeypatch.setattr(cmp, "_tune_api", lambda: None)
    out = tmp_path / "t"
    rc = main(["compare", "--model", "tiny_cnn", "--input-shape", "1x3x16x16", "--patterns", "dense",
               "--trials", "4", "--repeat", "2", "--warmup", "0", "-o", str(out)])
    assert rc == 0
    assert "tuning is unavailable" in capsys.readouterr().out
    rep = json.loads((out / "compare.json").read_text())
    assert rep["results"][0]["trials"] == 0


def test_digits_cnn_shapes():
    from tvmprune.data import DigitsCNN

    m = DigitsCNN().eval()
    assert m(torch.zeros(2, 1, 16, 16)).shape == (2, 10)
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert all(c.out_channels % 16 == 0 for c in convs)  # 1x4 / 1x8 / 1x16 blocks tile every layer


@pytest.mark.slow  # starts a tracker and a board server: ~40 s
def test_times_over_rpc_with_local_tracker(tmp_path):
    """--tracker/--key: export, upload, load and time on an RPC server (here: this machine)."""
    import time

    from tvm import rpc
    from tvm.rpc.server import Server
    from tvm.rpc.tracker import Tracker

    tracker = Tracker("127.0.0.1", port=9500, port_end=9600, silent=True)
    server = Server("127.0.0.1", port=9610, port_end=9700, tracker_addr=("127.0.0.1", tracker.port),
                    key="tvmprune-test", silent=True)
    try:
        for _ in range(60):  # wait for the server to register
            info = rpc.connect_tracker("127.0.0.1", tracker.port).summary()
            if info.get("server_info"):
                break
            time.sleep(0.5)
        out = tmp_path / "rpc"
        rc = main(["compare", "--model", "tiny_cnn", "--input-shape", "1x3x16x16", "--patterns", "dense,1x4@0.75",
                   "--tracker", f"127.0.0.1:{tracker.port}", "--key", "tvmprune-test", "--repeat", "3",
                   "--warmup", "1", "--rpc-timeout", "30", "-o", str(out)])
        assert rc == 0
        rep = json.loads((out / "compare.json").read_text())
        assert rep["measured_on"].startswith("rpc:")
        assert all(r["latency_median_ms"] > 0 for r in rep["results"])
        rc = main(["compare", "--model", "tiny_cnn", "--patterns", "dense", "--tracker",
                   f"127.0.0.1:{tracker.port}", "--key", "no-such-board", "-o", str(tmp_path / "x")])
        assert rc == 2
    finally:
        server.terminate()
        tracker.terminate()


@pytest.mark.slow
def test_compare_with_tuning(tmp_path):
    out = tmp_path / "tuned"
    rc = main(["compare", "--model", "tiny_cnn", "--input-shape", "1x3x16x16", "--patterns", "dense",
               "--trials", "8", "--repeat", "3", "-o", str(out)])
    assert rc == 0
    row = json.loads((out / "compare.json").read_text())["results"][0]
    assert row["trials"] >= 8 and row["tuned_kernels"] > 0


def test_compare_vs_engines_times_same_weights_side_by_side(tmp_path, capsys):
    from tvmprune.measure.peers import PeerEngine, find_engine

    ort = isinstance(find_engine("onnxruntime"), PeerEngine)
    rc = main(["compare", "--model", "tiny_cnn", "--input-shape", "1x3x16x16", "--patterns", "dense,1x4@0.75",
               "--repeat", "4", "--warmup", "1", "--no-plot", "--vs", "pytorch,ort", "-o", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "timing" in out and "side by side" in out and "best engine ÷ tvmprune" in out
    rows = json.loads((tmp_path / "compare.json").read_text())["results"]
    for r in rows:
        engines = r["engines_ms"]
        assert "pytorch" in engines and ("onnxruntime" in engines) == ort
        assert r["best_engine"] == min(engines, key=engines.get)
        assert r["best_engine_over_tvmprune"] == pytest.approx(r["best_engine_ms"] / r["latency_median_ms"])
    if not ort:
        assert "onnxruntime not installed" in out


def test_compare_vs_unknown_engine_is_a_clear_error(tmp_path, capsys):
    rc = main(["compare", "--model", "tiny_cnn", "--input-shape", "1x3x16x16", "--patterns", "dense",
               "--vs", "tensorrt", "-o", str(tmp_path)])
    assert rc == 2
    assert "unknown engine 'tensorrt'" in capsys.readouterr().err


_ONE_CONV = """
import torch

def make():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU())
"""


@pytest.mark.slow
def test_tune_and_compare_through_emulated_armv7_board(tmp_path, capsys):
    """The user's commands against the emulated Cortex-A7 board: `tune --target arm_cpu --tracker
    --key cortex-a7` tunes a 1x4 sparse conv through it; `compare --target arm_cpu --tracker ...`
    applies that log and times the patterns on it, marked emulated."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import emulated_board as eb

    why = eb.unavailable_reason(arch="armv7")
    if why:
        pytest.skip(why)
    try:
        root = eb.ensure_root(arch="armv7")
    except eb.BoardUnavailable as e:
        pytest.skip(str(e))
    model = tmp_path / "one_conv.py"
    model.write_text(_ONE_CONV)
    log = tmp_path / "log"
    with eb.EmulatedBoard(root, arch="armv7") as board:
        remote = ["--target", "arm_cpu", "--tracker", f"127.0.0.1:{board.tracker_port}", "--key", board.key,
                  "--rpc-timeout", "120", "--emulated"]
        rc = main(["tune", "--model", f"{model}:make", "--input-shape", "1x16x8x8", "--prune", "1x4@0.75",
                   "--trials", "4", "--trials-per-iter", "4", "--population", "16", "--log", str(log), "--no-e2e",
                   *remote])
        assert rc == 0
        assert "EMULATED" in capsys.readouterr().out
        rep = json.loads((log / "report.json").read_text())
        assert rep["emulated"] and rep["tasks"][0]["trials"] >= 1
        out = tmp_path / "cmp"
        rc = main(["compare", "--model", f"{model}:make", "--input-shape", "1x16x8x8", "--patterns", "dense,1x4@0.75",
                   "--tuning-log", str(log), "--repeat", "3", "--warmup", "1", "--no-plot", "-o", str(out), *remote])
        assert rc == 0
    text = capsys.readouterr().out
    assert "EMULATED board" in text
    rep = json.loads((out / "compare.json").read_text())
    assert rep["emulated"] and rep["measured_on"].endswith("(emulated)")
    assert [r["pattern"] for r in rep["results"]] == ["dense", "1x4@0.75"]
    assert all(r["latency_median_ms"] > 0 for r in rep["results"])


def test_compare_adds_no_fine_tune_to_a_method_that_fine_tunes_itself(monkeypatch):
    """gator@ trains gates and fine-tunes the sliced model itself: compare's --finetune-epochs pass is
    skipped for it (a second SGD pass on the thin model hurt its accuracy), kept for filter@."""
    import argparse
    import types

    import tvmprune.compare as compare_mod
    import tvmprune.dataset as dataset_mod
    import tvmprune.prune as prune_mod
    from tvmprune.prune.pattern import parse_pattern

    calls = []
    fake = types.SimpleNamespace(model=torch.nn.Linear(2, 2), masks={}, config={}, plan=None)
    monkeypatch.setattr(prune_mod, "prune_model", lambda *a, **k: fake)
    monkeypatch.setattr(prune_mod, "finetune", lambda *a, **k: calls.append(k["epochs"]))
    monkeypatch.setattr(dataset_mod, "evaluate", lambda model, data: 0.5)
    job = types.SimpleNamespace(args=argparse.Namespace(finetune_epochs=3, finetune_lr=0.01), target=None,
                                said=[])
    job.say = job.said.append
    ds = types.SimpleNamespace(train="train", val="val")
    for text, expect_calls in (("gator@0.5", []), ("filter@0.5", [3])):
        calls.clear()
        row = {}
        compare_mod._prune_and_evaluate(job, torch.nn.Linear(2, 2), parse_pattern(text), ds, None, text, row)
        assert calls == expect_calls, text
        assert row["finetune_epochs"] == (3 if expect_calls else 0) and row["accuracy"] == 0.5
    assert any("fine-tuned by the method itself" in s for s in job.said)
