"""Grouped conv kernel (and the depthwise kernel at 3x3 / 5x5 / 7x7) against PyTorch on random data."""

from __future__ import annotations

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from tvmprune.errors import UnsupportedLayerError  # noqa: E402
from tvmprune.kernels.base import ConvSpec  # noqa: E402
from tvmprune.kernels.dense_conv2d import dense_conv2d  # noqa: E402
from tvmprune.kernels.grouped_conv2d import grouped_conv2d  # noqa: E402
from tvmprune.target import get_target  # noqa: E402

from conv_reference import conv_arrays, torch_conv  # noqa: E402

X86 = get_target("x86")


def _check(make, spec: ConvSpec, seed: int = 0, space: bool = False) -> None:
    w, b, x, res = conv_arrays(spec, seed)
    k = make(spec, w, b, X86)
    if space:
        from tvm import s_tir

        sch = s_tir.Schedule(k.func)
        k.schedule_space(sch)
        func = sch.mod["main"]
    else:
        func = k.scheduled()
    lib = tvm.compile(tvm.IRModule({"main": func}), target=X86.tvm_target)
    out = tvm.runtime.tensor(np.zeros(spec.out_shape, "float32"))
    ins = [x] + k.consts + ([res] if res is not None else [])
    lib["main"](*[tvm.runtime.tensor(a) for a in ins], out)
    ref = torch_conv(spec, w, b, x, res)
    assert np.abs(out.numpy() - ref).max() <= 1e-4 * max(np.abs(ref).max(), 1.0)


@pytest.mark.parametrize("cin,cout,groups,k,stride", [
    (32, 32, 2, 3, 1),    # two wide groups
    (48, 48, 3, 3, 2),    # odd group count, strided
    (64, 64, 16, 3, 1),   # RegNet-like (group width 4)
    (16, 32, 16, 3, 1),   # depthwise with channel multiplier 2
    (32, 64, 8, 1, 1),    # grouped 1x1
])
def test_grouped_conv_matches_torch(cin, cout, groups, k, stride):
    spec = ConvSpec(1, 9, 9, cin, cout, k, k, (stride, stride), (k // 2,) * 4, groups=groups, bias=True,
                    activation="relu")
    _check(grouped_conv2d, spec)


def test_grouped_conv_residual_and_schedule_space():
    spec = ConvSpec(1, 8, 8, 32, 32, 3, 3, (1, 1), (1, 1, 1, 1), groups=4, bias=False, residual=True)
    _check(grouped_conv2d, spec, space=True)


@pytest.mark.parametrize("k", [3, 5, 7])
def test_depthwise_matches_torch(k):
    spec = ConvSpec(1, 14, 14, 32, 32, k, k, (1, 1), (k // 2,) * 4, groups=32, bias=True, activation="relu")
    _check(dense_conv2d, spec, seed=k)


def test_grouped_conv_rejects_groups_not_dividing_channels():
    spec = ConvSpec(1, 8, 8, 12, 12, 3, 3, (1, 1), (1, 1, 1, 1), groups=5)
    with pytest.raises(UnsupportedLayerError, match="groups must divide"):
        grouped_conv2d(spec, np.zeros((12, 2, 3, 3), "float32"), None, X86)
