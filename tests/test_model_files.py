"""Models pruned elsewhere, given as files: ONNX (.onnx), torch.export programs (.pt2), and a
Torch-Pruning-style physically smaller model via file.py:function."""

import builtins
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from tvmprune.compiler import compile_model, lower, plan
from tvmprune.errors import (InvalidInputShapeError, MissingDependencyError, NoTorchReferenceError, PruneConfigError,
                             UnknownModelError)
from tvmprune.frontend.model_source import load_model, randomize_batchnorm
from tvmprune.kernels.format import Format
from tvmprune.model_request import resolve_model, torch_reference
from tvmprune.prune import prune_model

SHAPE = (1, 3, 64, 64)
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def pruned_files(tmp_path_factory):
    """resnet18 pruned 1x8@0.8 (BN with real statistics), as .onnx and .pt2, plus its PyTorch output."""
    d = tmp_path_factory.mktemp("files")
    model = prune_model(randomize_batchnorm(load_model("resnet18")), "1x8@0.8", torch.zeros(SHAPE)).model.eval()
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(d / "r18.onnx"), dynamo=False, opset_version=17)
        torch.export.save(torch.export.export(model, (x,)), str(d / "r18.pt2"))
    names = [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    return {"onnx": str(d / "r18.onnx"), "pt2": str(d / "r18.pt2"), "x": x.numpy(), "ref": ref, "names": names}


def _rel_err(out, ref):
    return float(np.abs(out - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("kind", ["onnx", "pt2"])
def test_model_file_lowers_to_layers_with_1x8_plans(pruned_files, kind):
    req = resolve_model(pruned_files[kind])
    assert req.input_shape == SHAPE and req.pattern == "as-is"
    lowered = lower(req.model, req.input_shape)
    assert lowered.bn_folded
    assert [m.info.name for m in lowered.layers] == pruned_files["names"]
    assert all(not m.unsupported for m in lowered.layers)
    # the first conv is left dense by the pruner; every other layer is 1x8 in the weights
    assert [m.info.block_n for m in lowered.layers] == [0] + [8] * (len(lowered.layers) - 1)
    fmts = [p.fmt for p in plan(lowered, "x86").plans]
    assert sum(f in (Format.BSR, Format.BSR_SPATIAL) for f in fmts) >= len(fmts) - 3


@pytest.mark.slow  # ~25 s; a model file compiled equal to PyTorch by default: the ONNX CLI test
def test_pt2_compiles_equal_to_pytorch_with_1x8_kernels(pruned_files):
    req = resolve_model(pruned_files["pt2"])
    cm = compile_model(req.model, req.input_shape, "x86", model_spec=req.spec, pattern=req.pattern)
    assert _rel_err(cm.run(pruned_files["x"]), pruned_files["ref"]) <= 1e-4
    labels = [p.format_label for p in cm.plans]
    assert labels.count("1x8") + labels.count("1x8-spatial") >= len(labels) - 3
    # bench --vs-torch's reference runs the program itself
    ref_req = torch_reference({"model": req.spec, "pattern": req.pattern, "input_shape": list(SHAPE)})
    with torch.no_grad():
        ref = ref_req.model.eval()(torch.from_numpy(pruned_files["x"])).numpy()
    assert _rel_err(ref, pruned_files["ref"]) <= 1e-6


def test_onnx_compile_cli_explains_sparse_formats_and_equals_pytorch(pruned_files, tmp_path):
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "tvmprune.cli", "compile", "--model", pruned_files["onnx"], "-o",
                        str(out), "--explain", "--formats", "predicted"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "per-layer plan" in p.stdout and "1x8" in p.stdout
    meta = json.loads((out / "meta.json").read_text())
    assert meta["input_shape"] == list(SHAPE) and meta["model"] == pruned_files["onnx"]
    fmts = [row["format"] for row in meta["layers"]]
    assert sum(f.startswith("1x8") for f in fmts) >= len(fmts) - 3, fmts
    from tvmprune.compiler import load_compiled

    assert _rel_err(load_compiled(str(out)).run(pruned_files["x"]), pruned_files["ref"]) <= 1e-4


@pytest.mark.slow
def test_pt2_cli_compile_and_bench_vs_torch(pruned_files, tmp_path):
    out = str(tmp_path / "out")
    for args in (["compile", "--model", pruned_files["pt2"], "-o", out],
                 ["bench", out, "--vs-torch", "--repeat", "3", "--warmup", "1", "--json"]):
        p = subprocess.run([sys.executable, "-m", "tvmprune.cli", *args], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    assert [r["runtime"] for r in json.loads(p.stdout)] == ["tvm", "pytorch"]


def test_model_file_shape_and_prune_errors(pruned_files):
    for kind in ("onnx", "pt2"):
        with pytest.raises(InvalidInputShapeError, match="does not fit"):
            resolve_model(pruned_files[kind], input_shape="1x3x32x32")
        with pytest.raises(PruneConfigError, match="pruning needs the PyTorch model"):
            resolve_model(pruned_files[kind], prune="1x8@0.5")
    with pytest.raises(UnknownModelError, match="pruning needs the PyTorch model"):
        load_model(pruned_files["onnx"])
    with pytest.raises(UnknownModelError, match="does not exist"):
        resolve_model("missing.pt2")
    with pytest.raises(NoTorchReferenceError, match="ONNX file .* has no PyTorch form"):
        torch_reference({"model": pruned_files["onnx"], "pattern": "as-is", "input_shape": list(SHAPE)})


def test_missing_onnx_names_the_install_command(pruned_files, monkeypatch):
    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError("No module named 'onnx'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(MissingDependencyError, match=r"pip install -e '\.\[onnx\]'"):
        resolve_model(pruned_files["onnx"])


def test_missing_onnx_cli_message(tmp_path):
    (tmp_path / "onnx.py").write_text("raise ImportError('onnx is not installed here')\n")  # shadows the package
    (tmp_path / "m.onnx").write_bytes(b"")
    env_path = f"{tmp_path}"
    p = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {env_path!r}); "
                        "from tvmprune.cli import main; sys.exit(main(['compile', '--model', "
                        f"{str(tmp_path / 'm.onnx')!r}, '-o', {str(tmp_path / 'o')!r}]))"],
                       capture_output=True, text=True)
    assert p.returncode == 2, p.stderr
    assert "pip install -e '.[onnx]'" in p.stderr and "Traceback" not in p.stderr


TORCH_PRUNING_STYLE = '''
import torch
from torch import nn


class Block(nn.Module):
    """A residual block as Torch-Pruning leaves it: odd, uneven channel counts, real modules."""

    def __init__(self, cin, mid, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.down(x))


def make():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 21, 3, 2, 1), nn.BatchNorm2d(21), nn.ReLU(),
                        Block(21, 13, 37, 2), Block(37, 29, 45, 2),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(45, 7))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()
'''


def test_torch_pruning_style_smaller_model_via_factory_compiles(tmp_path):
    (tmp_path / "tp_net.py").write_text(TORCH_PRUNING_STYLE)
    req = resolve_model(f"{tmp_path}/tp_net.py:make", "1x3x32x32")
    cm = compile_model(req.model, req.input_shape, "x86", model_spec=req.spec)
    assert [p.info.spec.cout if p.info.spec else 7 for p in cm.plans] == [21, 13, 37, 37, 29, 45, 45, 7]
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = req.model(x).numpy()
    assert _rel_err(cm.run(x.numpy()), ref) <= 1e-4
