"""Runtime bundles (compile --bundle, tvmprune-run, tvmprune run): numerics under qemu vs PyTorch.

The slow tests cross-build TVM's runtime for armv7 / aarch64 once (cached in
~/.cache/tvmprune/runtime, a few minutes per architecture on 2 cores; scripts/build_arm_runtime.sh
builds it ahead) and run whole models under qemu user mode. They skip, saying why, where the
cross g++ or qemu is not installed (scripts/install_toolchains.sh installs both).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from tvmprune.bundle.run import run_module_dir
from tvmprune.bundle.toolchain import toolchain_for
from tvmprune.compiler import compile_model
from tvmprune.data import TinyCNN
from tvmprune.errors import BundleError, InvalidInputShapeError
from tvmprune.frontend.model_source import randomize_batchnorm
from tvmprune.model_request import resolve_model
from tvmprune.target import get_target


def _require_toolchain(target_name: str) -> None:
    tc = toolchain_for(get_target(target_name))
    missing = [tool for tool in (tc.cxx, None if tc.runs_natively else tc.qemu) if tool and not shutil.which(tool)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (scripts/install_toolchains.sh installs them)")


def _bundle(model: torch.nn.Module, shape: tuple[int, ...], target_name: str, out) -> None:
    from tvmprune.bundle.bundle import write_bundle

    t = get_target(target_name)
    compile_model(model, shape, t, model_spec="test", pattern="test").export(out)
    write_bundle(out, t)


def _max_rel_err(out: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-3))


@pytest.mark.slow
@pytest.mark.parametrize("target_name", ["arm_cpu", "aarch64"])
@pytest.mark.parametrize("model_name,pattern", [("resnet18", "1x4@0.5"), ("mobilenet_v2", "unstructured@0.8")])
def test_bundle_under_qemu_equals_pytorch(target_name, model_name, pattern, tmp_path):
    _require_toolchain(target_name)
    req = resolve_model(model_name, "1x3x64x64", None, pattern)
    model = randomize_batchnorm(req.model, 0).eval()
    out = tmp_path / "bundle"
    _bundle(model, req.input_shape, target_name, out)
    x = np.random.default_rng(0).standard_normal(req.input_shape).astype("float32")
    np.save(tmp_path / "x.npy", x)
    res = run_module_dir(out, str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), emulate=True, repeat=1)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    y = np.load(tmp_path / "y.npy")
    assert res.emulated and res.latency["repeats"] == 1
    assert y.shape == ref.shape == (1, 1000)
    assert _max_rel_err(y, ref) <= 1e-4
    meta = json.loads((out / "meta.json").read_text())
    assert set(meta["bundle"]["files"]) == {"lib/libtvm_ffi.so", "lib/libtvm_runtime.so", "bin/tvmprune-run"}


@pytest.mark.slow
def test_runner_rejects_bad_input_shape(tmp_path):
    _require_toolchain("arm_cpu")
    out = tmp_path / "bundle"
    _bundle(randomize_batchnorm(TinyCNN(), 0), (1, 3, 16, 16), "arm_cpu", out)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 32, 32), dtype="float32"))
    with pytest.raises(InvalidInputShapeError, match=r"has shape 1x3x32x32 but the model takes 1x3x16x16"):
        run_module_dir(out, str(tmp_path / "x.npy"), emulate=True, repeat=1)
    np.save(tmp_path / "x64.npy", np.zeros((1, 3, 16, 16), dtype="float64"))
    with pytest.raises(BundleError, match=r"float32"):
        run_module_dir(out, str(tmp_path / "x64.npy"), emulate=True, repeat=1)


def test_foreign_module_needs_emulate_and_says_how_to_run_on_the_board(tmp_path):
    meta = {"input_shape": [1, 3, 16, 16], "target": {"name": "arm_cpu", "arch": "armv7"}}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"for armv7 .*bin/tvmprune-run .*--emulate"):
        run_module_dir(tmp_path, "x.npy")
    with pytest.raises(BundleError, match=r"no bin/tvmprune-run: compile it with --bundle"):
        run_module_dir(tmp_path, "x.npy", emulate=True)


def test_host_module_runs_in_python_runtime_and_checks_shape(tmp_path):
    model = randomize_batchnorm(TinyCNN(), 0).eval()
    compile_model(model, (1, 3, 16, 16), "x86").export(tmp_path / "m")
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    res = run_module_dir(tmp_path / "m", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), repeat=2)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert res.how == "python" and res.latency["repeats"] == 2
    assert _max_rel_err(np.load(tmp_path / "y.npy"), ref) <= 1e-4
    np.save(tmp_path / "bad.npy", np.zeros((1, 3, 8, 8), dtype="float32"))
    with pytest.raises(InvalidInputShapeError, match=r"has shape 1x3x8x8 but the model takes 1x3x16x16"):
        run_module_dir(tmp_path / "m", str(tmp_path / "bad.npy"))


def test_unknown_architecture_has_no_toolchain():
    with pytest.raises(BundleError, match=r"no runtime bundle for architecture 'riscv64'"):
        toolchain_for("riscv64")
