"""The measured planner: a pruned layer gets a sparse kernel only where it was timed faster than dense."""

from __future__ import annotations

import json

import numpy as np
import torch

from tvmprune.compiler import compile_model
from tvmprune.kernels.format import Format
from tvmprune.plan import measured
from tvmprune.plan.planners import PLANNERS
from tvmprune.prune import prune_model


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(64, 64, 1), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()


def test_measured_plan_keeps_fastest_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("TVMPRUNE_CACHE_DIR", str(tmp_path))
    shape = (1, 3, 16, 16)
    res = prune_model(_net(), "1x8@0.8", torch.zeros(shape))
    cm = compile_model(res.model, shape, "x86", planner=PLANNERS["measured"])
    timed = [p for p in cm.plans if p.measured_ms]
    assert timed, "no pruned layer was measured"
    for p in timed:
        assert Format.DENSE in p.measured_ms and len(p.measured_ms) >= 2
        assert p.fmt == min(p.measured_ms, key=p.measured_ms.get)
        assert p.reason.startswith("measured fastest:")
        assert p.to_json()["measured_ms"][str(p.fmt)] == round(p.measured_ms[p.fmt], 4)
    files = list((tmp_path / "kernel_times").rglob("*.json"))
    assert len(files) == sum(len(p.measured_ms) for p in timed)
    assert all(json.loads(f.read_text())["ms"] > 0 for f in files)
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    with torch.no_grad():
        ref = res.model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(cm.run(x), ref, rtol=1e-4, atol=1e-4)

    def no_timing(*a, **k):
        raise AssertionError("a cached kernel was timed again")

    monkeypatch.setattr("tvmprune.measure.kernel.time_kernel", no_timing)
    again = compile_model(res.model, shape, "x86", planner=PLANNERS["measured"])
    assert [p.fmt for p in again.plans] == [p.fmt for p in cm.plans]


def test_measured_planner_predicts_for_targets_it_cannot_run(tmp_path, monkeypatch):
    monkeypatch.setenv("TVMPRUNE_CACHE_DIR", str(tmp_path))
    res = prune_model(_net(), "unstructured@0.9", torch.zeros(1, 3, 16, 16))
    from tvmprune.lower.lower import lower
    from tvmprune.plan.plan import plan

    planned = plan(lower(res.model, (1, 3, 16, 16)), "aarch64", PLANNERS["measured"])
    pruned = [p for p in planned.plans if p.info.density < 1.0 and p.info.groups == 1]
    assert pruned and all("cannot be timed on this machine" in p.reason and not p.measured_ms for p in pruned)
    assert not (tmp_path / "kernel_times").exists()
