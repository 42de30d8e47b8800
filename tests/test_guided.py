"""Tests for guided sparsity (tvmprune.prune.guided): bounds vs hand-computed roofline values,
the one-shot planner (budget, dense layers, target dependence), save / load of the plan."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tvmprune.errors import PruneConfigError
from tvmprune.kernels.base import ConvSpec
from tvmprune.plan.roofline import NONZERO_OVERHEAD_FMAS, ROW_OVERHEAD_FMAS, PerfParams
from tvmprune.prune import load_pruned, save_pruned
from tvmprune.prune.block import block_map
from tvmprune.prune.guided import (GuidedPlan, LayerGeometry, format_plan_table, guided_prune, layer_bounds,
                                   plan_from_config)
from tvmprune.target import NamedTarget, get_target

# A simple target: 16 lanes x 2 (FMA) x 2 pipes x 2.5 GHz x 2 cores = 320 GFLOP/s peak, 20 GB/s.
SIMPLE = NamedTarget("simple", "test target", {"kind": "llvm"}, vector_lanes=16, cross_compiler=None, arch="x86_64",
                     clock_ghz=2.5, cores=2, fma_units=2, mem_bandwidth_gbs=20.0)
PARAMS = PerfParams(dense_efficiency=0.5, alpha_1xn=1.6, alpha_csr_3x3=1.25, alpha_csr_1x1=2.5,
                    alpha_1xn_spatial=1.0, source="test")
PEAK, BW = 320e9 * 0.5, 20e9


def _linear_times(out_f: int, in_f: int, batch: int):
    flops = 2 * batch * out_f * in_f
    act, w = 4 * batch * (out_f + in_f), 4 * out_f * in_f
    return flops, act, w, max(flops / PEAK, (act + w) / BW)


def test_linear_csr_bounds_match_hand_computed():
    # csr time max(alpha x F / P, (A + 2 W x) / B): compute-bound dense, kink where the terms meet
    flops, act, w, dense = _linear_times(256, 512, 64)
    a = PARAMS.alpha_csr_1x1
    x_compute = dense * PEAK / (a * flops)
    x_memory = (dense * BW - act) / (2 * w)
    kink = (act / BW) / (a * flops / PEAK - 2 * w / BW)
    b = layer_bounds(LayerGeometry("fc", "linear", (256, 512), batch=64), 0, SIMPLE, PARAMS)
    assert b.breakeven == pytest.approx(min(x_compute, x_memory), rel=1e-3)
    assert b.breakeven == pytest.approx(0.4, rel=1e-3)  # 1 / alpha: compute-bound on both sides
    assert b.saturation == pytest.approx(kink, rel=1e-2)
    assert 0.03 < b.saturation < 0.07
    assert b.dense_ms == pytest.approx(dense * 1e3)


def test_linear_1x16_bounds_match_hand_computed():
    # 1xN (N = lanes) beats csr everywhere here: its own breakeven and kink decide
    flops, act, w, dense = _linear_times(256, 512, 64)
    a, n = PARAMS.alpha_1xn, 16
    x_be = min(dense * PEAK / (a * flops), (dense * BW - act) / (w * (1 + 1 / n)))
    kink = (act / BW) / (a * flops / PEAK - w * (1 + 1 / n) / BW)
    b = layer_bounds(LayerGeometry("fc", "linear", (256, 512), batch=64), 16, SIMPLE, PARAMS)
    assert b.format == "1xN"
    assert b.breakeven == pytest.approx(x_be, rel=1e-3)
    assert b.saturation == pytest.approx(kink, rel=1e-2)


def test_batch1_linear_is_memory_bound_without_saturation():
    # (A + 2 W x) / B = (A + W) / B at x = 1/2; memory slope all the way down: no kink
    b = layer_bounds(LayerGeometry("fc", "linear", (1000, 2048), batch=1), 0, SIMPLE, PARAMS)
    assert b.breakeven == pytest.approx(0.5, rel=1e-3)
    assert b.saturation == 0.0


def _csr_conv_pieces(spec: ConvSpec):
    """The CSR direct conv (n = 1, stride 1) as t(x) = max(c0 + c1 x, m0 + m1 x) + copy, written out by hand."""
    lanes = SIMPLE.vector_lanes
    owp = -(-spec.out_w // lanes) * lanes
    k = spec.cin * spec.kh * spec.kw
    flops, w = spec.dense_flops, 4 * spec.cout * k
    a = PARAMS.alpha_csr_3x3 if spec.kh > 1 else PARAMS.alpha_csr_1x1
    scale = a * flops * (owp / spec.out_w) / PEAK
    c0, c1 = scale * ROW_OVERHEAD_FMAS / k, scale * (1 + NONZERO_OVERHEAD_FMAS / (owp // lanes))
    wx = max(spec.in_w + 2, (owp - 1) + spec.kw)
    copy = 4 * spec.cin * (spec.in_h + 2) * wx
    out = 4 * spec.out_h * spec.out_w * spec.cout
    m0, m1 = (copy + out) / BW, 2 * w / BW
    pre = (4 * spec.in_h * spec.in_w * spec.cin + copy) / BW
    act = 4 * (spec.in_h * spec.in_w * spec.cin + spec.out_h * spec.out_w * spec.cout)
    dense = max(flops / PEAK, (act + w) / BW)
    return c0, c1, m0, m1, pre, dense


def test_conv3x3_csr_breakeven_matches_hand_computed():
    spec = ConvSpec(1, 28, 28, 64, 64, 3, 3, padding=(1, 1, 1, 1))
    c0, c1, m0, m1, pre, dense = _csr_conv_pieces(spec)
    expected = min((dense - pre - c0) / c1, (dense - pre - m0) / m1)
    b = layer_bounds(LayerGeometry("c", "conv2d", spec.weight_shape, spec=spec), 0, SIMPLE, PARAMS)
    assert b.format == "csr"
    assert b.breakeven == pytest.approx(expected, rel=1e-3)
    assert 0.3 < b.breakeven < 0.8
    assert c0 > m0 and b.saturation == 0.0  # compute (row overhead) above traffic even at density 0


def test_layer_without_potential():
    # 1x1 expansion 64 -> 256 at 56x56: the channel-major copy alone costs more than the dense conv
    spec = ConvSpec(1, 56, 56, 64, 256, 1, 1)
    b = layer_bounds(LayerGeometry("e", "conv2d", spec.weight_shape, spec=spec), 0, SIMPLE, PARAMS)
    assert not b.has_potential and b.breakeven == 0.0


class Probe(nn.Module):
    """stem (first layer, skipped), a 3x3 conv, a 1x1 expansion (no potential on x86 or arm_cpu),
    a 1x1 reduction (potential on x86 only at 56x56), fc."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 64, 3, padding=1)
        self.c3 = nn.Conv2d(64, 64, 3, padding=1)
        self.expand = nn.Conv2d(64, 256, 1)
        self.reduce = nn.Conv2d(256, 64, 1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = torch.relu(self.reduce(torch.relu(self.expand(torch.relu(self.c3(x))))))
        return self.fc(x.mean((2, 3)))


X56 = torch.zeros(1, 3, 56, 56)
PRUNABLE = ("c3", "expand", "reduce", "fc")


@pytest.fixture(scope="module")
def probe() -> nn.Module:
    torch.manual_seed(0)
    return Probe().eval()


def test_no_potential_layers_stay_exactly_dense(probe):
    r = guided_prune(probe, "unstructured@0.5", "x86", X56)
    gl = r.plan.layer("expand")
    assert not gl.bounds.has_potential and gl.density == 1.0 and "no speedup potential" in gl.reason
    assert torch.equal(r.model.expand.weight, probe.expand.weight)
    assert "expand" not in r.masks and "expand" not in r.config["masks"]
    rep = {x.name: x for x in r.layers}
    assert rep["expand"].pattern == "dense" and "no speedup potential" in rep["expand"].skipped_reason
    assert torch.equal(r.model.stem.weight, probe.stem.weight)  # first layer: not planned at all
    assert "stem" not in [g.name for g in r.plan.layers]


def test_rates_sum_to_the_budget(probe):
    total = sum(getattr(probe, n).weight.numel() for n in PRUNABLE)
    r = guided_prune(probe, "unstructured@0.5", "x86", X56)
    assert r.plan.budget == round(0.5 * total)
    assert r.plan.spent == r.plan.budget and r.plan.unspent == 0
    zeros = sum(int((getattr(r.model, n).weight == 0).sum()) for n in PRUNABLE)
    assert zeros == r.plan.budget  # random weights have no zeros of their own
    for gl in r.plan.layers:  # pruned layers are sparse enough to pay, within the layer cap
        if gl.pruned and gl.bounds.has_potential and "budget" not in gl.reason:
            assert gl.density < gl.bounds.breakeven and gl.density >= 0.05 - 1e-9
            assert gl.speedup > 1.0
    assert "breakeven" in format_plan_table(r.plan)


def test_1xn_budget_counts_blocks(probe):
    r = guided_prune(probe, "1x8@0.6", "x86", X56)
    blocks = sum(int((~block_map(getattr(r.model, n).weight, 8)).sum()) for n in PRUNABLE)
    assert r.plan.spent == r.plan.budget == blocks
    assert r.config["pattern"] == "1x8@0.6+guided"


def test_a_different_target_gives_a_different_plan(probe):
    # a named ISA, not the host-detected "x86": on an AVX-512 host the 1x1 'reduce' layer has no
    # CSR potential either (16-lane dense is too fast), on AVX2 it has
    x86 = guided_prune(probe, "unstructured@0.6", "x86-avx2", X56).plan
    arm = guided_prune(probe, "unstructured@0.6", "arm_cpu", X56).plan
    assert x86.target == "x86-avx2" and arm.target == "arm_cpu"
    assert x86.layer("reduce").bounds.has_potential and not arm.layer("reduce").bounds.has_potential
    assert x86.layer("reduce").density < x86.layer("reduce").bounds.breakeven and arm.layer("reduce").density == 1.0
    assert x86.densities != arm.densities and x86.spent == x86.budget
    # on arm_cpu only c3 and fc can take weights (each up to 95%): the rest of the budget is reported unspent
    caps = sum(int(0.95 * getattr(probe, n).weight.numel()) for n in ("c3", "fc"))
    assert arm.spent == caps and arm.unspent == arm.budget - caps > 0
    assert "could not be placed" in format_plan_table(arm)


def test_plan_saves_and_loads(probe, tmp_path):
    import inspect

    f = tmp_path / "probe.py"
    f.write_text("import torch\nfrom torch import nn\n\n\n" + inspect.getsource(Probe)
                 + "\n\ndef make():\n    torch.manual_seed(0)\n    return Probe().eval()\n")
    r = guided_prune(probe, "unstructured@0.5", "arm_cpu", X56)
    save_pruned(r, str(tmp_path / "out"), f"{f}:make", tuple(X56.shape))
    model, meta = load_pruned(str(tmp_path / "out"))
    plan = plan_from_config(meta["config"])
    assert isinstance(plan, GuidedPlan) and plan.to_json() == r.plan.to_json()
    assert plan.target == "arm_cpu" and plan.densities == r.plan.densities
    again = guided_prune(probe, "unstructured@0.5", "x86", X56, plan=plan)  # the saved plan wins over the target
    for n in PRUNABLE:
        assert torch.equal(getattr(again.model, n).weight, getattr(r.model, n).weight)
        assert torch.equal(getattr(model, n).weight, getattr(r.model, n).weight)


def test_bad_requests_raise(probe):
    with pytest.raises(PruneConfigError, match="unstructured@RATE and 1xN@RATE"):
        guided_prune(probe, "filter@0.5", "x86", X56)
    with pytest.raises(PruneConfigError, match="drop \\+global"):
        guided_prune(probe, "unstructured@0.5+global", "x86", X56)
    plan = guided_prune(probe, "unstructured@0.5", "x86", X56).plan
    with pytest.raises(PruneConfigError, match="plan is for unstructured"):
        guided_prune(probe, "1x8@0.5", "x86", X56, plan=plan)
    with pytest.raises(PruneConfigError, match="no guided plan"):
        plan_from_config({"pattern": "unstructured@0.5"})


# --------------------------------------------------------------------------- training-time form

from tvmprune.prune.guided import GuidedTraining, gesl_threshold, guided_finetune  # noqa: E402
from tvmprune.prune.guided.training import restore_unprofitable  # noqa: E402


def test_gesl_threshold_formula():
    g = torch.tensor([0.0, 1e-4, 1e-3, 1.0, -1.0])
    th = gesl_threshold(g)
    th0, f = 1e-4, 10.0
    expected = torch.tensor([1 / (abs(float(v)) / th0 + 1 / (f * th0)) for v in g])
    assert torch.allclose(th, expected)
    assert th[0] == pytest.approx(f * th0)  # idle weight: the largest threshold
    assert th[1] == pytest.approx(1 / (1 + 1 / (f * th0)))  # |g| = th0
    assert th[3] == th[4] and th[3] < th0 < th[0]  # busy weights get a far lower threshold


def _batches(n: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 3, 56, 56, generator=g), torch.randint(0, 10, (4,), generator=g)) for _ in range(n)]


