"""Import + lowering + compile + export of whole models, numerics against PyTorch."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from tvmprune.compiler import compile_model, load_compiled
from tvmprune.data import TinyCNN
from tvmprune.frontend.model_source import load_model, randomize_batchnorm
from tvmprune.target import get_target


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random BN statistics and affine params so outputs are O(1) and folding errors show."""
    return randomize_batchnorm(model, seed)


def check_close(model, shape, target="x86", atol_rel=1e-4):
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    cm = compile_model(model, shape, target)
    out = cm.run(x)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    scale = max(np.abs(ref).max(), 1e-3)
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= atol_rel * scale, (np.abs(out - ref).max(), scale)
    return cm


@pytest.mark.parametrize("target", ["x86", "x86-avx2", "x86-avx512", "arm_cpu", "aarch64"])
def test_each_named_target_builds_small_conv_model(target, tmp_path):
    model = randomize_bn(TinyCNN())
    t = get_target(target)
    if t.cross_compiler and shutil.which(t.cross_compiler) is None:
        pytest.skip(f"cross compiler {t.cross_compiler} not installed (scripts/install_toolchains.sh)")
    cm = compile_model(model, (1, 3, 16, 16), t)
    out = cm.export(tmp_path)
    assert (out / "model.so").stat().st_size > 0
    desc = subprocess.run(["file", str(out / "model.so")], capture_output=True, text=True).stdout
    if t.arch == "armv7":
        assert "ELF 32-bit" in desc and "ARM" in desc
    elif t.arch == "aarch64":
        assert "ARM aarch64" in desc
    else:
        assert "x86-64" in desc
    if t.runs_on_host:
        x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype("float32")
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        assert np.abs(cm.run(x) - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


def test_tiny_cnn_equals_torch_and_fuses_epilogues():
    cm = check_close(randomize_bn(TinyCNN()), (1, 3, 16, 16))
    plans = {p.info.name: p for p in cm.plans}
    assert plans["conv2"].info.residual and plans["conv2"].info.activation == "relu"
    assert plans["stem.0"].info.activation == "relu" and plans["stem.0"].info.bias is not None
    assert all(p.kernel is not None for p in cm.plans)


def test_resnet18_equals_torch():
    check_close(randomize_bn(load_model("resnet18")), (1, 3, 224, 224))


def test_mobilenet_v2_equals_torch():
    cm = check_close(randomize_bn(load_model("mobilenet_v2")), (1, 3, 224, 224))
    kinds = {p.fmt for p in cm.plans}
    assert "depthwise" in kinds
    assert any(p.info.activation == "relu6" for p in cm.plans)


def test_exported_module_runs_in_fresh_process(tmp_path):
    model = randomize_bn(TinyCNN())
    compile_model(model, (1, 3, 16, 16), "x86", model_spec="tiny_cnn").export(tmp_path)
    x = np.random.default_rng(2).standard_normal((1, 3, 16, 16)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    code = (
        "import numpy as np, tvm\n"
        "from tvm import relax\n"
        f"lib = tvm.runtime.load_module(r'{tmp_path}/model.so')\n"
        "vm = relax.VirtualMachine(lib, tvm.cpu())\n"
        f"out = vm['main'](tvm.runtime.tensor(np.load(r'{tmp_path}/x.npy')))\n"
        f"np.save(r'{tmp_path}/y.npy', out[0].numpy())\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(np.load(tmp_path / "y.npy") - ref).max() < 1e-4
    lm = load_compiled(tmp_path)
    assert lm.meta["model"] == "tiny_cnn" and lm.meta["input_shape"] == [1, 3, 16, 16]
    assert lm.meta["tvm_version"].startswith("0.27")
    assert [l["format"] for l in lm.meta["layers"]] == ["dense"] * 6
