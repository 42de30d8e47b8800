"""Interspace kernel: basis conv + sparse 1x1 (CSR / 1xN) equals the conv with reconstructed filters."""

import numpy as np
import pytest
import torch

from tvmprune.errors import UnsupportedLayerError
from tvmprune.kernels.base import ConvSpec
from tvmprune.kernels.format import Format
from tvmprune.kernels.interspace_conv2d import interspace_conv2d
from tvmprune.target import get_target

TARGET = get_target("x86")


def _run(inst, x_nhwc, residual=None):
    import tvm

    lib = tvm.compile(tvm.IRModule({inst.name: inst.scheduled()}), target=TARGET.tvm_target)
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(x_nhwc, dev)] + [tvm.runtime.tensor(np.ascontiguousarray(c), dev) for c in inst.consts]
    if residual is not None:
        args.append(tvm.runtime.tensor(residual, dev))
    args.append(tvm.runtime.tensor(np.zeros(inst.out_shape, np.float32), dev))
    lib.mod[inst.name](*args)
    return args[-1].numpy()


def _reference(x_nhwc, coef, basis, bias, spec, residual):
    """PyTorch conv with the reconstructed dense filters w = c . B, NHWC out."""
    w = torch.einsum("oij,jhw->oihw", torch.from_numpy(coef), torch.from_numpy(basis))
    x = torch.from_numpy(x_nhwc).permute(0, 3, 1, 2)
    pt, pl, pb, pr = spec.padding
    x = torch.nn.functional.pad(x, (pl, pr, pt, pb))
    y = torch.nn.functional.conv2d(x, w, None if bias is None else torch.from_numpy(bias), spec.stride)
    y = y.permute(0, 2, 3, 1).numpy()
    if residual is not None:
        y = y + residual
    return np.maximum(y, 0) if spec.activation == "relu" else y


CASES = [  # (cin, cout, h, w, k, stride, padding, n, bias, activation, residual)
    (16, 32, 10, 10, 3, 1, (1, 1, 1, 1), 1, True, "relu", False),
    (8, 16, 11, 9, 3, 2, (1, 1, 1, 1), 1, False, None, False),
    (8, 8, 9, 9, 3, 1, (0, 0, 0, 0), 1, False, None, True),
    (16, 32, 10, 10, 3, 1, (1, 1, 1, 1), 4, True, "relu", False),
    (16, 16, 11, 11, 3, 2, (1, 1, 1, 1), 8, False, None, True),
    (8, 16, 8, 8, 5, 1, (2, 1, 2, 1), 4, True, None, False),
    (8, 32, 9, 9, 3, 2, (1, 1, 1, 1), 4, True, "relu", True),
    (8, 32, 10, 10, 3, 1, (1, 1, 1, 1), 16, False, "relu", False),  # n >= lanes: NHWC, vector over N
    (8, 48, 9, 9, 3, 2, (1, 1, 1, 1), 32, True, None, True),
]


@pytest.mark.parametrize("cin,cout,h,w,k,stride,padding,n,bias,act,res", CASES)
def test_basis_conv_plus_sparse_1x1_equals_reconstructed_conv(cin, cout, h, w, k, stride, padding, n, bias, act,
                                                                res):
    rng = np.random.default_rng(cin * 7 + cout + n + stride)
    spec = ConvSpec(1, h, w, cin, cout, k, k, stride=(stride, stride), padding=padding, bias=bias, activation=act,
                    residual=res)
    k2 = k * k
    keep = np.repeat(rng.random((-(-cout // n), cin, k2)) < 0.15, n, axis=0)[:cout]
    coef = (rng.standard_normal((cout, cin, k2)) * keep).astype(np.float32)
    basis = rng.standard_normal((k2, k, k)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    x = rng.standard_normal(spec.in_shape).astype(np.float32)
    r = rng.standard_normal(spec.out_shape).astype(np.float32) if res else None
    inst = interspace_conv2d(spec, coef, basis, b, TARGET, n=n)
    assert inst.format == Format.INTERSPACE and inst.kind == "interspace" and inst.info["n"] == n
    got = _run(inst, x, r)
    ref = _reference(x, coef, basis, b, spec, r)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))


def test_grouped_conv_is_rejected():
    spec = ConvSpec(1, 8, 8, 8, 8, 3, 3, padding=(1, 1, 1, 1), groups=2)
    with pytest.raises(UnsupportedLayerError, match="groups=1"):
        interspace_conv2d(spec, np.zeros((8, 4, 9), np.float32), np.zeros((9, 3, 3), np.float32), None, TARGET)


def test_wrong_coefficient_shape_is_rejected():
    spec = ConvSpec(1, 8, 8, 8, 8, 3, 3, padding=(1, 1, 1, 1))
    with pytest.raises(ValueError, match="coefficients shape"):
        interspace_conv2d(spec, np.zeros((8, 8, 3, 3), np.float32), np.zeros((9, 3, 3), np.float32), None, TARGET)


FLAT_CASES = [  # (cin, cout, h, w, n, bias, activation, residual): stride-1 3x3 outputs narrow enough for the flat grid
    (16, 32, 7, 7, 1, True, "relu", True),
    (32, 16, 7, 7, 4, False, None, False),
    (16, 24, 5, 6, 1, False, "relu", False),
]


@pytest.mark.parametrize("cin,cout,h,w,n,bias,act,res", FLAT_CASES)
def test_flat_pixel_layout_equals_reconstructed_conv(cin, cout, h, w, n, bias, act, res):
    """7x7-style outputs take the flat-pixel layout (basis conv computed once, split over cores)."""
    rng = np.random.default_rng(cin + cout + h + n)
    spec = ConvSpec(1, h, w, cin, cout, 3, 3, padding=(1, 1, 1, 1), bias=bias, activation=act, residual=res)
    keep = np.repeat(rng.random((-(-cout // n), cin, 9)) < 0.2, n, axis=0)[:cout]
    coef = (rng.standard_normal((cout, cin, 9)) * keep).astype(np.float32)
    basis = rng.standard_normal((9, 3, 3)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    x = rng.standard_normal(spec.in_shape).astype(np.float32)
    r = rng.standard_normal(spec.out_shape).astype(np.float32) if res else None
    inst = interspace_conv2d(spec, coef, basis, b, TARGET, n=n)
    if TARGET.vector_lanes >= 8:
        assert inst.info["layout"].startswith("flat-pixel")
    got = _run(inst, x, r)
    ref = _reference(x, coef, basis, b, spec, r)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))


def test_row_layout_with_channel_chunks_equals_reconstructed_conv():
    """Few output rows for the cores: several channel chunks per row tile share one basis conv computed up front."""
    rng = np.random.default_rng(3)
    spec = ConvSpec(1, 2, 32, 16, 32, 3, 3, stride=(2, 2), padding=(1, 1, 1, 1), bias=True, activation="relu")
    coef = (rng.standard_normal((32, 16, 9)) * (rng.random((32, 16, 9)) < 0.2)).astype(np.float32)
    basis = rng.standard_normal((9, 3, 3)).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    x = rng.standard_normal(spec.in_shape).astype(np.float32)
    inst = interspace_conv2d(spec, coef, basis, b, TARGET)
    if TARGET.cores > 1:  # one output row, so the channel chunks make the tasks
        assert "computed once" in inst.info["layout"]
    got = _run(inst, x)
    np.testing.assert_allclose(got, _reference(x, coef, basis, b, spec, None), rtol=1e-4, atol=1e-3)