def test_rule4_restores_dense_weights(probe):
    r = guided_prune(probe, "unstructured@0.5", "x86", X56)
    gl = r.plan.layer("c3")
    assert gl.density < gl.bounds.breakeven
    # a mask above c3's breakeven: not sparse enough to pay -> dense weights back, mask dropped
    mask = torch.ones_like(r.model.c3.weight, dtype=torch.bool)
    mask.view(-1)[: int(0.1 * mask.numel())] = False
    masks = {"c3": mask, "fc": r.masks["fc"]}
    with torch.no_grad():
        r.model.c3.weight.mul_(mask)
    assert restore_unprofitable(r.model, masks, r.plan, r.dense_weights) == ["c3"]
    assert torch.equal(r.model.c3.weight, probe.c3.weight) and "c3" not in masks and "fc" in masks


@pytest.mark.parametrize("method", ["gesl", "gdns"])
def test_guided_finetune_applies_rules(probe, method):
    r = guided_prune(probe, "unstructured@0.5", "x86", X56)
    rep = {x.name: x for x in r.layers}
    assert rep["expand"].pattern == "dense"
    # a large th0 makes the threshold bite within a few steps (the default 1e-4 suits trained nets)
    guided_finetune(r, _batches(), epochs=1, lr=1e-3, settings=GuidedTraining(method, th0=0.05), progress=False)
    t = r.config["guided_training"]
    assert t["method"] == method
    mods = dict(r.model.named_modules())
    for gl in r.plan.layers:
        w = mods[gl.name].weight
        if gl.name in t["restored_dense"]:  # rule 4: dense weights back
            assert torch.equal(w, r.dense_weights[gl.name])
        elif gl.name in r.masks:  # masks hold after retraining; never below the floor (rule 3)
            assert torch.equal(w != 0, r.masks[gl.name])
            assert t["density_after"][gl.name] >= 0.05 - 1e-3
            assert t["density_after"][gl.name] < gl.bounds.breakeven
    # rule 1: the layer without potential is never pruned (it trains dense)
    assert "expand" not in t["density_after"] and bool((r.model.expand.weight != 0).all())
    # the thresholds pruned the partly pruned layers further (fc starts above breakeven, reduce at 1.0)
    assert any(t["density_after"][n] < t["density_before"][n] for n in t["density_after"])
    assert set(t["restored_dense"]) == {n for n in t["density_after"] if t["density_after"][n] == 1.0}


def test_bad_training_settings():
    with pytest.raises(PruneConfigError, match="gesl, gdns"):
        GuidedTraining("sgd")
    with pytest.raises(PruneConfigError, match="prune_fraction"):
        GuidedTraining(prune_fraction=1.0)


def test_cli_prune_prints_the_plan_for_the_target(capsys, tmp_path):
    from tvmprune.cli import main

    args = ["prune", "--model", "tiny_cnn", "--input-shape", "1x3x32x32", "--pattern", "1x8@0.8+guided"]
    assert main(args + ["--target", "arm_cpu", "-o", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert "breakeven" in out and "guided for arm_cpu" in out and "1x8@0.8+guided" in out
    _, meta = load_pruned(str(tmp_path / "p"))
    assert plan_from_config(meta["config"]).target == "arm_cpu"
    assert main(["prune", "--model", "tiny_cnn", "--pattern", "filter@0.5+guided"]) == 2
    assert "unknown option +guided for filter" in capsys.readouterr().err
