"""Tests for tvmprune.prune: dependency graph, rearrangement, 1xN / unstructured / filter
pruning, masks, fine-tuning, save / load, CLI.  Random weights, small inputs."""

from __future__ import annotations

import argparse
import copy
import json
import os

import pytest
import torch
from torch import nn

from tvmprune.errors import PruneConfigError, TraceError, TvmpruneError
from tvmprune.frontend.model_source import load_model
from tvmprune.prune import (
    PrunePattern,
    attach_masks,
    build_graph,
    filter_keep_indices,
    filter_mask,
    filter_prune,
    finetune,
    format_layer_table,
    load_pruned,
    masks_from_config,
    parse_pattern,
    prune_model,
    rearrange_filters,
    save_pruned,
    sensitivity_scan,
)
from tvmprune.prune.block import block_map, block_mask, block_scores, global_block_masks, is_block_structured
from tvmprune.prune.graph import is_depthwise
from tvmprune.prune.unstructured import global_magnitude_masks, magnitude_mask

BIG = ["resnet18", "resnet50", "mobilenet_v2", "vgg16"]
X64 = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def randomize_bn(model: nn.Module, seed: int = 1) -> nn.Module:
    """Random BN statistics / affine params so that a wrong permutation changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.25)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


_CACHE: dict[str, nn.Module] = {}


def get_model(spec: str) -> nn.Module:
    if spec not in _CACHE:
        _CACHE[spec] = randomize_bn(load_model(spec))
    return _CACHE[spec]


def run(model, x=X64):
    with torch.no_grad():
        return model.eval()(x)


def mods(model):
    return dict(model.named_modules())


# ------------------------------------------------------------------------------------------
# dependency graph
# ------------------------------------------------------------------------------------------
def test_graph_resnet18_couples_residual_groups():
    g = build_graph(get_model("resnet18"), X64)
    grp = g.out_group("conv1")
    assert set(grp.producers) == {"conv1", "layer1.0.conv2", "layer1.1.conv2"}
    assert not grp.frozen
    members = {(m.module, m.role) for m in grp.members}
    assert ("bn1", "bn") in members and ("layer1.0.bn2", "bn") in members
    # consumers of the stage-1 channels: both blocks' conv1 and the stage-2 entry convs
    assert {"layer1.0.conv1", "layer1.1.conv1", "layer2.0.conv1", "layer2.0.downsample.0"} <= {
        m.module for m in grp.members if m.role == "in"}
    g2 = g.out_group("layer2.0.downsample.0")
    assert set(g2.producers) == {"layer2.0.conv2", "layer2.0.downsample.0", "layer2.1.conv2"}
    assert len(g.coupled_groups()) == 4
    # the non-residual convs are alone
    assert g.out_group("layer1.0.conv1").producers == ["layer1.0.conv1"]
    # model output frozen, first conv consumes the input
    assert g.out_group("fc").frozen and "model output" in g.out_group("fc").reason
    assert g.input_consumers == {"conv1"}
    fc_in = [m for m in g.out_group("layer4.0.conv2").members if m.module == "fc"]
    assert fc_in and fc_in[0].role == "in" and fc_in[0].mult == 1


def test_graph_resnet50_groups():
    g = build_graph(get_model("resnet50"), X64)
    cg = {c.name: set(c.producers) for c in g.coupled_groups()}
    assert len(cg) == 4
    assert cg["layer1.0.conv3"] == {"layer1.0.conv3", "layer1.0.downsample.0", "layer1.1.conv3", "layer1.2.conv3"}
    assert len(cg["layer3.0.conv3"]) == 7
    # stem is not coupled in resnet50 (downsample in layer1.0)
    assert g.out_group("conv1").producers == ["conv1"]


def test_graph_mobilenet_depthwise_pass_through():
    m = get_model("mobilenet_v2")
    g = build_graph(m, X64)
    grp = g.out_group("features.2.conv.0.0")  # expand conv -> dw conv -> project conv
    roles = {(mm.module, mm.role) for mm in grp.members}
    assert ("features.2.conv.1.0", "dw") in roles and ("features.2.conv.1.1", "bn") in roles
    assert ("features.2.conv.2", "in") in roles
    assert is_depthwise(mods(m)["features.2.conv.1.0"])
    # residual: features.3 adds to features.2's output
    assert set(g.out_group("features.2.conv.2").producers) == {"features.2.conv.2", "features.3.conv.2"}
    assert set(g.out_group("features.4.conv.2").producers) == {"features.4.conv.2", "features.5.conv.2",
                                                                 "features.6.conv.2"}


def test_graph_flatten_multiplicity_vgg_alexnet():
    g = build_graph(get_model("vgg16"), X64)
    (mem,) = [m for m in g.out_group("features.28").members if m.role == "in"]
    assert mem.module == "classifier.0" and mem.mult == 49
    assert not g.coupled_groups()
    a = load_model("alexnet")
    ga = build_graph(a, torch.zeros(1, 3, 96, 96))
    (mem,) = [m for m in ga.out_group("features.10").members if m.role == "in"]
    assert mem.module == "classifier.1" and mem.mult == 36


def test_graph_tiny_cnn():
    g = build_graph(load_model("tiny_cnn"), torch.zeros(1, 3, 16, 16))
    assert set(g.out_group("stem.0").producers) == {"stem.0", "conv2"}
    assert [c.name for c in g.coupled_groups()] == ["stem.0"]
    assert g.layers == ["stem.0", "conv1", "conv2", "down.0", "pw.0", "fc"]
    assert "stem.0" in g.summary()


class _Cat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 6, 1)
        self.bn = nn.BatchNorm2d(10)
        self.one = nn.Conv2d(10, 1, 1)  # a conv with one output channel (not depthwise)
        self.c = nn.Conv2d(1, 1, 1, groups=1)
        self.d = nn.Conv2d(10, 8, 1)
        self.fc = nn.Linear(8 * 4 * 4 + 1 * 4 * 4, 5)

    def forward(self, x):
        y = torch.relu(self.bn(torch.cat([self.a(x), self.b(x)], 1)))
        z = self.c(self.one(y))
        w = torch.nn.functional.adaptive_avg_pool2d(self.d(y), 4)
        z = torch.nn.functional.adaptive_avg_pool2d(z, 4)
        return self.fc(torch.flatten(torch.cat([w, z], 1), 1))


def test_graph_concat_offsets_and_flatten():
    m = randomize_bn(_Cat())
    x = torch.randn(2, 3, 8, 8)
    g = build_graph(m, x)
    ga, gb = g.out_group("a"), g.out_group("b")
    assert ga is not gb
    bn_b = [mm for mm in gb.members if mm.module == "bn"][0]
    d_b = [mm for mm in gb.members if mm.module == "d"][0]
    assert bn_b.offset == 4 and d_b.offset == 4 and d_b.role == "in"
    fc_in = [mm for mm in g.out_group("d").members if mm.module == "fc"][0]
    assert fc_in.offset == 0 and fc_in.mult == 16
    assert not is_depthwise(m.one) and not is_depthwise(m.c)
    # rearranging through the concat keeps the function
    m2 = copy.deepcopy(m)
    perms = rearrange_filters(m2, g)
    assert perms
    assert (run(m, x) - run(m2, x)).abs().max() <= 1e-5
    # filter pruning through concat + flatten
    keep = filter_keep_indices(m, g, 0.5)
    small, masked = filter_prune(m, g, keep), filter_mask(m, g, keep)
    assert small.fc.in_features < m.fc.in_features
    assert (run(small, x) - run(masked, x)).abs().max() <= 1e-5


class _Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow
            return self.c(x)
        return self.c(-x)


def test_graph_untraceable_raises_trace_error():
    with pytest.raises(TraceError, match="_Untraceable"):
        build_graph(_Untraceable(), torch.zeros(1, 3, 8, 8))
    with pytest.raises(TraceError):
        prune_model(_Untraceable(), "1x8@0.5", torch.zeros(1, 3, 8, 8))


class _Weird(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        y = self.a(x)
        y = torch.roll(y, 1, dims=1)  # an op the graph does not understand
        return self.b(y)


def test_graph_unknown_op_freezes_channels():
    g = build_graph(_Weird(), torch.zeros(1, 3, 4, 4))
    assert g.out_group("a").frozen and "roll" in g.out_group("a").reason


# ------------------------------------------------------------------------------------------
# rearrangement
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", BIG + ["alexnet", "tiny_cnn"])
def test_rearrangement_preserves_outputs(spec):
    m = get_model(spec)
    g = build_graph(m, X64)
    m2 = copy.deepcopy(m)
    perms = rearrange_filters(m2, g)
    assert len(perms) >= min(10, len(g.prunable_groups()))  # real permutations happened
    ref, out = run(m), run(m2)
    assert ref.abs().max() > 1e-3
    assert (ref - out).abs().max().item() <= 1e-4
    # each group's producers are now sorted by descending summed L1
    md = mods(m2)
    for gid in perms:
        grp = g.groups[gid]
        s = sum(md[p].weight.detach().abs().double().reshape(grp.size, -1).sum(1) for p in grp.producers)
        assert bool((s[:-1] >= s[1:] - 1e-9).all())


def test_rearrangement_test_can_fail():
    """Permuting producers without their consumers must break the output (sanity of the test)."""
    m = get_model("resnet18")
    m2 = copy.deepcopy(m)
    with torch.no_grad():
        w = m2.layer1[0].conv1.weight
        perm = torch.argsort(w.abs().sum((1, 2, 3)), descending=True)
        m2.layer1[0].conv1.weight.copy_(w[perm])
    assert (run(m) - run(m2)).abs().max().item() > 1e-3


# ------------------------------------------------------------------------------------------
# 1xN block pruning
# ------------------------------------------------------------------------------------------
def _check_1xn(result, n, rate):
    md = mods(result.model)
    pruned = [r for r in result.layers if r.skipped_reason is None]
    assert pruned
    masks = masks_from_config(result.config)
    for r in result.layers:
        w = md[r.name].weight
        if r.skipped_reason is not None:
            assert r.name not in masks
            continue
        mask = masks[r.name]
        assert torch.equal(mask, result.masks[r.name])
        assert is_block_structured(w, mask, n), r.name
        bm = block_map(mask, n)
        nblocks = bm.numel()
        removed = nblocks - int(bm.sum())
        assert abs(removed - rate * nblocks) <= 1, (r.name, removed, rate * nblocks)
        if w.shape[0] % n == 0:
            assert abs((1 - r.density) - rate) <= n / w.numel() + 1e-9
    return pruned


@pytest.mark.parametrize("spec,n,rate", [("resnet18", 8, 0.8), ("resnet50", 16, 0.7),
                                          ("mobilenet_v2", 4, 0.5), ("vgg16", 32, 0.9)])
def test_1xn_sparsity_and_block_structure(spec, n, rate):
    m = get_model(spec)
    res = prune_model(m, PrunePattern("1xN", rate, n), X64)
    pruned = _check_1xn(res, n, rate)
    skipped = {r.name: r.skipped_reason for r in res.layers if r.skipped_reason}
    first = res.layers[0]
    assert first.skipped_reason and "first layer" in first.skipped_reason
    if spec == "mobilenet_v2":
        assert any("depthwise" in s for s in skipped.values())
    assert res.layers[-1].kind == "linear" and res.layers[-1].skipped_reason is None
    assert res.model.training is False
    json.dumps(res.config)
    # original model untouched
    assert (mods(m)[pruned[0].name].weight != 0).all()


def test_1xn_global_cap_and_total():
    m = get_model("resnet18")
    res = prune_model(m, parse_pattern("1x8@0.9+global"), X64)
    masks = res.masks
    tot = rem = 0
    for name, k in masks.items():
        bm = block_map(k, 8)
        tot += bm.numel()
        rem += bm.numel() - int(bm.sum())
        assert (bm.numel() - int(bm.sum())) / bm.numel() <= 0.95 + 1e-9
    assert abs(rem - 0.9 * tot) <= 1
    assert len({round(r.density, 2) for r in res.layers if r.skipped_reason is None}) > 1  # not uniform


def test_1xn_tail_block_and_scores():
    w = torch.randn(10, 3)  # Cout=10, N=4: rows 8..9 form a tail block
    s = block_scores(w, 4)
    assert s.shape == (3, 3)
    assert torch.allclose(s[2], w[8:].abs().mean(0).double())
    k = block_mask(w, 4, 0.5, "fc")
    assert is_block_structured(w * k, k, 4)
    assert 9 - int(block_map(k, 4).sum()) in (4, 5)
    gm = global_block_masks({"a": torch.randn(8, 4), "b": torch.randn(8, 4) * 100}, 8, 0.6, max_layer_rate=0.75)
    assert (~block_map(gm["a"], 8)).sum() == 3  # capped at floor(0.75*4) for the small layer
    assert (~block_map(gm["b"], 8)).sum() == 2


def test_1xn_no_rearrange_and_permutations_in_config():
    m = get_model("resnet18")
    r1 = prune_model(m, "1x8@0.5", X64)
    r2 = prune_model(m, "1x8@0.5+norearrange", X64)
    assert "permutations" in r1.config and "permutations" not in r2.config
    assert set(r1.config["permutations"]) >= {"conv1", "layer1.0.conv1"}
    # rearrangement groups high-norm filters: it keeps at least as much L1 as no rearrangement
    md1, md2 = mods(r1.model), mods(r2.model)
    l1 = sum(md1[n].weight.abs().sum() for n in r1.masks)
    l2 = sum(md2[n].weight.abs().sum() for n in r2.masks)
    assert l1 >= l2 * 0.999


# ------------------------------------------------------------------------------------------
# unstructured
# ------------------------------------------------------------------------------------------
def test_unstructured_layerwise_and_global():
    m = get_model("resnet18")
    res = prune_model(m, "unstructured@0.7", X64)
    md = mods(res.model)
    for r in res.layers:
        w = md[r.name].weight
        if r.skipped_reason is None:
            assert abs(int((w == 0).sum()) - round(0.7 * w.numel())) <= 0
            # the kept weights are the largest
            ow = mods(m)[r.name].weight.abs()
            assert ow[w == 0].max() <= ow[w != 0].min() + 1e-12
    k = magnitude_mask(torch.tensor([3.0, -1.0, 2.0, 0.5]), 0.5)
    assert k.tolist() == [True, False, True, False]
    gm = global_magnitude_masks({"a": torch.ones(10) * 0.01, "b": torch.ones(10)}, 0.5, max_layer_rate=0.8)
    assert int((~gm["a"]).sum()) == 8 and int((~gm["b"]).sum()) == 2
    rg = prune_model(m, "unstructured@0.8+global", X64)
    assert abs(rg.sparsity - 0.8) < 1e-3


# ------------------------------------------------------------------------------------------
# filter pruning
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", BIG)
def test_filter_pruning_smaller_equals_masked(spec):
    m = get_model(spec)
    g = build_graph(m, X64)
    keep = filter_keep_indices(m, g, 0.5)
    assert keep
    small = filter_prune(m, g, keep)
    masked = filter_mask(m, g, keep)
    p0 = sum(p.numel() for p in m.parameters())
    p1 = sum(p.numel() for p in small.parameters())
    assert p1 < 0.6 * p0
    a, b, ref = run(small), run(masked), run(m)
    assert (a - b).abs().max().item() <= 1e-4
    assert (a - ref).abs().max().item() > 1e-4  # pruning did something
    # kept indices: the highest summed-L1 channels of each group
    gid = next(iter(keep))
    grp = g.groups[gid]
    md = mods(m)
    s = sum(md[p].weight.detach().abs().double().reshape(grp.size, -1).sum(1) for p in grp.producers)
    removed = torch.ones(grp.size, dtype=torch.bool)
    removed[keep[gid]] = False
    assert s[removed].max() <= s[keep[gid]].min()
    assert len(keep[gid]) == grp.size - round(0.5 * grp.size)


def test_filter_prune_model_api_and_skip_coupled():
    m = get_model("resnet18")
    res = prune_model(m, "filter@0.5", X64)
    assert sum(p.numel() for p in res.model.parameters()) < sum(p.numel() for p in m.parameters())
    assert res.model.layer1[0].conv1.out_channels == 32 and res.model.layer1[0].bn1.num_features == 32
    assert res.model.conv1.out_channels == 32 and res.model.layer1[0].conv2.out_channels == 32  # coupled
    res2 = prune_model(m, "filter@0.5", X64, skip_coupled=True)
    assert res2.model.conv1.out_channels == 64 and res2.model.layer1[0].conv1.out_channels == 32
    rg = prune_model(m, "filter@0.3+global", X64)
    assert rg.model.fc.out_features == 1000
    run(rg.model)


def test_sensitivity_scan():
    m = get_model("tiny_cnn")
    x = torch.randn(2, 3, 16, 16)
    ref = run(m, x)

    def eval_fn(model):
        return float((run(model, x) - ref).abs().mean())

    out = sensitivity_scan(m, eval_fn, rates=[0.0, 0.5, 0.9], example_input=x)
    assert set(out) == {"stem.0", "conv1", "down.0", "pw.0"}
    for layer, d in out.items():
        assert d[0.0] == 0.0 and d[0.9] >= d[0.5] * 0.5 and d[0.9] > 0
    out2 = sensitivity_scan(m, eval_fn, rates=[0.5], layers=["conv1"], example_input=x)
    assert list(out2) == ["conv1"]
    with pytest.raises(PruneConfigError, match="nope"):
        sensitivity_scan(m, eval_fn, rates=[0.5], layers=["nope"], example_input=x)


# ------------------------------------------------------------------------------------------
# masks / fine-tuning
# ------------------------------------------------------------------------------------------
def test_finetune_keeps_masks(capsys, monkeypatch):
    import sys

    m = load_model("tiny_cnn")
    x = torch.randn(16, 3, 16, 16)
    res = prune_model(m, "1x4@0.6", x[:1])
    before = {n: mods(res.model)[n].weight.detach().clone() for n in res.masks}
    loader = [(x[i:i + 4], torch.randint(0, 10, (4,))) for i in range(0, 16, 4)]
    finetune(res.model, res.masks, loader, epochs=1, lr=0.05, progress=True)
    assert capsys.readouterr().err == ""  # stderr is no terminal here: no bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    model = finetune(res.model, res.masks, loader, epochs=2, lr=0.05, progress=True)
    err = capsys.readouterr().err
    assert "fine-tune epoch 1/2" in err and "fine-tune epoch 2/2" in err and "/4 [" in err  # tqdm, 4 batches
    md = mods(model)
    changed = False
    for n, k in res.masks.items():
        w = md[n].weight
        assert bool((w[~k] == 0).all()), n
        changed |= not torch.equal(w, before[n])
    assert changed
    assert not model.training


def test_attach_masks_forward_hook():
    lin = nn.Linear(4, 4)
    k = torch.rand(4, 4) > 0.5
    attach_masks(lin, {"": k})
    with torch.no_grad():
        lin.weight.add_(1.0)  # e.g. an optimizer step outside finetune
    lin(torch.zeros(1, 4))
    assert bool((lin.weight[~k] == 0).all())
    with pytest.raises(PruneConfigError, match="shape"):
        attach_masks(lin, {"": torch.ones(3, 3, dtype=torch.bool)})


# ------------------------------------------------------------------------------------------
# save / load
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,pattern", [("resnet18", "1x8@0.8"), ("mobilenet_v2", "filter@0.5"),
                                          ("tiny_cnn", "unstructured@0.6+global"), ("resnet18", "filter@0.4+global")])
def test_save_load_round_trip(tmp_path, spec, pattern):
    m = load_model(spec)
    res = prune_model(m, pattern, X64)
    d = str(tmp_path / "p")
    save_pruned(res, d, spec, (1, 3, 64, 64))
    assert sorted(os.listdir(d)) == ["pruning.json", "weights.safetensors"]
    model, meta = load_pruned(d)
    assert (run(res.model) - run(model)).abs().max().item() == 0
    assert meta["model_spec"] == spec and meta["input_shape"] == [1, 3, 64, 64]
    assert meta["config"]["pattern"] == parse_pattern(pattern).label
    assert len(meta["layers"]) == len(res.layers)
    if "masks" in meta["config"]:
        for n, k in masks_from_config(meta["config"]).items():
            assert torch.equal(k, res.masks[n])


def test_load_errors(tmp_path):
    with pytest.raises(PruneConfigError, match="does not exist"):
        load_pruned(str(tmp_path / "missing"))
    d = tmp_path / "d"
    d.mkdir()
    with pytest.raises(PruneConfigError, match="pruning.json is missing"):
        load_pruned(str(d))
    res = prune_model(load_model("tiny_cnn"), "filter@0.5", torch.zeros(1, 3, 16, 16))
    save_pruned(res, str(d), "tiny_cnn", (1, 3, 16, 16))
    meta = json.loads((d / "pruning.json").read_text())
    (d / "pruning.json").write_text("{not json")
    with pytest.raises(PruneConfigError, match="cannot read"):
        load_pruned(str(d))
    meta2 = dict(meta, config=dict(meta["config"], filter_keep={}))
    (d / "pruning.json").write_text(json.dumps(meta2))
    with pytest.raises(PruneConfigError, match="do not fit"):
        load_pruned(str(d))
    (d / "pruning.json").write_text(json.dumps(meta))
    (d / "weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(PruneConfigError, match="cannot load"):
        load_pruned(str(d))
    (d / "pruning.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(PruneConfigError, match="not a tvmprune pruning config"):
        load_pruned(str(d))


# ------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------
def test_bad_input_errors_name_argument_and_layer():
    with pytest.raises(PruneConfigError, match="rate"):
        PrunePattern("1xN", 1.0, 8)
    with pytest.raises(PruneConfigError, match="block size N"):
        PrunePattern("1xN", 0.5, 3)
    with pytest.raises(PruneConfigError, match="layer conv7"):
        block_mask(torch.randn(8, 4), 8, 1.5, "conv7")
    with pytest.raises(PruneConfigError, match="layer conv7"):
        block_mask(torch.randn(8, 4), 5, 0.5, "conv7")
    with pytest.raises(PruneConfigError, match="layer bad"):
        block_mask(torch.randn(8), 8, 0.5, "bad")
    with pytest.raises(PruneConfigError, match="model must be"):
        prune_model("resnet18", "1x8@0.5")
    with pytest.raises(PruneConfigError, match="pattern"):
        prune_model(load_model("tiny_cnn"), 42)
    with pytest.raises(PruneConfigError, match="cannot parse"):
        prune_model(load_model("tiny_cnn"), "1x8@@0.5")
    with pytest.raises(PruneConfigError, match="example_input"):
        prune_model(load_model("tiny_cnn"), "1x8@0.5", example_input=[1, 3, 8, 8])
    with pytest.raises(PruneConfigError, match="filter pruning rate"):
        filter_keep_indices(get_model("tiny_cnn"), build_graph(get_model("tiny_cnn"), torch.zeros(1, 3, 8, 8)), -0.1)
    # a frozen PrunePattern bypassing __post_init__ is still validated by prune_model
    p = PrunePattern("1xN", 0.5, 8)
    object.__setattr__(p, "n", 7)
    with pytest.raises(PruneConfigError, match="block size N"):
        prune_model(load_model("tiny_cnn"), p, torch.zeros(1, 3, 8, 8))


def test_layer_table_format():
    res = prune_model(load_model("tiny_cnn"), "1x8@0.5", torch.zeros(1, 3, 16, 16))
    t = format_layer_table(res.layers)
    lines = t.splitlines()
    assert lines[0].split()[:5] == ["layer", "kind", "shape", "density", "pattern"]
    assert any(line.startswith("stem.0") and "first layer" in line for line in lines)
    assert any(line.startswith("fc") and "1x8@0.5" in line and "10x32" in line for line in lines)


# ------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------
def _parse(argv):
    from tvmprune.prune.command import add_prune_parser

    parser = argparse.ArgumentParser(prog="tvmprune")
    sub = parser.add_subparsers(dest="command")
    add_prune_parser(sub)
    return parser.parse_args(argv)


def test_cli_prune(tmp_path, capsys):
    from tvmprune.console import run_command
    from tvmprune.prune.command import pattern_from_args, run_prune

    out = str(tmp_path / "pruned")
    args = _parse(["prune", "--model", "tiny_cnn", "--pattern", "1xN", "--n", "4", "--rate", "0.5",
                   "--input-shape", "1x3x16x16", "-o", out])
    assert run_command(run_prune, args) == 0
    text = capsys.readouterr().out
    assert "conv1" in text and "1x4@0.5" in text and "coupled" in text
    model, meta = load_pruned(out)
    assert meta["config"]["pattern"] == "1x4@0.5"

    def pat(*a):
        return pattern_from_args(_parse(["prune", *a])).label

    assert pat("--pattern", "1x8@0.8") == "1x8@0.8"
    assert pat("--pattern", "1x16", "--rate", "0.7", "--global") == "1x16@0.7+global"
    assert pat("--pattern", "1xN", "--no-rearrange") == "1x8@0.8+norearrange"
    assert pat("--pattern", "filter", "--rate", "0.3") == "filter@0.3"
    assert pat("--pattern", "unstructured") == "unstructured@0.8"
    for bad in (["--pattern", "1xN", "--n", "3"], ["--pattern", "1xN", "--rate", "1.2"],
                ["--pattern", "1x8@0.8", "--rate", "0.5"], ["--pattern", "blocks"],
                ["--pattern", "filter", "--n", "8"]):
        with pytest.raises(TvmpruneError):
            pattern_from_args(_parse(["prune", *bad]))
