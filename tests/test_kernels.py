"""Sparse kernels (1xN BSR conv, CSR direct conv, sparse linear) against PyTorch.

Builds are small (8x8..14x14 spatial, 16..64 channels) and cached per module.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import torch

tvm = pytest.importorskip("tvm")

from tvmprune.errors import UnsupportedLayerError  # noqa: E402
from tvmprune.kernels import (  # noqa: E402
    ConvSpec,
    conv_weight_to_bsr,
    conv_weight_to_csr,
    direct_sparse_conv2d,
    matrix_to_bsr,
    sparse_conv2d_1xn,
    sparse_linear,
)
from tvmprune.target import get_target  # noqa: E402

from conv_reference import torch_conv  # noqa: E402

X86 = get_target("x86")
DEV = tvm.cpu()


def _weight(spec: ConvSpec, density: float, n: int, seed: int) -> np.ndarray:
    """Random conv weight with 1xN block sparsity over (kh, kw, cin) at roughly ``density``."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(spec.weight_shape).astype(np.float32)
    nb = -(-spec.cout // n)
    mask = rng.random((nb, spec.kh * spec.kw * spec.cin)) < density
    m = np.repeat(mask, n, axis=0)[: spec.cout].reshape(spec.cout, spec.kh, spec.kw, spec.cin)
    return (w * m.transpose(0, 3, 1, 2)).astype(np.float32)


def _run(inst, func, inputs, out_shape, target=X86):
    lib = tvm.compile(tvm.IRModule({"main": func}), target=target.tvm_target)
    args = [tvm.runtime.tensor(np.ascontiguousarray(a), DEV) for a in inputs]
    out = tvm.runtime.tensor(np.full(out_shape, np.nan, dtype=np.float32), DEV)
    lib[inst.name](*args, out)
    return out.numpy()


def _check_conv(make, spec, density, n, seed=0, space=False):
    rng = np.random.default_rng(seed + 100)
    w = _weight(spec, density, n, seed)
    b = rng.standard_normal(spec.cout).astype(np.float32) if spec.bias else None
    inst = make(spec, w, b)
    x = rng.standard_normal(spec.in_shape).astype(np.float32)
    res = rng.standard_normal(spec.out_shape).astype(np.float32) if spec.residual else None
    if space:
        sch = tvm.s_tir.Schedule(inst.func, seed=7)
        inst.schedule_space(sch)
        func = sch.mod["main"].with_attr("global_symbol", inst.name)
    else:
        func = inst.scheduled()
    got = _run(inst, func, [x, *inst.consts] + ([res] if res is not None else []), spec.out_shape)
    np.testing.assert_allclose(got, torch_conv(spec, w, b, x, res), atol=1e-4, rtol=1e-4)
    return inst


def _1xn(n):
    return lambda spec, w, b: sparse_conv2d_1xn(spec, w, b, n, X86)


def _csr(spec, w, b):
    return direct_sparse_conv2d(spec, w, b, X86)


# (spec, density, n): strides 1/2, paddings, 1x1/3x3/general KHxKW, epilogues, batch 2
CASES = [
    (ConvSpec(1, 8, 8, 16, 32, 3, 3, (1, 1), (1, 1, 1, 1)), 0.05, 16),
    (ConvSpec(1, 10, 10, 32, 48, 3, 3, (1, 1), (1, 1, 1, 1), bias=True, activation="relu", residual=True), 0.2, 16),
    (ConvSpec(1, 12, 12, 16, 24, 3, 3, (2, 2), (1, 1, 1, 1), bias=True, activation="relu6"), 0.3, 8),
    (ConvSpec(1, 14, 14, 64, 32, 1, 1), 0.1, 32),
    (ConvSpec(2, 9, 11, 24, 20, 1, 1, (2, 2), (0, 0, 0, 0), bias=True, residual=True), 0.5, 4),
    (ConvSpec(1, 8, 10, 16, 18, 3, 5, (1, 2), (2, 1, 0, 2), activation="relu"), 0.7, 2),
    (ConvSpec(1, 8, 8, 16, 40, 3, 3, (1, 1), (0, 0, 0, 0), bias=True), 0.4, 16),
]


@pytest.mark.parametrize("spec,density,n", CASES)
def test_1xn_conv_matches_torch(spec, density, n):
    inst = _check_conv(_1xn(n), spec, density, n)
    assert inst.kind == "1xN" and inst.info["n"] == n


@pytest.mark.parametrize("spec,density,n", CASES[:6])
def test_csr_conv_matches_torch(spec, density, n):
    inst = _check_conv(_csr, spec, density, 1)
    assert inst.kind == "csr"


# the CSR conv's own shapes: 5x5, AlexNet-conv1-like 11x11 stride 4 on 3 channels, and a
# 384-channel 13x13 layer whose input rows exceed the L2 share (row tiles of 7 + 6, the last padded)
CSR_CASES = [
    (ConvSpec(1, 15, 15, 24, 40, 5, 5, (1, 1), (2, 2, 2, 2), bias=True, activation="relu"), 0.15),
    (ConvSpec(1, 39, 39, 3, 24, 11, 11, (4, 4), (2, 2, 2, 2), bias=True), 0.3),
    (ConvSpec(1, 13, 13, 384, 32, 3, 3, (1, 1), (1, 1, 1, 1), residual=True), 0.08),
]


@pytest.mark.parametrize("spec,density", CSR_CASES, ids=["5x5", "11x11s4", "rowtiles"])
def test_csr_conv_own_shapes_match_torch(spec, density):
    _check_conv(_csr, spec, density, 1)


@pytest.mark.parametrize("make", [_1xn(16), _csr], ids=["1xN", "csr"])
def test_all_zero_layer_gives_epilogue_only(make):
    spec = ConvSpec(1, 8, 8, 16, 32, 3, 3, (1, 1), (1, 1, 1, 1), bias=True, activation="relu", residual=True)
    _check_conv(make, spec, 0.0, 16)


@pytest.mark.parametrize("make", [_1xn(8), _csr], ids=["1xN", "csr"])
def test_empty_rows(make):
    spec = ConvSpec(1, 8, 8, 16, 32, 3, 3, (1, 1), (1, 1, 1, 1), bias=True)
    rng = np.random.default_rng(3)
    w = _weight(spec, 0.3, 8, 3)
    w[:8] = 0  # first block row empty
    w[20:28] = 0  # rows inside other blocks empty
    b = rng.standard_normal(spec.cout).astype(np.float32)
    inst = make(spec, w, b)
    x = rng.standard_normal(spec.in_shape).astype(np.float32)
    got = _run(inst, inst.scheduled(), [x, *inst.consts], spec.out_shape)
    np.testing.assert_allclose(got, torch_conv(spec, w, b, x, None), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("make", [_1xn(16), _1xn(4), _csr], ids=["1x16", "1x4", "csr"])
def test_schedule_space_is_valid_and_correct(make):
    spec = ConvSpec(1, 12, 12, 16, 32, 3, 3, (1, 1), (1, 1, 1, 1), bias=True, activation="relu")
    _check_conv(make, spec, 0.2, 16 if make is not _csr else 1, space=True)


def test_default_schedule_uses_true_row_length():
    spec = ConvSpec(1, 8, 8, 16, 32, 3, 3, (1, 1), (1, 1, 1, 1))
    for inst in (sparse_conv2d_1xn(spec, _weight(spec, 0.2, 16, 0), None, 16, X86),
                 direct_sparse_conv2d(spec, _weight(spec, 0.2, 1, 0), None, X86)):
        script = inst.scheduled().script()
        assert "w_indptr[" in script.split("for e in")[1].split(":")[0], "row loop not shrunk"
        assert "if_then_else(v_e" not in script


def test_groups_rejected():
    spec = ConvSpec(1, 8, 8, 16, 16, 3, 3, (1, 1), (1, 1, 1, 1), groups=2)
    w = np.ones(spec.weight_shape, np.float32)
    with pytest.raises(UnsupportedLayerError):
        sparse_conv2d_1xn(spec, w, None, 4, X86)
    with pytest.raises(UnsupportedLayerError):
        direct_sparse_conv2d(spec, w, None, X86)


def test_formats_roundtrip():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((10, 3, 3, 3)).astype(np.float32)
    w[rng.random(w.shape) < 0.7] = 0
    bsr = conv_weight_to_bsr(w, 4)
    assert bsr.n_block_rows == 3 and bsr.data.shape[1] == 4
    np.testing.assert_array_equal(bsr.to_dense(), w.transpose(0, 2, 3, 1).reshape(10, -1))
    csr = conv_weight_to_csr(w)
    np.testing.assert_array_equal(csr.to_dense(), w.reshape(10, -1))
    assert csr.nnz == np.count_nonzero(w)
    assert matrix_to_bsr(np.zeros((5, 7), np.float32), 2).nnz_blocks == 0


def test_workload_key_tracks_structure():
    spec = ConvSpec(1, 8, 8, 16, 32, 3, 3, (1, 1), (1, 1, 1, 1))
    a = sparse_conv2d_1xn(spec, _weight(spec, 0.2, 16, 0), None, 16, X86)
    b = sparse_conv2d_1xn(spec, _weight(spec, 0.2, 16, 1), None, 16, X86)
    c = sparse_conv2d_1xn(spec, _weight(spec, 0.2, 16, 0) * 2, None, 16, "x86")
    assert a.workload_key != b.workload_key
    assert a.workload_key == c.workload_key and a.name == c.name


@pytest.mark.parametrize(
    "fmt,n,batch,act,bias",
    [("bsr", 16, 1, None, True), ("bsr", 4, 3, "relu", False), ("csr", 1, 1, "relu6", True), ("csr", 1, 2, None, False)],
)
def test_sparse_linear_matches_torch(fmt, n, batch, act, bias):
    rng = np.random.default_rng(5)
    w = rng.standard_normal((50, 64)).astype(np.float32)
    w[rng.random(w.shape) < 0.8] = 0
    w[7] = 0  # empty row
    b = rng.standard_normal(50).astype(np.float32) if bias else None
    inst = sparse_linear(w, b, fmt, n, batch, act, X86)
    assert inst.kind == f"{fmt}_linear"
    x = rng.standard_normal((batch, 64)).astype(np.float32)
    got = _run(inst, inst.scheduled(), [x, *inst.consts], (batch, 50))
    ref = torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(w),
                                     None if b is None else torch.from_numpy(b)).numpy()
    if act == "relu":
        ref = np.maximum(ref, 0)
    elif act == "relu6":
        ref = np.clip(ref, 0, 6)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
    sch = tvm.s_tir.Schedule(inst.func, seed=3)
    inst.schedule_space(sch)
    got2 = _run(inst, sch.mod["main"].with_attr("global_symbol", inst.name), [x, *inst.consts], (batch, 50))
    np.testing.assert_allclose(got2, ref, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- ARM cross builds

ARM = {
    "aarch64": ("aarch64-linux-gnu-objdump", r"fmla\s+v\d+\.4s"),
    # armv7 (cortex-a7, +neon +vfp4): LLVM 22 does not contract a v4f32 fmul+fadd into vfma/vmla
    # (ARMTargetLowering::isFMAFasterThanFMulAndFAdd is true for v4f32 only with MVE), so the 1xN
    # kernel's inner loop is NEON vmul.f32 + vadd.f32 on q registers. Accept fused or unfused,
    # but require 128-bit NEON float multiply AND accumulate.
    "arm_cpu": ("arm-linux-gnueabihf-objdump", r"(v(fma|mla)\.f32\s+q\d+)|(vmul\.f32\s+q\d+[\s\S]*vadd\.f32\s+q\d+)"),
}


def _cross_build(inst, tname, tmp_path):
    t = get_target(tname)
    if shutil.which(t.cross_compiler) is None:
        pytest.skip(f"cross compiler {t.cross_compiler} not installed (apt-get install gcc-arm-linux-gnueabihf "
                    "gcc-aarch64-linux-gnu)")
    lib = tvm.compile(tvm.IRModule({"main": inst.scheduled()}), target=t.tvm_target)
    path = str(tmp_path / f"{inst.name}_{tname}.so")
    lib.export_library(path, fcompile=tvm.support.cc.cross_compiler(t.cross_compiler))
    return path


@pytest.mark.parametrize("tname", ["aarch64", "arm_cpu"])
def test_arm_builds_and_uses_neon_fma(tname, tmp_path):
    import re

    objdump, pattern = ARM[tname]
    if shutil.which(objdump) is None:
        pytest.skip(f"{objdump} not installed (apt-get install binutils-aarch64-linux-gnu binutils-arm-linux-gnueabihf)")
    spec = ConvSpec(1, 8, 8, 16, 16, 3, 3, (1, 1), (1, 1, 1, 1), bias=True, activation="relu")
    t = get_target(tname)
    w = _weight(spec, 0.3, t.vector_lanes, 0)
    inst = sparse_conv2d_1xn(spec, w, np.zeros(16, np.float32), t.vector_lanes, t)
    asm = subprocess.run([objdump, "-d", _cross_build(inst, tname, tmp_path)], capture_output=True, text=True,
                         check=True).stdout
    assert re.search(pattern, asm), f"no NEON vector FMA/MLA ({pattern}) in the {tname} 1xN kernel"
    # the other kernels build for the target too
    _cross_build(direct_sparse_conv2d(spec, w, np.ones(16, np.float32), t), tname, tmp_path)
    _cross_build(sparse_linear(w.reshape(16, -1), None, "bsr", 4, 1, "relu", t), tname, tmp_path)
    _cross_build(sparse_linear(w.reshape(16, -1), None, "csr", 1, 1, None, t), tname, tmp_path)
