"""Dense conv (register-blocked direct / 1x1 packed GEMM / stem), depthwise and dense linear kernels
against PyTorch on random data; tiny shapes so the file runs in seconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

tvm = pytest.importorskip("tvm")

from tvm import s_tir  # noqa: E402

from tvmprune.errors import UnsupportedLayerError  # noqa: E402
from tvmprune.kernels.base import ConvSpec  # noqa: E402
from tvmprune.kernels.dense_conv2d import dense_conv2d, pack_conv_weight  # noqa: E402
from tvmprune.kernels.dense_linear import dense_linear, pick_vectors  # noqa: E402
from tvmprune.kernels.register_tile import RegisterTile, max_pixels, pick_register_tile  # noqa: E402
from tvmprune.target import get_target  # noqa: E402

from conv_reference import ACTS, conv_arrays, torch_conv  # noqa: E402

X86 = get_target("x86")
AVX2 = get_target("x86-avx2")


def _compiled(kernel, space: bool, target=X86):
    if space:
        sch = s_tir.Schedule(kernel.func)
        kernel.schedule_space(sch)
        func = sch.mod["main"]
    else:
        func = kernel.scheduled()
    return tvm.compile(tvm.IRModule({"main": func}), target=target.tvm_target)["main"]


def _check_conv(spec: ConvSpec, seed: int = 0, space: bool = False, target=X86, tile=None) -> dict:
    w, b, x, res = conv_arrays(spec, seed)
    k = dense_conv2d(spec, w, b, target, tile=tile) if tile else dense_conv2d(spec, w, b, target)
    out = tvm.runtime.tensor(np.zeros(spec.out_shape, "float32"))
    _compiled(k, space, target)(*[tvm.runtime.tensor(a) for a in [x, *k.consts] + ([res] if spec.residual else [])],
                                out)
    ref = torch_conv(spec, w, b, x, res)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-4 * max(np.abs(ref).max(), 1.0))
    return k.info


@pytest.mark.parametrize("cin,cout,k,stride,hw,act,residual", [
    (16, 32, 3, 1, 9, "relu", True),      # 3x3, residual + ReLU
    (24, 40, 3, 2, 11, "relu6", False),   # strided, odd size, Cout not a multiple of the block
    (32, 48, 1, 1, 10, "relu", False),    # 1x1 packed GEMM
    (64, 16, 1, 2, 9, None, True),        # strided 1x1 (downsample), residual, no activation
    (3, 32, 7, 2, 19, "relu", False),     # the Cin=3 stem, 7x7 / 2
    (8, 20, 5, 1, 7, "silu", False),      # 5x5, SiLU
    (12, 8, 3, 1, 5, "gelu", True),       # fewer channels than one vector
])
def test_dense_conv_matches_torch(cin, cout, k, stride, hw, act, residual):
    spec = ConvSpec(1, hw, hw, cin, cout, k, k, (stride, stride), (k // 2,) * 4, bias=True, activation=act,
                    residual=residual)
    _check_conv(spec, seed=cin + k)


def test_conv_without_bias_or_padding_and_asymmetric_padding():
    _check_conv(ConvSpec(1, 8, 8, 16, 32, 3, 3))  # no pad stage, no epilogue stage
    _check_conv(ConvSpec(2, 9, 7, 16, 16, 3, 3, (2, 2), (0, 0, 1, 1), bias=True))  # TF-style pad, batch 2


def test_tile_with_padded_pixels_and_channels():
    """A row of 9 pixels in tiles of 4 (3 tiles, 3 pixels of padding) and 20 channels in blocks of 32."""
    info = _check_conv(ConvSpec(1, 9, 9, 8, 20, 3, 3, (1, 1), (1, 1, 1, 1), bias=True, activation="relu"),
                       tile=RegisterTile(16, 2, 4))
    assert info["ow_tile"] == 4 and info["vec"] == 32


def test_schedule_space_is_valid_and_correct():
    _check_conv(ConvSpec(1, 14, 14, 16, 32, 3, 3, (1, 1), (1, 1, 1, 1), bias=True, residual=True), space=True)


def test_avx2_target_builds_and_matches():
    if "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("no AVX2 on this CPU")
    info = _check_conv(ConvSpec(1, 10, 10, 16, 24, 3, 3, (1, 1), (1, 1, 1, 1), bias=True), target=AVX2)
    assert info["vec"] == 16


def test_depthwise_spec_goes_to_depthwise_kernel_and_grouped_is_rejected():
    spec = ConvSpec(1, 9, 9, 16, 16, 3, 3, (2, 2), (1, 1, 1, 1), groups=16, bias=True, activation="relu")
    assert _check_conv(spec)["weight_layout"] == "HWC"
    with pytest.raises(UnsupportedLayerError, match="groups=4"):
        dense_conv2d(ConvSpec(1, 8, 8, 16, 16, 3, 3, groups=4), np.zeros((16, 4, 3, 3), "float32"), None, X86)


def test_packed_weight_layout():
    w = np.random.default_rng(0).standard_normal((20, 3, 2, 2)).astype("float32")
    p = pack_conv_weight(w, RegisterTile(8, 2, 4))
    assert p.shape == (2, 2, 2, 3, 16)                      # [Cout_p / CB, KH, KW, Cin, CB]
    assert p[1, 1, 0, 2, 3] == w[19, 2, 1, 0] and not p[1, :, :, :, 4:].any()  # zero-padded channels


def test_register_tile_fits_the_register_file():
    for t, regs in ((X86, 32), (AVX2, 16)):
        for ow, cout in ((56, 64), (7, 512), (112, 64), (9, 10), (1, 1000)):
            tile = pick_register_tile(ow, cout, t)
            assert tile.lanes == t.vector_lanes
            assert tile.pixels * tile.vectors + tile.vectors + 1 <= regs
            assert tile.pixels <= max(ow, 1)
    assert pick_register_tile(56, 64, X86) == RegisterTile(16, 2, 7)
    assert max_pixels(AVX2, 2) == 6


@pytest.mark.parametrize("out_f,in_f,batch,bias,act", [
    (1000, 256, 1, True, None),   # classifier: padded to the output block
    (10, 64, 1, True, "relu"),
    (33, 20, 3, False, None),     # batch 3, odd sizes
    (128, 96, 2, False, "gelu"),
])
def test_dense_linear_matches_torch(out_f, in_f, batch, bias, act):
    rng = np.random.default_rng(out_f)
    w = rng.standard_normal((out_f, in_f)).astype("float32")
    b = rng.standard_normal(out_f).astype("float32") if bias else None
    x = rng.standard_normal((batch, in_f)).astype("float32")
    for space in (False, True):
        k = dense_linear(w, b, batch, act, X86)
        out = tvm.runtime.tensor(np.zeros((batch, out_f), "float32"))
        _compiled(k, space)(*[tvm.runtime.tensor(a) for a in [x, *k.consts]], out)
        ref = ACTS[act](torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(w),
                                                   None if b is None else torch.from_numpy(b))).numpy()
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_linear_output_block_keeps_both_cores_busy():
    assert pick_vectors(1000, 16, 2) == 8      # 8 blocks of 128 (2.4% padding)
    assert pick_vectors(128, 16, 2) == 4       # 2 blocks of 64
    assert pick_vectors(10, 16, 2) == 1


def _nest(spec: ConvSpec, target=X86):
    from tvmprune.kernels.conv_loop_nest import default_nest

    return default_nest(spec, pick_register_tile(spec.out_w, spec.cout, target), target)


def test_default_nest_order_follows_the_larger_traffic():
    """Rows outermost (a task walks every channel block) where the input map is re-read more than the
    weights: densenet121's 1x1 128->128 @56 and 512->256 @28; channel blocks outermost for a weight
    that dwarfs the input (1024->128 @14, resnet50's 3x3 64@56, 2048->512 @7)."""
    def c_seq(cin, cout, k, hw):
        spec = ConvSpec(1, hw, hw, cin, cout, k, k, (1, 1), (k // 2,) * 4, bias=True, activation="relu")
        n = _nest(spec)
        assert np.prod(n.vectors) == pick_register_tile(hw, cout, X86).padded_channels(cout) // X86.vector_lanes
        return n.vectors[1]

    assert c_seq(128, 128, 1, 56) == 4 and c_seq(512, 256, 1, 28) == 8
    assert c_seq(1024, 128, 1, 14) == 1 and c_seq(64, 64, 3, 56) == 1 and c_seq(2048, 512, 1, 7) == 1


def test_default_nest_keeps_two_rows_in_registers_for_kxk_convs_only():
    def y_reg(cin, cout, k, hw, stride=1):
        spec = ConvSpec(1, hw, hw, cin, cout, k, k, (stride, stride), (k // 2,) * 4)
        n = _nest(spec)
        assert np.prod(n.rows) == spec.out_h
        return n.rows[2]

    assert y_reg(128, 32, 3, 56) == 2 and y_reg(64, 128, 3, 56, stride=2) == 2
    assert y_reg(128, 32, 1, 56) == 1 and y_reg(128, 32, 3, 7) == 1  # 1x1; odd rows
    assert y_reg(128, 32, 3, 14) == 1  # 7 row pairs: too few tasks for 2 cores
    assert y_reg(3, 64, 7, 224, stride=2) == 1  # the stem's short, unrolled reduction
    avx2 = ConvSpec(1, 56, 56, 64, 64, 3, 3, (1, 1), (1, 1, 1, 1))
    tile = pick_register_tile(avx2.out_w, avx2.cout, AVX2)
    assert _nest(avx2, AVX2).rows[2] * tile.pixels * tile.vectors + tile.vectors + 1 <= 16  # registers fit


@pytest.mark.parametrize("cin,cout,k,hw,act", [
    (48, 40, 3, 10, "relu"),   # two rows per tile, Cout padded to 2 blocks, width padded to the tile
    (16, 96, 1, 20, "relu"),   # rows outermost over 3 channel blocks (small L2), width padded
    (24, 64, 3, 12, None),     # two rows, two full blocks, no epilogue
])
def test_dense_conv_default_row_and_block_order_match_torch(cin, cout, k, hw, act):
    """The default points that put two output rows in registers and / or walk every channel block per
    task compute the same conv as PyTorch (a target with a 16 KiB L2 makes tiny maps 'large')."""
    import dataclasses

    small_l2 = dataclasses.replace(X86, extra={**X86.extra, "l2_bytes": 16 * 1024})
    spec = ConvSpec(1, hw, hw, cin, cout, k, k, (1, 1), (k // 2,) * 4, bias=act is not None, activation=act)
    n = _nest(spec, small_l2)
    assert (n.rows[2], n.vectors[1]) != (1, 1)  # the case exercises a new factor
    _check_conv(spec, seed=cin + cout, target=small_l2)
