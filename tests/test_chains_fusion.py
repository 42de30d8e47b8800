"""Epilogue fusion (lower/chains.py + lower/activation_match.py) and layout sinking
(lower/layout_sinking.py): every activation after a conv / linear runs inside the kernel, the
squeeze-excite gate is the fc kernel's epilogue plus one fused multiply, ConvNeXt's layer scale
folds into the weights, needless transposes are gone, and everything still equals PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

tvm = pytest.importorskip("tvm")

from tvmprune.compiler import compile_model, lower  # noqa: E402
from tvmprune.lower.layout_sinking import count_layout_ops  # noqa: E402

F = nn.functional
ACTS = {
    "silu": F.silu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "sigmoid": torch.sigmoid,
    "hardswish": F.hardswish,
    "hardsigmoid": F.hardsigmoid,
    "relu6": F.relu6,
    "relu": F.relu,
}
# what an unfused activation leaves as its own PrimFunc
ACT_OPS = ("sigmoid", "gelu", "clip", "relu", "erf", "tanh", "divide", "minimum", "maximum")


def _ref(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


class ActNet(nn.Module):
    """conv -> act -> depthwise conv -> act -> mean -> linear -> act."""

    def __init__(self, act):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.fc = nn.Linear(16, 32)
        self.act = act

    def forward(self, x):
        y = self.act(self.dw(self.act(self.conv(x))))
        return self.act(self.fc(y.mean((2, 3))))


@pytest.mark.parametrize("name", sorted(ACTS))
def test_activation_fused_into_every_kernel(name):
    torch.manual_seed(0)
    model = ActNet(ACTS[name]).eval()
    x = _x((1, 3, 16, 16))
    cm = compile_model(model, x.shape, "x86")
    assert np.abs(cm.run(x) - _ref(model, x)).max() <= 1e-5
    assert [p.info.activation for p in cm.plans] == [name] * 3
    assert all(p.kernel is not None for p in cm.plans)
    leftover = [r.func for r in cm.op_schedules if any(op in r.func for op in ACT_OPS)]
    assert leftover == [], leftover


class SqueezeExcite(nn.Module):
    def __init__(self, c, gate, act):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)
        self.gate, self.act = gate, act

    def forward(self, x):
        return x * self.gate(self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))))


class SENet(nn.Module):
    """EfficientNet's (SiLU, sigmoid) or MobileNetV3's (ReLU, hardsigmoid) SE after a depthwise conv."""

    def __init__(self, gate, act, c=32):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.se = SqueezeExcite(c, gate, act)
        self.proj = nn.Conv2d(c, 16, 1)
        self.act = act

    def forward(self, x):
        return self.proj(self.se(self.act(self.dw(self.act(self.stem(x))))))


@pytest.mark.parametrize("gate,act,gate_name", [(torch.sigmoid, F.silu, "sigmoid"),
                                                (F.hardsigmoid, F.relu, "hardsigmoid")])
def test_squeeze_excite_gate_in_fc_epilogue_and_one_multiply(gate, act, gate_name):
    torch.manual_seed(0)
    model = SENet(gate, act).eval()
    x = _x((1, 3, 16, 16))
    cm = compile_model(model, x.shape, "x86")
    assert np.abs(cm.run(x) - _ref(model, x)).max() <= 1e-5
    acts = [p.info.activation for p in cm.plans]
    assert acts[3] == gate_name, acts  # fc2: the gate is its epilogue
    funcs = sorted(r.func for r in cm.op_schedules)
    # left outside the kernels: the NCHW boundary transposes, the squeeze mean, the excite multiply
    assert len(funcs) == 4 and sum("transpose" in f for f in funcs) == 2, funcs
    assert any("mean" in f for f in funcs) and any("multiply" in f for f in funcs), funcs
    mul = next(r for r in cm.op_schedules if "multiply" in r.func)
    assert mul.rule == "injective" and mul.vector >= 4 and mul.parallel >= 2


class ConvNeXtBlock(nn.Module):
    """torchvision's CNBlock: depthwise 7x7, channels-last LayerNorm, Linear-GELU-Linear, layer scale."""

    def __init__(self, c=64):  # 8x8 rows x 64 channels: enough work for a parallel LayerNorm
        super().__init__()
        self.stem = nn.Conv2d(3, c, 4, stride=4)
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.ln = nn.LayerNorm(c, eps=1e-6)
        self.fc1, self.fc2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.rand(c, 1, 1) + 0.5)
        with torch.no_grad():
            self.ln.weight.normal_()
            self.ln.bias.normal_()

    def forward(self, x):
        x = self.stem(x)
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(F.gelu(self.fc1(self.ln(y)))).permute(0, 3, 1, 2)
        return x + self.gamma * y


