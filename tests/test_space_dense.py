"""Tuning spaces of the dense conv (KxK and 1x1) and dense linear kernels: sampled points compute
what PyTorch computes, the spaces of big layers hold >= 1000 distinct points, the default is a
point of the space, and a whole model compiled with the dense kernels equals PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

tvm = pytest.importorskip("tvm")

from tvmprune.kernels.base import ConvSpec  # noqa: E402
from tvmprune.kernels.conv_loop_nest import default_nest  # noqa: E402
from tvmprune.kernels.dense_conv2d import dense_conv2d  # noqa: E402
from tvmprune.kernels.dense_linear import dense_linear  # noqa: E402
from tvmprune.kernels.register_tile import pick_register_tile  # noqa: E402
from tvmprune.target import get_target  # noqa: E402
from tvmprune.tune.space_points import count_points, sample_point  # noqa: E402

from conv_reference import ACTS, conv_arrays, torch_conv  # noqa: E402

X86 = get_target("x86")
SEEDS = range(6)


def _run(func, args: list[np.ndarray], out_shape: tuple[int, ...]) -> np.ndarray:
    lib = tvm.compile(tvm.IRModule({"main": func}), target=X86.tvm_target)["main"]
    out = tvm.runtime.tensor(np.zeros(out_shape, "float32"))
    lib(*[tvm.runtime.tensor(a) for a in args], out)
    return out.numpy()


def _conv_case(spec: ConvSpec, seed: int) -> tuple:
    w, b, x, res = conv_arrays(spec, seed)
    kernel = dense_conv2d(spec, w, b, X86)
    return kernel, [x, *kernel.consts] + ([res] if res is not None else []), torch_conv(spec, w, b, x, res)


@pytest.mark.parametrize("cin,cout,k,stride,hw,act,residual", [
    (32, 48, 1, 1, 8, "relu", False),     # 1x1 GEMM, Cout not a multiple of the channel block
    (16, 96, 1, 1, 8, "silu", True),      # small-Cin 1x1 expansion, SiLU + residual
    (64, 32, 1, 2, 9, None, False),       # strided 1x1 downsample
    (16, 32, 3, 1, 8, "relu", True),      # 3x3 + residual + ReLU
    (24, 40, 3, 2, 9, "gelu", False),     # strided 3x3, GELU
    (3, 32, 7, 2, 15, "relu", False),     # the Cin=3 stem
])
def test_sampled_conv_points_match_torch(cin, cout, k, stride, hw, act, residual):
    spec = ConvSpec(1, hw, hw, cin, cout, k, k, (stride, stride), (k // 2,) * 4, bias=True, activation=act,
                    residual=residual)
    kernel, args, ref = _conv_case(spec, seed=cin + k)
    tol = 1e-4 * max(np.abs(ref).max(), 1.0)
    np.testing.assert_allclose(_run(kernel.scheduled(), args, spec.out_shape), ref, rtol=1e-4, atol=tol)
    decisions = set()
    for seed in SEEDS:
        func, point = sample_point(kernel, seed)
        decisions.add(point)
        np.testing.assert_allclose(_run(func, args, spec.out_shape), ref, rtol=1e-4, atol=tol, err_msg=str(point))
    assert len(decisions) >= 4  # the seeds really draw different points


@pytest.mark.parametrize("out_f,in_f,batch,act", [(1000, 256, 1, None), (40, 48, 3, "gelu")])
def test_sampled_linear_points_match_torch(out_f, in_f, batch, act):
    rng = np.random.default_rng(out_f)
    w = rng.standard_normal((out_f, in_f)).astype("float32")
    b = rng.standard_normal(out_f).astype("float32")
    x = rng.standard_normal((batch, in_f)).astype("float32")
    ref = ACTS[act](torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)))
    kernel = dense_linear(w, b, batch, act, X86)
    args = [x, *kernel.consts]
    tol = 1e-4 * np.abs(ref.numpy()).max()
    np.testing.assert_allclose(_run(kernel.scheduled(), args, (batch, out_f)), ref.numpy(), rtol=1e-4, atol=tol)
    for seed in SEEDS:
        func, point = sample_point(kernel, seed)
        np.testing.assert_allclose(_run(func, args, (batch, out_f)), ref.numpy(), rtol=1e-4, atol=tol,
                                   err_msg=str(point))


@pytest.mark.parametrize("spec", [
    ConvSpec(1, 28, 28, 128, 128, 3, 3, (1, 1), (1, 1, 1, 1), bias=True, activation="relu"),
    pytest.param(ConvSpec(1, 14, 14, 256, 1024, 1, 1, bias=True), marks=pytest.mark.slow),
], ids=["3x3_128-128@28", "1x1_256-1024@14"])
def test_big_conv_spaces_hold_a_thousand_points(spec):
    kernel = dense_conv2d(spec, np.zeros(spec.weight_shape, "float32"), np.zeros(spec.cout, "float32"), X86)
    assert count_points(kernel, samples=1200) >= 1000  # ~15 s each


def test_default_nest_is_a_point_of_the_space():
    """The default's factors are ones the space can draw: perfect splits of the same loops."""
    spec = ConvSpec(1, 14, 14, 256, 1024, 1, 1, bias=True)
    tile = pick_register_tile(spec.out_w, spec.cout, X86)
    nest = default_nest(spec, tile, X86)
    owp = tile.padded_pixels(spec.out_w)
    assert np.prod(nest.rows) == spec.out_h and np.prod(nest.pixels) == owp
    assert np.prod(nest.vectors) == tile.padded_channels(spec.cout) // X86.vector_lanes
    assert np.prod(nest.k) == spec.cin and nest.pixels[1] == tile.pixels and nest.vectors[2] == tile.vectors
    assert nest.rows[2] <= 4 and nest.vectors[2] <= 4  # inside the space's register-tile limits
    assert nest.unroll == 0  # a long reduction (256 channels) is not unrolled


def test_default_unrolls_short_reductions_only():
    def nest(cin: int, k: int):
        spec = ConvSpec(1, 28, 28, cin, 96, k, k, (1, 1), (k // 2,) * 4)
        return default_nest(spec, pick_register_tile(spec.out_w, spec.cout, X86), X86)

    assert nest(16, 1).unroll == 64 and nest(3, 7).unroll == 64  # efficientnet expansion, the stem
    assert nest(64, 3).unroll == 0 and nest(384, 1).unroll == 0


@pytest.mark.slow  # ~140 s: 120 kernels to build
def test_densenet121_at_64_equals_torch():
    from tvmprune.compiler import compile_model
    from tvmprune.frontend.model_source import load_model, randomize_batchnorm

    model = randomize_batchnorm(load_model("densenet121"), seed=0).eval()
    shape = (1, 3, 64, 64)
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    cm = compile_model(model, shape, X86)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    out = cm.run(x)
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= 1e-4 * max(np.abs(ref).max(), 1e-3)
    assert sum(p.info.spec.kh == 1 for p in cm.plans if getattr(p.info, "spec", None) is not None) >= 50
