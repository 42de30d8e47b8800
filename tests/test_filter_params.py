"""``filter@RATE+params`` (issue 19): the rate read as a parameter budget, (1 - RATE)^2 kept, at the
smallest channel rate that meets it -- the families whose 1000-way classifier keeps plain
``filter@0.3`` at 0.56-0.59 of their parameters get under 0.55 with the output shape unchanged."""

import pytest
import torch

from tvmprune.errors import PruneConfigError
from tvmprune.frontend.model_source import load_model
from tvmprune.prune import parse_pattern, prune_model
from tvmprune.prune.param_budget import params_budget, rate_for_budget

from test_graph_families import X64, check_compiled_equal, n_params, randomize_norms  # noqa: E402

# filter@0.3 keeps 0.56-0.59 of these (tests/test_graph_families.py): the classifier holds 29-45 %
SMALL_FAMILIES = ["squeezenet1_0", "mobilenet_v3_small", "mnasnet1_0", "mobilenet_v2", "shufflenet_v2_x1_0"]


@pytest.mark.parametrize("spec", SMALL_FAMILIES)
def test_filter_03_params_keeps_under_055_shape_unchanged(spec):
    model = randomize_norms(load_model(spec))
    plain = n_params(prune_model(model, "filter@0.3", X64).model) / n_params(model)
    res = prune_model(model, "filter@0.3+params", X64)
    kept = n_params(res.model) / n_params(model)
    assert plain > 0.55 and kept <= params_budget(0.3) == pytest.approx(0.49)
    assert kept == pytest.approx(res.config["params_kept"]) and kept > 0.47  # the smallest rate: not far under
    assert 0.3 < res.config["channel_rate"] < 0.45
    assert [r.name for r in res.layers if r.skipped_reason] == []  # one uniform rate: every layer shrinks
    with torch.no_grad():
        assert res.model(X64).shape == model(X64).shape == (1, 1000)


def test_params_chooses_the_smallest_rate_meeting_the_budget():
    model = load_model("squeezenet1_0")
    res = prune_model(model, "filter@0.3+params", X64)
    rate = res.config["channel_rate"]
    below = prune_model(model, f"filter@{rate - 0.95 / 4096:.6f}", X64).model
    at = prune_model(model, f"filter@{rate:.17g}", X64).model
    assert n_params(below) / n_params(model) > 0.49 >= n_params(at) / n_params(model)
    assert n_params(at) == n_params(res.model)


def test_params_on_a_resnet_means_about_the_plain_rate():
    """Every resnet18 layer but the stem and the 512x1000 fc is pruned on both sides: the budget is the rate's."""
    res = prune_model(load_model("resnet18"), "filter@0.3+params", X64)
    assert res.config["channel_rate"] == pytest.approx(0.3, abs=0.02)


def test_params_with_global_ranks_all_channels_to_the_budget():
    model = load_model("mobilenet_v2")
    res = prune_model(model, "filter@0.3+global+params", X64)
    assert res.config["global"] and 0.47 < n_params(res.model) / n_params(model) <= 0.49
    with torch.no_grad():
        assert res.model(X64).shape == (1, 1000)


def test_params_label_and_unreachable_budget():
    assert parse_pattern("filter@0.3+params+global").label == "filter@0.3+global+params"
    assert parse_pattern(parse_pattern("filter@0.3+params").label).has("params")
    with pytest.raises(PruneConfigError, match=r"filter@0.9\+params: even a channel rate of 0.95 keeps .* budget"):
        prune_model(load_model("squeezenet1_0"), "filter@0.9+params", X64)  # the fc's 1000 outputs stay
    assert rate_for_budget(lambda r: 1.0 - r, 1.0, 0.95) == (0.0, 1.0)
    rate, kept = rate_for_budget(lambda r: 1.0 - r, 0.5, 0.95)
    assert 0.5 <= rate < 0.5 + 0.95 / 4096 and kept == 1.0 - rate


def test_params_pruned_model_saves_loads_and_compiles_equal_to_pytorch(tmp_path):
    from tvmprune.prune.storage import load_pruned, save_pruned

    res = prune_model(randomize_norms(load_model("squeezenet1_0")), "filter@0.3+params", X64)
    save_pruned(res, str(tmp_path), "squeezenet1_0", (1, 3, 64, 64))
    loaded, _ = load_pruned(str(tmp_path))
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(X64), res.model(X64))
    check_compiled_equal(res.model)
