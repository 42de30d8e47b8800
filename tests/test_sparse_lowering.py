"""Pruned models end to end: sparse lowering in Relax, the perf model's choices, --explain."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tvmprune.compiler import compile_model
from tvmprune.plan.layer import LayerInfo, detect_block_n
from tvmprune.frontend.model_source import load_model
from tvmprune.kernels.base import ConvSpec
from tvmprune.plan.planners import choose_format, sparse_where_pruned
from tvmprune.prune import prune_model
from tvmprune.prune.pattern import parse_pattern
from tvmprune.target import get_target

from test_compile import randomize_bn

PATTERNS = ["unstructured@0.8", "1x4@0.5", "1x8@0.8", "1x16@0.8", "filter@0.5"]


def _pruned(name, pattern, shape):
    model = randomize_bn(load_model(name))
    return prune_model(model, parse_pattern(pattern), torch.zeros(shape)).model.eval()


# by default unstructured, 1x4 and filter on resnet18 and 1x8 on mobilenet_v2 (depthwise + 1x1 chains;
# ~15-30 s a model; 1x4/1x8/1x16 share the BSR kernels); the rest is slow
CASES = [("resnet18", (1, 3, 64, 64), p) if p not in ("1x8@0.8", "1x16@0.8")
         else pytest.param("resnet18", (1, 3, 64, 64), p, marks=pytest.mark.slow) for p in PATTERNS] + [
    ("mobilenet_v2", (1, 3, 64, 64), p) if p == "1x8@0.8"
    else pytest.param("mobilenet_v2", (1, 3, 64, 64), p, marks=pytest.mark.slow) for p in PATTERNS]


@pytest.mark.parametrize("name,shape,pattern", CASES)
def test_pruned_model_compiles_to_same_function(name, shape, pattern):
    model = _pruned(name, pattern, shape)
    # "sparse" forces a sparse kernel wherever there are zeros, so every sparse path is exercised
    cm = compile_model(model, shape, "x86", planner=sparse_where_pruned)
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    out = cm.run(x)
    scale = np.abs(ref).max()
    assert scale > 1e-3
    assert np.abs(out - ref).max() <= 1e-3 * scale
    fmts = {p.fmt for p in cm.plans}
    if pattern.startswith("1x"):
        n = int(pattern[2:].split("@")[0])
        assert "1xN" in fmts and all(p.n == n for p in cm.plans if p.fmt == "1xN")
    elif pattern.startswith("unstructured"):
        assert "csr" in fmts
    else:  # filter pruning makes a smaller dense model
        assert fmts <= {"dense", "depthwise"}


def _info(density, n=16, cin=64, cout=64, k=3, hw=56):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((cout, cin, k, k)).astype("float32")
    blocks = rng.random((cout // n, cin * k * k)) < density
    mask = np.repeat(blocks, n, axis=0).reshape(cout, cin, k, k)
    spec = ConvSpec(1, hw, hw, cin, cout, k, k, padding=(k // 2,) * 4)
    return LayerInfo(0, "conv", "conv2d", w * mask, spec=spec)


def test_perf_model_picks_dense_when_dense_and_sparse_when_sparse():
    t = get_target("x86-avx512")
    assert choose_format(_info(0.9), t).fmt == "dense"
    sparse = choose_format(_info(0.05), t)
    assert sparse.fmt == "1xN" and sparse.n == 16
    assert sparse.predicted_ms["1xN"] < sparse.predicted_ms["dense"]
    arm = get_target("arm_cpu")
    assert choose_format(_info(0.9, n=4), arm).fmt == "dense"
    assert choose_format(_info(0.05, n=4), arm).fmt == "1xN"


def test_detect_block_n():
    assert detect_block_n(_info(0.3, n=8).weight) == 8
    assert detect_block_n(np.ones((16, 4), "float32")) == 0
    w = np.ones((16, 4), "float32")
    w[3, 1] = 0  # a single zero: unstructured
    assert detect_block_n(w) == 0


class GroupedNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.g = torch.nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.d = torch.nn.Conv2d(8, 8, 3, padding=2, dilation=2)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.a(x))
        x = self.d(self.g(x))
        return self.fc(x.mean((2, 3)))


def test_unsupported_layers_stay_dense_and_are_explained(tmp_path):
    model = GroupedNet().eval()
    cm = compile_model(model, (1, 3, 8, 8), "x86")
    plans = {p.info.name: p for p in cm.plans}
    assert plans["g"].fmt == "grouped" and "grouped" in plans["g"].reason  # issue 12: grouped convs get a kernel
    assert plans["d"].fmt == "relax" and "dilation" in plans["d"].reason
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype("float32")
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(cm.run(x) - ref).max() < 1e-4
    (tmp_path / "net.py").write_text(
        "import sys\nsys.path.insert(0, %r)\nfrom test_sparse_lowering import GroupedNet\n"
        "def make():\n    return GroupedNet()\n" % str(__import__("pathlib").Path(__file__).parent)
    )
    p = subprocess.run([sys.executable, "-m", "tvmprune.cli", "compile", "--model", f"{tmp_path}/net.py:make",
                        "--input-shape", "1x3x8x8", "--explain", "-o", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "grouped conv (groups=2): grouped NHWC kernel" in p.stdout
    assert "relax" in p.stdout


def test_cli_prune_then_compile_pruned_dir(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "tvmprune.cli", *a], capture_output=True, text=True)
    p = run("prune", "--model", "tiny_cnn", "--pattern", "1x8@0.5", "--input-shape", "1x3x16x16",
            "-o", str(tmp_path / "pruned"))
    assert p.returncode == 0, p.stderr
    p = run("compile", "--pruned", str(tmp_path / "pruned"), "--formats", "sparse", "-o", str(tmp_path / "out"),
            "--explain")
    assert p.returncode == 0, p.stderr
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["input_shape"] == [1, 3, 16, 16]
    assert "1x8" in {l["format"] for l in meta["layers"]}
    p = run("compile", "--model", "tiny_cnn", "--input-shape", "1x3x16x16", "--prune", "1x4@0.5",
            "--formats", "sparse", "-o", str(tmp_path / "out2"))
    assert p.returncode == 0, p.stderr
    assert "1x4" in {l["format"] for l in json.loads((tmp_path / "out2" / "meta.json").read_text())["layers"]}


def test_calibration_is_stored_and_used(tmp_path, monkeypatch):
    from tvmprune.plan.calibrate import calibrate
    from tvmprune.plan.roofline import calibration_path, params_for

    monkeypatch.setenv("TVMPRUNE_CACHE_DIR", str(tmp_path))
    t = get_target("x86")
    assert params_for(t).source.startswith("built-in")
    prm = calibrate(t)
    assert calibration_path(t).is_file()
    loaded = params_for(t)
    assert loaded.source.startswith("calibrated")
    assert loaded.alpha_1xn == pytest.approx(prm.alpha_1xn)
    # efficiency is relative to a nominal-clock peak: boost clocks can take it above 1
    assert 0.02 < prm.dense_efficiency < 4 and 1.0 <= prm.alpha_1xn < 20
    # with the measured parameters, a very sparse 1xN layer still goes sparse and a dense one dense
    assert choose_format(_info(0.05, n=t.vector_lanes), t).fmt == "1xN"
    assert choose_format(_info(0.95, n=t.vector_lanes), t).fmt == "dense"
    calibration_path(t).write_text("{broken")
    assert params_for(t).source.startswith("built-in")
