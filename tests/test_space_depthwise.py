"""Depthwise and grouped conv kernels (register tile of rows x pixels x channel vectors):
default schedule and sampled points of their tuning spaces against PyTorch, the spaces' size,
and whole models built of them (mobilenet_v2, efficientnet_b0) against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

tvm = pytest.importorskip("tvm")

from tvmprune.kernels.base import ConvSpec  # noqa: E402
from tvmprune.kernels.channel_tile import ChannelTile, vector_width  # noqa: E402
from tvmprune.kernels.depthwise_conv2d import depthwise_conv2d, pick_depthwise_tile  # noqa: E402
from tvmprune.kernels.grouped_conv2d import grouped_conv2d, pack_grouped_weight, pick_grouped_tile  # noqa: E402
from tvmprune.target import get_target  # noqa: E402
from tvmprune.tune.space_points import count_points, sample_point  # noqa: E402

from conv_reference import conv_arrays, torch_conv  # noqa: E402

X86 = get_target("x86")
AVX2 = get_target("x86-avx2")


def _check(make, spec: ConvSpec, seeds: tuple[int | None, ...] = (None,), target=X86) -> None:
    """The kernel's default schedule (seed None) and the sampled points ``seeds`` equal PyTorch."""
    w, b, x, res = conv_arrays(spec, spec.cin + spec.kh)
    kernel = make(spec, w, b, target)
    ref = torch_conv(spec, w, b, x, res)
    ins = [tvm.runtime.tensor(a) for a in [x, *kernel.consts] + ([res] if res is not None else [])]
    for seed in seeds:
        func = kernel.scheduled() if seed is None else sample_point(kernel, seed)[0]
        lib = tvm.compile(tvm.IRModule({"main": func}), target=target.tvm_target)
        out = tvm.runtime.tensor(np.zeros(spec.out_shape, "float32"))
        lib["main"](*ins, out)
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-4 * max(np.abs(ref).max(), 1.0),
                                   err_msg=f"seed {seed}")


DEPTHWISE = [  # (channels, kernel, stride, size, activation, residual)
    (32, 3, 1, 10, "relu6", False),
    (48, 3, 2, 11, "silu", False),     # strided, odd size
    (16, 5, 1, 9, None, True),         # 5x5, residual, no activation
    (64, 5, 2, 12, "relu", False),     # strided 5x5
    (24, 3, 1, 7, "silu", True),       # 24 channels: 8-lane vectors
]


