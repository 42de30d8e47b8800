"""Compiling interspace-pruned models: dense filters by default, the interspace kernel when planned."""

import numpy as np
import pytest
import torch

from tvmprune.compiler import compile_model
from tvmprune.data import TinyCNN
from tvmprune.frontend.interspace import folded_coefficients, interspace_factors
from tvmprune.plan.planners import sparse_where_pruned
from tvmprune.prune.interspace import interspace_layers, interspace_prune

SHAPE = (1, 3, 32, 32)


def _trained_like_ip_model(block_n: int = 1):
    torch.manual_seed(0)
    r = interspace_prune(TinyCNN().eval(), 0.9, torch.zeros(SHAPE), block_n=block_n)
    with torch.no_grad():  # a moved basis and non-trivial BN statistics, as after fine-tuning
        for m in r.model.modules():
            if hasattr(m, "basis"):
                m.basis.add_(0.1 * torch.randn_like(m.basis))
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
                m.running_mean.uniform_(-0.2, 0.2)
                m.weight.uniform_(0.5, 1.5)
    return r.model.eval()


def _reference(model):
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    with torch.no_grad():
        return x, model(torch.from_numpy(x)).numpy()


def test_compiled_reconstructed_dense_filters_equal_pytorch():
    model = _trained_like_ip_model()
    x, ref = _reference(model)
    forced = compile_model(model, SHAPE, "x86", planner=sparse_where_pruned)
    np.testing.assert_allclose(forced.run(x), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("block_n", [1, 4])
def test_compiled_interspace_form_equals_pytorch(block_n):
    """conv1 (stride 1), conv2 (+ residual + ReLU), down.0 (stride 2) in the interspace form, CSR or 1x4."""
    model = _trained_like_ip_model(block_n)
    x, ref = _reference(model)
    ip_names = set(interspace_layers(model))
    forced = compile_model(model, SHAPE, "x86", planner=sparse_where_pruned)
    np.testing.assert_allclose(forced.run(x), ref, rtol=1e-4, atol=1e-5)
    by_name = {p.info.name: p for p in forced.plans}
    assert {n for n, p in by_name.items() if p.format_label == "interspace"} == ip_names
    assert {"conv1", "conv2", "down.0"} <= ip_names
    for n in ip_names:
        assert "interspace" in by_name[n].predicted_ms
        assert by_name[n].kernel.kind == "interspace" and by_name[n].kernel.info["n"] == block_n
        assert by_name[n].info.interspace.n == block_n


def test_explain_names_the_interspace_choice_with_predicted_times():
    from tvmprune.explain import explain_table
    from tvmprune.lower.lower import lower
    from tvmprune.plan.plan import plan
    from tvmprune.plan.planners import choose_format

    model = _trained_like_ip_model()
    lowered = lower(model, SHAPE)
    ip = {m.info.name for m in lowered.layers if m.info.interspace is not None}
    assert ip == set(interspace_layers(model))
    planned = plan(lowered, "x86", choose_format)
    for p in planned.plans:
        if p.info.name in ip:
            fmt = "interspace" if p.fmt == "interspace" else "dense"
            assert p.predicted_ms["interspace"] > 0 and "dense" in p.predicted_ms
            assert p.format_label == fmt and "interspace" in p.reason
            best = min(p.predicted_ms["interspace"], p.predicted_ms["dense"])
            assert p.predicted_ms[p.fmt] == best
    table = explain_table(planned.plans, planned.target)
    assert "interspace" in table


@pytest.mark.slow
def test_default_compile_reconstructs_dense_filters_and_equals_pytorch():
    model = _trained_like_ip_model()
    x, ref = _reference(model)
    ip_names = set(interspace_layers(model))
    default = compile_model(model, SHAPE, "x86")
    np.testing.assert_allclose(default.run(x), ref, rtol=1e-4, atol=1e-5)
    for p in default.plans:  # the planner weighed the interspace form for every such layer
        if p.info.name in ip_names:
            assert "interspace" in p.predicted_ms and "interspace" in p.reason


def test_folded_coefficients_follow_bn_scaling_and_reject_other_weights():
    model = _trained_like_ip_model()
    f = interspace_factors(model)["conv1"]
    from tvmprune.plan.layer import LayerInfo
    from tvmprune.kernels.base import ConvSpec

    spec = ConvSpec(1, 32, 32, 16, 16, 3, 3, padding=(1, 1, 1, 1))
    scale = np.linspace(0.5, 2.0, 16).astype(np.float32)
    w = np.einsum("oij,jhw->oihw", f.coefficients, f.basis) * scale[:, None, None, None]
    c = folded_coefficients(LayerInfo(0, "conv1", "conv2d", w, spec=spec), f)
    np.testing.assert_allclose(c, f.coefficients * scale[:, None, None], rtol=1e-5, atol=1e-7)
    assert np.count_nonzero(c) == np.count_nonzero(f.coefficients)
    other = np.random.default_rng(1).standard_normal(w.shape).astype(np.float32)
    assert folded_coefficients(LayerInfo(0, "conv1", "conv2d", other, spec=spec), f) is None


def test_measured_planner_falls_back_to_dense_filters_where_interspace_is_timed_slower():
    """Issue #16, item 3: a layer whose interspace kernel is timed slower than the dense conv on
    ``c * B`` gets the dense filters (and the compiled model still equals PyTorch); one timed
    faster keeps the interspace form. Fake timer: conv1's interspace kernel 1.5 x dense, others 0.5 x."""
    from tvmprune.kernels.format import Format
    from tvmprune.lower.lower import lower
    from tvmprune.plan import measured
    from tvmprune.plan.plan import plan

    model = _trained_like_ip_model()
    ip_names = set(interspace_layers(model))
    timed: list[tuple[str, str]] = []

    def fake_timer(inst, func, info, target):
        timed.append((info.name, str(inst.format)))
        if inst.format == Format.DENSE:
            return 1.0
        if inst.format == Format.INTERSPACE:
            return 1.5 if info.name == "conv1" else 0.5
        return 3.0  # CSR on the reconstructed (dense) c * B

    planned = plan(lower(model, SHAPE), "x86", measured.honest_planner(always=True, timer=fake_timer))
    by_name = {p.info.name: p for p in planned.plans}
    assert {n for n, _ in timed} >= ip_names
    assert by_name["conv1"].fmt == Format.DENSE and "not 1.11x faster" in by_name["conv1"].reason
    for n in ip_names - {"conv1"}:
        assert by_name[n].fmt == Format.INTERSPACE and by_name[n].measured_ms[Format.INTERSPACE] == 0.5
    x, ref = _reference(model)
    from tvmprune.build.build import build
    from tvmprune.schedule.schedule import schedule
    np.testing.assert_allclose(build(schedule(planned)).run(x), ref, rtol=1e-4, atol=1e-5)