def test_convnext_block_no_transposes_gelu_fused_layer_scale_folded():
    torch.manual_seed(0)
    model = ConvNeXtBlock().eval()
    x = _x((1, 3, 32, 32))
    lowered = lower(model, x.shape)
    assert count_layout_ops(lowered.mod["main"]) == 2  # NCHW -> NHWC at the input, back at the output
    cm = compile_model(model, x.shape, "x86")
    assert np.abs(cm.run(x) - _ref(model, x)).max() <= 1e-4
    fc1, fc2 = cm.plans[2], cm.plans[3]
    assert fc1.info.activation == "gelu"
    g = model.gamma.detach().numpy().reshape(-1)
    # the per-pixel Linear layers run as 1x1 convs (lower/linear_as_conv.py): weight [out, in, 1, 1]
    assert fc2.info.weight.shape == (64, 256, 1, 1) and fc2.fmt == "dense"
    np.testing.assert_allclose(fc2.info.weight[:, :, 0, 0], model.fc2.weight.detach().numpy() * g[:, None], rtol=1e-6)
    np.testing.assert_allclose(fc2.info.bias, model.fc2.bias.detach().numpy() * g, rtol=1e-6)
    ln = [r for r in cm.op_schedules if "layer_norm" in r.func]
    assert ln and all(r.rule == "row-norm" and r.vector >= 4 and r.parallel >= 2 for r in ln), cm.op_schedules


class LNSoftmax(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(3, c, 1)
        self.ln = nn.LayerNorm(c)
        with torch.no_grad():
            self.ln.weight.normal_()
            self.ln.bias.normal_()

    def forward(self, x):
        y = self.ln(self.conv(x).permute(0, 2, 3, 1))
        return torch.softmax(y * 3.0, dim=-1)


@pytest.mark.parametrize("c,hw", [(96, 16), (768, 2), (20, 8)])
def test_layernorm_and_softmax_vectorised_along_channels(c, hw):
    torch.manual_seed(0)
    model = LNSoftmax(c).eval()
    x = _x((1, 3, hw, hw))
    cm = compile_model(model, x.shape, "x86")
    assert np.abs(cm.run(x) - _ref(model, x)).max() <= 1e-5
    norms = [r for r in cm.op_schedules if "layer_norm" in r.func or "softmax" in r.func]
    assert len(norms) >= 2 and all(r.rule == "row-norm" for r in norms), cm.op_schedules
    lanes = cm.target.vector_lanes
    assert all(r.vector == min(lanes, 4 if c == 20 else lanes) for r in norms), norms
    if hw * hw * c >= 4096:
        assert all(r.parallel == hw * hw for r in norms), norms


def test_hardswish_transposes_removed_by_layout_sinking():
    """ConvertLayout wraps hardswish's clips in NHWC<->NCHW transposes; they cancel."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 1)

        def forward(self, x):
            return self.b(F.hardswish(self.a(x)))

    lowered = lower(Net().eval(), (1, 3, 8, 8))
    assert count_layout_ops(lowered.mod["main"]) == 2
