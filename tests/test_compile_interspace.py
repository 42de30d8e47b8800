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


def _trained_like_ip_model():
    torch.manual_seed(0)
    r = interspace_prune(TinyCNN().eval(), 0.9, torch.zeros(SHAPE))
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


@pytest.mark.xfail(strict=True, reason="interspace kernel family not yet re-hooked into the staged planner")
def test_compiled_interspace_form_equals_pytorch():
    model = _trained_like_ip_model()
    x, ref = _reference(model)
    ip_names = set(interspace_layers(model))
    forced = compile_model(model, SHAPE, "x86", planner=sparse_where_pruned)
    np.testing.assert_allclose(forced.run(x), ref, rtol=1e-4, atol=1e-5)
    by_name = {p.info.name: p for p in forced.plans}
    assert {n for n, p in by_name.items() if p.format_label == "interspace"} == ip_names
    for n in ip_names:
        assert "interspace" in by_name[n].predicted_ms
        assert by_name[n].kernel.kind == "interspace"


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="interspace kernel family not yet re-hooked into the staged planner")
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
