"""The measured planner: a pruned layer gets a sparse kernel only where it was timed faster than dense."""

from __future__ import annotations

import json

import numpy as np
import torch

from tvmprune.compiler import compile_model
from tvmprune.kernels.format import Format
from tvmprune.plan import measured
from tvmprune.target import get_target
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
        best = min((f for f in p.measured_ms if f != Format.DENSE), key=p.measured_ms.get)
        keep_sparse = p.measured_ms[best] <= measured.MEASURED_MARGIN * p.measured_ms[Format.DENSE]
        assert p.fmt == (best if keep_sparse else Format.DENSE)
        assert p.reason.startswith("measured:") and p.basis.startswith("measured here")
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
    assert all(p.basis.startswith("predicted (") and "margin" in p.basis for p in pruned)
    assert not (tmp_path / "kernel_times").exists()


def _lowered(pattern: str):
    from tvmprune.lower.lower import lower

    res = prune_model(_net(), pattern, torch.zeros(1, 3, 16, 16))
    return lower(res.model, (1, 3, 16, 16))


def test_auto_keeps_dense_where_sparse_is_not_faster_by_the_margin():
    """Decision logic with a fake timer: the sparse kernel of one layer is timed 0.95 x dense (inside
    the margin: dense), the others 0.5 x (sparse); layers predicted dense are not timed at all."""
    from tvmprune.plan.plan import plan

    lowered = _lowered("1x8@0.8")
    pred_sparse = [m.info.name for m in lowered.layers if not m.unsupported and m.info.groups == 1
                   and m.info.density < 1 and min(measured.predict_ms(m.info, get_target("x86")).items(),
                                                  key=lambda kv: kv[1])[0] != Format.DENSE]
    assert len(pred_sparse) >= 2, "the roofline should predict sparse for the pruned 3x3 / 1x1 layers"
    slow_layer = pred_sparse[0]
    calls: list[tuple[str, str, bool]] = []

    def fake_timer(inst, func, info, target):
        calls.append((info.name, str(inst.format), func is not None))
        if inst.format == Format.DENSE:
            return 1.0
        return 0.95 if info.name == slow_layer else 0.5

    seen = []

    def source(kernel, target):  # the build's schedule source: the planner times with what it gives
        seen.append(kernel.name)
        return kernel.scheduled() if kernel.format == Format.DENSE else None

    planned = plan(lowered, "x86", measured.honest_planner(always=False, timer=fake_timer), schedule_source=source)
    by_name = {p.info.name: p for p in planned.plans}
    assert by_name[slow_layer].fmt == Format.DENSE
    assert "not 1.11x faster" in by_name[slow_layer].reason
    for name in pred_sparse[1:]:
        assert by_name[name].fmt != Format.DENSE and by_name[name].measured_ms[Format.DENSE] == 1.0
    assert {c[0] for c in calls} == set(pred_sparse)  # predicted-dense layers: nothing timed
    assert all(c[2] == (c[1] == "dense") for c in calls)  # the tuned func went to the timer
    assert len(seen) == len(calls)
    assert all(by_name[n].basis.startswith("measured here") for n in pred_sparse)


def test_decide_margin():
    info = measured.LayerInfo(0, "l", "linear", np.ones((8, 8), np.float32))
    assert measured.decide(info, {Format.DENSE: 1.0, Format.CSR: 0.75}, 0.7)[0] == Format.DENSE
    assert measured.decide(info, {Format.DENSE: 1.0, Format.CSR: 0.65}, 0.7)[0] == Format.CSR
    assert measured.decide(info, {Format.DENSE: 1.0}, 0.7)[0] == Format.DENSE


def test_measured_planner_picks_dense_where_sparse_loses(tmp_path, monkeypatch):
    """Real measurement at density 0.9 (1x8@0.1): every timed layer gets what its measured times
    decide, and the layers whose sparse kernels all measured slower than dense (the linear head, at
    least) get dense. Which conv wins at 0.9 on a 16x16 input is the machine's call, not asserted."""
    from tvmprune.plan.plan import plan

    monkeypatch.setenv("TVMPRUNE_CACHE_DIR", str(tmp_path))
    planned = plan(_lowered("1x8@0.1"), "x86", PLANNERS["measured"])
    timed = [p for p in planned.plans if p.measured_ms]
    assert timed and all(len(p.measured_ms) >= 2 for p in timed)
    for p in timed:
        assert p.fmt == measured.decide(p.info, p.measured_ms, measured.MEASURED_MARGIN)[0]
    losing = [p for p in timed if all(ms > p.measured_ms[Format.DENSE] for f, ms in p.measured_ms.items()
                                      if f != Format.DENSE)]
    assert losing, [(p.info.name, p.measured_ms) for p in timed]
    assert all(p.fmt == Format.DENSE and "sparse not" in p.reason for p in losing)


def test_cache_key_tells_tuned_schedules_apart():
    """A tuned PrimFunc (a shipped or tuned record) keys the cache by its structure: the same
    function twice gives one key, another schedule or the default schedule another."""
    from tvmprune.kernels.registry import family

    info = _lowered("1x8@0.8").layers[2].info
    tgt = get_target("x86")
    inst = family(Format.BSR, info.op).build(info, info.block_n, tgt)
    key = measured._cache_key(inst, inst.scheduled(), tgt)
    assert key == measured._cache_key(inst, inst.scheduled(), tgt)
    assert key != measured._cache_key(inst, None, tgt)
    assert key != measured._cache_key(inst, inst.func, tgt)  # the unscheduled function
