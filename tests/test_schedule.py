"""tvmprune.schedule: every non-kernel op of a compiled model gets a parallel / vectorised CPU schedule,
fused chains included, and the compiled model still equals PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

tvm = pytest.importorskip("tvm")

from tvmprune.compiler import compile_model  # noqa: E402
from tvmprune.explain import op_schedule_table  # noqa: E402
from tvmprune.frontend.model_source import load_model, randomize_batchnorm  # noqa: E402
from tvmprune.schedule.ops import KERNEL_ATTR, loop_facts  # noqa: E402
from tvmprune.schedule.ops.loops import MIN_PARALLEL_WORK, output_shape, vector_factor  # noqa: E402


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, r: int = 4):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, c // r, 1), nn.Conv2d(c // r, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(nn.functional.silu(self.fc1(x.mean((2, 3), keepdim=True)))))


class OpsNet(nn.Module):
    """One of each op the rules must handle: SiLU, SE, max / avg pooling, channels-last LayerNorm
    (ConvNeXt's permute + LayerNorm + GELU), hardswish, global mean, linear, softmax."""

    def __init__(self, c: int = 32):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.se = SqueezeExcite(c)
        self.ln = nn.LayerNorm(c)
        self.fc = nn.Linear(c, 10)

    def forward(self, x):
        x = nn.functional.silu(self.stem(x))
        x = self.se(x)
        x = nn.functional.max_pool2d(x, 3, stride=2, padding=1)
        x = nn.functional.avg_pool2d(x, 3, stride=1, padding=1)
        x = nn.functional.gelu(self.ln(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        x = nn.functional.hardswish(x)
        return torch.softmax(self.fc(x.mean((2, 3))), dim=-1)


def _torch_ref(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def unscheduled_funcs(mod, lanes: int) -> list[str]:
    """PrimFuncs of ``mod`` without a parallel loop (when the output has >= MIN_PARALLEL_WORK elements
    and is not one row) or without a vectorised loop (when the output's innermost axis can take one)."""
    from tvm import tirx

    bad = []
    for gv, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        facts, shape = loop_facts(func), output_shape(func)
        size = int(np.prod(shape))
        if size >= MIN_PARALLEL_WORK and facts.parallel == 0:
            bad.append(f"{gv.name_hint}: no parallel loop (output {shape})")
        if vector_factor(shape[-1], lanes) and facts.vector == 0:
            bad.append(f"{gv.name_hint}: no vectorised loop (output {shape})")
    return bad


def test_ops_net_equals_torch_and_every_op_is_scheduled():
    torch.manual_seed(0)
    model = OpsNet().eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype("float32")
    cm = compile_model(model, x.shape, "x86")
    ref = _torch_ref(model, x)
    assert np.abs(cm.run(x) - ref).max() <= 1e-5
    assert unscheduled_funcs(cm.relax_mod, cm.target.vector_lanes) == []
    rules = {r.rule for r in cm.op_schedules}
    assert {"injective", "channel-reduction", "row-reduction"} <= rules, rules
    assert "none" not in rules
    # SiLU and SE's sigmoid run in the conv kernels' epilogues; SE's multiply is one fused PrimFunc
    assert [p.info.activation for p in cm.plans[:3]] == ["silu", "silu", "sigmoid"]
    fused = [r.func for r in cm.op_schedules if "multiply" in r.func]
    assert fused and not [r.func for r in cm.op_schedules if "sigmoid" in r.func], [r.func for r in cm.op_schedules]
    # kernels are marked and left alone; every other PrimFunc has a record
    from tvm import tirx

    prims = {gv.name_hint: f for gv, f in cm.relax_mod.functions_items() if isinstance(f, tirx.PrimFunc)}
    kernels = {n for n, f in prims.items() if KERNEL_ATTR in (f.attrs or {})}
    assert kernels == {p.kernel.name for p in cm.plans if p.kernel is not None}
    assert set(prims) - kernels == {r.func for r in cm.op_schedules}
    table = op_schedule_table(cm.op_schedules)
    assert "channel-reduction" in table and fused[0] in table


def test_pooling_schedule_is_parallel_and_vectorised():
    """A lone max pool big enough to parallelise: channel-reduction rule, numerics vs PyTorch."""

    class Pool(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 32, 1)

        def forward(self, x):
            return nn.functional.max_pool2d(self.conv(x), 3, stride=2, padding=1)

    torch.manual_seed(1)
    model = Pool().eval()
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype("float32")
    cm = compile_model(model, x.shape, "x86")
    assert np.abs(cm.run(x) - _torch_ref(model, x)).max() <= 1e-6
    pools = [r for r in cm.op_schedules if "pool" in r.func]
    assert pools and all(r.rule == "channel-reduction" and r.parallel >= 2 and r.vector >= 4 for r in pools), pools


class ConcatNet(nn.Module):
    """DenseNet's pre-activation concat: cat(x, conv(x), conv(x)) -> BN -> ReLU -> conv (NHWC: channel concat)."""

    def __init__(self, widths: tuple[int, ...]):
        super().__init__()
        self.stem = nn.Conv2d(3, widths[0], 3, padding=1)
        self.branches = nn.ModuleList(nn.Conv2d(widths[0], w, 1) for w in widths[1:])
        self.bn = nn.BatchNorm2d(sum(widths))
        self.head = nn.Conv2d(sum(widths), 8, 1)

    def forward(self, x):
        x = self.stem(x)
        return self.head(torch.relu(self.bn(torch.cat([x] + [b(x) for b in self.branches], 1))))


def _lowered_concat_funcs(cm) -> list:
    """The concat PrimFuncs with blocks lowered and simplified (where a proven-true condition disappears)."""
    import tvm
    from tvm import s_tir, tirx

    passes = tvm.transform.Sequential([
        s_tir.transform.LowerInitBlock(), s_tir.transform.ConvertBlocksToOpaque(),
        s_tir.transform.LowerOpaqueBlock(), tirx.transform.FlattenBuffer(), tirx.transform.StmtSimplify()])
    return [passes(tvm.IRModule({"main": f}))["main"] for gv, f in cm.relax_mod.functions_items()
            if isinstance(f, tirx.PrimFunc) and "concatenate" in gv.name_hint]


@pytest.mark.parametrize("widths,branch_free", [((32, 16, 48), True), ((24, 8, 8, 16), True), ((5, 3, 8), False)])
def test_channel_concat_is_partitioned_per_input(widths, branch_free):
    """The concat + BN (as a scale and shift) + ReLU PrimFunc gets one vectorised, branch-free loop per input when the input
    boundaries share a vector width (no per-lane select over all inputs), and stays correct otherwise."""
    import tvm_ffi
    from tvm.ir.expr import Call

    torch.manual_seed(0)
    model = randomize_batchnorm(ConcatNet(widths), 0).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype("float32")
    cm = compile_model(model, x.shape, "x86")
    assert np.abs(cm.run(x) - _torch_ref(model, x)).max() <= 1e-5
    funcs = _lowered_concat_funcs(cm)
    assert len(funcs) == 1
    # the BN after the concat is a constant scale and shift, not batch_norm's per-element sqrt / divide
    assert not [r.func for r in cm.op_schedules if "batch_norm" in r.func]
    selects = []
    tvm_ffi.structural_walk(funcs[0].body, [(Call, lambda c: selects.append(c) if str(c.op.name).endswith(
        "if_then_else") else None)])
    facts = loop_facts(funcs[0])
    assert facts.parallel >= 2 and facts.vector >= 2
    assert (selects == []) == branch_free
    if branch_free:
        assert facts.loops >= len(widths) + 1  # a vector loop per input + the parallel loop


ZOO_DEFAULT = ["mobilenet_v3_small"]  # SE, hardswish, depthwise; grouped convs: test_grouped_conv.py
ZOO_SLOW = ["regnet_x_400mf", "resnet18", "efficientnet_b0", "convnext_tiny"]


def _check_zoo(name: str, hw: int) -> None:
    model = randomize_batchnorm(load_model(name), 0)
    x = np.random.default_rng(0).standard_normal((1, 3, hw, hw)).astype("float32")
    cm = compile_model(model, x.shape, "x86")
    ref = _torch_ref(model, x)
    assert np.abs(cm.run(x) - ref).max() <= 1e-4 * max(np.abs(ref).max(), 1e-3)
    assert unscheduled_funcs(cm.relax_mod, cm.target.vector_lanes) == []
    assert all(p.fmt != "relax" for p in cm.plans), [(p.info.name, p.reason) for p in cm.plans if p.fmt == "relax"]


@pytest.mark.parametrize("name", ZOO_DEFAULT)
def test_zoo_model_every_primfunc_scheduled(name):
    _check_zoo(name, 32)


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO_SLOW)
def test_zoo_model_every_primfunc_scheduled_slow(name):
    _check_zoo(name, 64)