# each shape checks the default schedule and one sampled point of the space (5 per family, different seeds)
@pytest.mark.parametrize("seed,shape", list(enumerate(DEPTHWISE)))
def test_depthwise_default_and_sampled_points_match_torch(seed, shape):
    c, k, stride, hw, act, residual = shape
    spec = ConvSpec(1, hw, hw, c, c, k, k, (stride, stride), (k // 2,) * 4, groups=c, bias=act is not None,
                    activation=act, residual=residual)
    _check(depthwise_conv2d, spec, seeds=(None, seed))


GROUPED = [  # (cin, cout, groups, kernel, stride, size, activation, residual)
    (32, 32, 2, 3, 1, 9, "relu", False),    # RegNet: group width 16
    (64, 64, 4, 3, 2, 10, "relu", False),   # strided
    (32, 32, 8, 3, 1, 8, None, True),       # ResNeXt-like group width 4, residual
    (16, 32, 16, 3, 1, 7, "silu", False),   # depthwise with channel multiplier 2 (group width 2)
    (64, 64, 2, 5, 1, 6, "relu6", False),   # 5x5, two vectors per group
]


@pytest.mark.parametrize("seed,shape", list(enumerate(GROUPED)))
def test_grouped_default_and_sampled_points_match_torch(seed, shape):
    cin, cout, groups, k, stride, hw, act, residual = shape
    spec = ConvSpec(1, hw, hw, cin, cout, k, k, (stride, stride), (k // 2,) * 4, groups=groups, bias=True,
                    activation=act, residual=residual)
    _check(grouped_conv2d, spec, seeds=(None, 10 + seed))


def test_avx2_kernels_match_torch():
    if "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("no AVX2 on this CPU")
    _check(depthwise_conv2d, ConvSpec(1, 9, 9, 40, 40, 3, 3, (1, 1), (1,) * 4, groups=40, bias=True,
                                      activation="relu"), target=AVX2)
    _check(grouped_conv2d, ConvSpec(1, 9, 9, 32, 32, 3, 3, (2, 2), (1,) * 4, groups=2, bias=True), target=AVX2)


def test_default_tiles_follow_the_target():
    assert vector_width(144, 16) == 16 and vector_width(40, 16) == 8 and vector_width(6, 16) == 2
    assert pick_depthwise_tile(56, 16, X86) == ChannelTile(16, 1, 1, 8)     # 8 of 32 registers
    assert pick_depthwise_tile(28, 16, X86) == ChannelTile(16, 1, 1, 7)     # a divisor of the row near 8
    assert pick_depthwise_tile(56, 8, AVX2) == ChannelTile(8, 1, 1, 4)      # 4 of 16 registers
    regnet = ConvSpec(1, 56, 56, 32, 32, 3, 3, (1, 1), (1,) * 4, groups=2)
    assert pick_grouped_tile(regnet, X86) == ChannelTile(16, 1, 2, 7)       # 14 accumulators
    assert pick_grouped_tile(regnet, AVX2).accumulators <= 8                # half the register file
    wide = ConvSpec(1, 7, 7, 1024, 1024, 3, 3, (1, 1), (1,) * 4, groups=32)  # 32-channel groups: 2 vectors
    assert pick_grouped_tile(wide, X86) == ChannelTile(16, 2, 1, 7)


def test_grouped_weight_is_packed_by_vectors():
    w = np.random.default_rng(0).standard_normal((32, 4, 3, 3)).astype("float32")
    p = pack_grouped_weight(w, 8)
    assert p.shape == (4, 3, 3, 4, 8)                       # [Cout/VL, KH, KW, Cin/groups, VL]
    assert p[2, 1, 0, 3, 5] == w[2 * 8 + 5, 3, 1, 0]


def test_sampled_points_are_distinct():
    spec = ConvSpec(1, 56, 56, 144, 144, 3, 3, (1, 1), (1,) * 4, groups=144, bias=True, activation="relu6")
    kernel = depthwise_conv2d(spec, np.zeros(spec.weight_shape, "float32"), np.zeros(144, "float32"), X86)
    assert count_points(kernel, 40) >= 38


BIG = {
    "depthwise 3x3 144@56": (depthwise_conv2d, ConvSpec(1, 56, 56, 144, 144, 3, 3, (1, 1), (1,) * 4, groups=144,
                                                         bias=True, activation="relu6")),
    "regnet grouped 3x3 160@14": (grouped_conv2d, ConvSpec(1, 14, 14, 160, 160, 3, 3, (1, 1), (1,) * 4, groups=10,
                                                           bias=True, activation="relu")),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BIG))
def test_big_shapes_have_a_thousand_points(name):
    make, spec = BIG[name]
    b = np.zeros(spec.cout, "float32")
    kernel = make(spec, np.zeros(spec.weight_shape, "float32"), b, X86)
    assert count_points(kernel, 1500) >= 1000


# whole models (~40 s each); the depthwise kernels on their own are tested above, mobilenet_v2 compiled
# end to end in test_compile.py
@pytest.mark.slow
@pytest.mark.parametrize("model_name", ["mobilenet_v2", "efficientnet_b0"])
def test_model_of_depthwise_convs_equals_torch(model_name):
    from tvmprune.compiler import compile_model
    from tvmprune.frontend.model_source import load_model, randomize_batchnorm

    model = randomize_batchnorm(load_model(model_name), 0)
    shape = (1, 3, 64, 64)
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    cm = compile_model(model, shape, "x86")
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    out = cm.run(x)
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= 1e-4 * max(np.abs(ref).max(), 1e-3)
    assert sum(p.fmt == "depthwise" for p in cm.plans) >= 10
