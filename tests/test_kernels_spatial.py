"""Spatially vectorised 1xN conv (kind ``1xN-spatial``) against PyTorch, and its wiring."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from tvmprune.kernels.registry import build_kernel  # noqa: E402
from tvmprune.plan.layer import LayerInfo, LayerPlan  # noqa: E402
from tvmprune.kernels import ConvSpec, block_direct_sparse_conv2d  # noqa: E402
from tvmprune.plan.planners import choose_format, predict_ms  # noqa: E402
from tvmprune.target import get_target  # noqa: E402

from test_kernels import _check_conv, _cross_build, _weight  # noqa: E402

X86 = get_target("x86")


def _sp(n):
    return lambda spec, w, b: block_direct_sparse_conv2d(spec, w, b, n, X86)


CASES = [
    # (spec, density, n)
    (ConvSpec(1, 8, 8, 16, 16, 3, 3, (1, 1), (1, 1, 1, 1)), 0.3, 4),
    (ConvSpec(1, 8, 8, 16, 16, 3, 3, (1, 1), (1, 1, 1, 1), bias=True, activation="relu"), 0.05, 2),
    (ConvSpec(2, 9, 11, 16, 24, 3, 3, (2, 2), (1, 1, 1, 1), bias=True, activation="relu6"), 0.2, 8),
    (ConvSpec(1, 10, 10, 32, 16, 1, 1), 0.7, 16),
    (ConvSpec(1, 14, 14, 24, 32, 1, 1, (2, 2), residual=True, activation="relu"), 0.1, 4),
    (ConvSpec(2, 7, 9, 8, 8, 3, 3, (1, 1), (0, 1, 2, 1), residual=True, bias=True), 0.5, 2),
    (ConvSpec(1, 12, 12, 16, 20, 3, 3, (1, 1), (1, 1, 1, 1), bias=True), 0.3, 8),  # Cout % N != 0
    (ConvSpec(1, 17, 33, 16, 16, 3, 3, (1, 1), (1, 1, 1, 1)), 0.2, 4),  # OW > one vector, odd OH
]


@pytest.mark.parametrize("spec,density,n", CASES)
def test_spatial_conv_matches_torch(spec, density, n):
    _check_conv(_sp(n), spec, density, n)


@pytest.mark.parametrize("n", [4, 8])
def test_spatial_schedule_space_is_valid_and_correct(n):
    spec = ConvSpec(1, 10, 12, 16, 16, 3, 3, (1, 1), (1, 1, 1, 1), bias=True, activation="relu")
    for seed in (0, 1):
        _check_conv(_sp(n), spec, 0.3, n, seed=seed, space=True)


def _tile(inst) -> tuple[int, ...]:
    return tuple(int(x) for x in inst.info["layout"].rsplit("tile ", 1)[1].split("x"))


def test_spatial_short_rows_get_a_stack_tile_with_fused_epilogue():
    """Short block rows: the accumulator tile stays under 1 KB (a stack buffer LLVM keeps in
    registers, so the NHWC epilogue is register shuffles); long rows keep the wide tile."""
    from tvmprune.kernels.block_direct_conv2d import STACK_ALLOCA_BYTES

    avx512 = get_target("x86-avx512")
    short = ConvSpec(1, 56, 56, 16, 64, 1, 1, bias=True, residual=True, activation="relu6")
    rr, n, tw = _tile(block_direct_sparse_conv2d(short, _weight(short, 0.5, 4, 0), np.ones(64, np.float32), 4,
                                                 avx512, flat=False))
    assert (rr, n) == (1, 4) and rr * n * tw * 4 < STACK_ALLOCA_BYTES
    long_ = ConvSpec(1, 56, 56, 256, 16, 1, 1)
    assert _tile(block_direct_sparse_conv2d(long_, _weight(long_, 0.5, 4, 0), None, 4, avx512, flat=False)) \
        == (1, 4, 64)
    _check_conv(_sp(4), ConvSpec(1, 20, 40, 16, 24, 1, 1, bias=True, residual=True, activation="relu6"), 0.5, 4)


def test_spatial_all_zero_layer_gives_epilogue_only():
    spec = ConvSpec(1, 6, 6, 8, 8, 3, 3, (1, 1), (1, 1, 1, 1), bias=True, activation="relu")
    _check_conv(_sp(4), spec, 0.0, 4)
    w = np.zeros(spec.weight_shape, np.float32)
    inst = block_direct_sparse_conv2d(spec, w, np.ones(8, np.float32), 4, X86)
    assert inst.info["nnz_blocks"] == 0 and inst.flops == 0


def test_spatial_kernel_facts_and_true_row_length():
    spec = ConvSpec(1, 8, 8, 16, 16, 3, 3, (1, 1), (1, 1, 1, 1))
    inst = block_direct_sparse_conv2d(spec, _weight(spec, 0.3, 4, 0), None, 4, X86)
    assert inst.kind == "1xN-spatial" and inst.info["n"] == 4
    w_data, w_off, w_ptr = inst.consts
    assert w_data.shape[1] == 4 and len(w_ptr) == 16 // 4 + 1
    script = inst.scheduled().script()
    assert "w_indptr[" in script and "T.if_then_else(v_e" not in script  # shrunk, guard dropped


def test_spatial_wired_into_lowering_and_planner():
    spec = ConvSpec(1, 56, 56, 64, 64, 3, 3, padding=(1, 1, 1, 1))
    w = _weight(spec, 0.1, 4, 0)
    info = LayerInfo(0, "conv", "conv2d", w, spec=spec)
    t = get_target("x86-avx512")
    pred = predict_ms(info, t)
    assert "1xN-spatial" in pred and pred["1xN-spatial"] < pred["1xN"]
    plan = choose_format(info, t)
    assert plan.fmt == "1xN-spatial" and plan.n == 4
    assert plan.to_json()["format"] == "1x4-spatial"
    small = ConvSpec(1, 8, 8, 16, 16, 3, 3, padding=(1, 1, 1, 1))
    inst = build_kernel(LayerPlan(LayerInfo(0, "c", "conv2d", _weight(small, 0.3, 4, 0), spec=small),
                                  "1xN-spatial", n=4), X86)
    assert inst.kind == "1xN-spatial"
    # N filling the vector stays with the 1xN kernel
    assert "1xN-spatial" not in predict_ms(LayerInfo(0, "c", "conv2d", _weight(spec, 0.1, 16, 0), spec=spec), t)


@pytest.mark.parametrize("tname", ["aarch64", "arm_cpu"])
def test_spatial_builds_for_arm(tname, tmp_path):
    t = get_target(tname)
    if shutil.which(t.cross_compiler) is None:
        pytest.skip(f"cross compiler {t.cross_compiler} not installed")
    spec = ConvSpec(1, 8, 8, 16, 16, 3, 3, (1, 1), (1, 1, 1, 1), bias=True, activation="relu")
    inst = block_direct_sparse_conv2d(spec, _weight(spec, 0.3, 2, 0), np.zeros(16, np.float32), 2, t)
    _cross_build(inst, tname, tmp_path)
