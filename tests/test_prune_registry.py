"""Tests for the pruning registry: pattern grammar and labels, criteria + selection, adding a
method / modifier / re-indexer, context checks, the restore hook.  Small models only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from tvmprune.errors import PruneConfigError, TraceError
from tvmprune.frontend.model_source import load_model
from tvmprune.prune import (Option, PatternModifier, PrunePattern, PruningMethod, all_methods, get_method,
                            load_pruned, parse_pattern, prune_model, save_pruned)
from tvmprune.prune import channel_index, registry
from tvmprune.prune.channel_index import reindex_module
from tvmprune.prune.layer_policy import sparse_targets
from tvmprune.prune.masks import apply_masks
from tvmprune.prune.result import PruneResult, layer_reports
from tvmprune.prune.selection import lowest_k, select_pruned

X16 = torch.zeros(1, 3, 16, 16)


@pytest.mark.parametrize("text", ["dense", "unstructured@0.8", "unstructured@0.9+global", "1x8@0.8",
                                  "1x4@0.5+norearrange+global", "1x32@0", "filter@0.5", "filter@0.3+global", "filter@0.3+global+params",
                                  "1x16@0.123456789", "unstructured@1e-05"])
def test_label_round_trips(text):
    p = parse_pattern(text)
    assert parse_pattern(p.label) == p
    assert p.label == text
    assert PrunePattern(p.kind, p.rate, p.n, p.options) == p


def test_options_canonical_order_and_errors():
    assert parse_pattern("1x8@0.8+global+norearrange").label == "1x8@0.8+norearrange+global"
    assert parse_pattern("1x8@0.8+global+global").options == ("global",)
    with pytest.raises(PruneConfigError, match=r"unknown option \+fast.*valid options: \+norearrange.*\+global"):
        parse_pattern("1x8@0.8+fast")
    with pytest.raises(PruneConfigError, match="valid options: none"):
        PrunePattern("dense", options=("global",))
    with pytest.raises(PruneConfigError, match="no block size"):
        PrunePattern("filter", 0.5, 8)
    with pytest.raises(PruneConfigError, match="unknown pruning pattern kind 'gatorx'; known: dense"):
        PrunePattern("gatorx", 0.5)
    assert [m.kind for m in all_methods()][:4] == ["dense", "unstructured", "1xN", "filter"]


def test_selection_layerwise_global_cap_min_keep_and_layer_rates():
    s = {"a": torch.tensor([5.0, 1.0, 1.0, 3.0]), "b": torch.tensor([0.1, 0.2, 0.3, 0.4])}
    lw = select_pruned(s, 0.5)
    assert lw["a"].tolist() == [False, True, True, False] and lw["b"].tolist() == [True, True, False, False]
    gl = select_pruned(s, 0.5, global_=True, max_layer_rate=0.5)  # b holds the 4 lowest, capped at 2
    assert gl["b"].sum() == 2 and gl["a"].tolist() == [False, True, True, False]
    assert select_pruned(s, 0.9, min_keep=1)["a"].sum() == 3
    per = select_pruned(s, 0.5, layer_rates={"a": 0.25})
    assert per["a"].tolist() == [False, True, False, False] and per["b"].sum() == 2
    with pytest.raises(PruneConfigError, match="global"):
        select_pruned(s, 0.5, global_=True, layer_rates={"a": 0.1})
    with pytest.raises(PruneConfigError, match="pruning rate for layer b"):
        select_pruned(s, 0.5, layer_rates={"b": 1.5})
    # linear-time lowest_k == stable sort (ties: first by position)
    x = torch.tensor(np.random.default_rng(0).integers(0, 5, 200), dtype=torch.float32)
    for k in (0, 1, 37, 200):
        ref = torch.zeros(200, dtype=torch.bool)
        ref[torch.from_numpy(np.argsort(x.numpy(), kind="stable")[:k])] = True
        assert torch.equal(lowest_k(x, k), ref)


class HalfRowsMethod(PruningMethod):
    """Toy method: zeroes the lower-L1 half of each layer's output rows; needs data; has a choice group."""

    kind = "halfrows"
    syntax = "halfrows@RATE"
    options = (Option("l1", "L1 criterion", group="criterion", default=True),
               Option("l2", "L2 criterion", group="criterion"))
    needs_data = True

    def apply(self, model, pattern, graph, ctx):
        targets, skipped = sparse_targets(model, graph)
        mods = dict(model.named_modules())
        p = 1 if pattern.choice("criterion") == "l1" else 2
        scores = {n: mods[n].weight.detach().reshape(mods[n].weight.shape[0], -1).norm(p=p, dim=1) for n in targets}
        pruned = select_pruned(scores, pattern.rate, layer_rates=ctx.layer_rates)
        masks = {n: (~pruned[n]).reshape(-1, *[1] * (mods[n].weight.dim() - 1)).expand_as(mods[n].weight).clone()
                 for n in targets}
        apply_masks(model, masks)
        return PruneResult(model, layer_reports(model, graph.layers, pattern.label, skipped),
                           {"rows": {n: int(pruned[n].sum()) for n in targets}}, masks)


class HalfModifier(PatternModifier):
    """Toy modifier: halves the rate of every layer (as +guided would choose per-layer rates)."""

    option = Option("half", "half the rate in every layer")
    applies_to = ("halfrows", "unstructured")

    def apply(self, method, model, pattern, graph, ctx):
        targets, _ = sparse_targets(model, graph)
        return method.apply(model, pattern, graph, ctx.with_layer_rates({n: pattern.rate / 2 for n in targets}))


@pytest.fixture
def toy_registry(monkeypatch):
    monkeypatch.setitem(registry._methods, "halfrows", HalfRowsMethod())
    monkeypatch.setitem(registry._modifiers, "half", HalfModifier())


def test_new_method_and_modifier_plug_in(toy_registry, tmp_path):
    p = parse_pattern("halfrows@0.5+l1+half")
    assert p.options == ("half",) and p.choice("criterion") == "l1" and p.label == "halfrows@0.5+half"
    assert parse_pattern("halfrows@0.5+l2").choice("criterion") == "l2"
    with pytest.raises(PruneConfigError, match=r"\+l1 and \+l2 exclude each other"):
        parse_pattern("halfrows@0.5+l1+l2")
    m = load_model("tiny_cnn")
    with pytest.raises(PruneConfigError, match="halfrows@0.5 needs training data"):
        prune_model(m, "halfrows@0.5", X16)
    full = prune_model(m, "halfrows@0.5", X16, data=[])
    half = prune_model(m, "halfrows@0.5+half", X16, data=[])
    assert full.config["rows"]["conv1"] == 8 and half.config["rows"]["conv1"] == 4  # conv1 has 16 rows
    assert full.config["kind"] == "halfrows" and full.config["pattern"] == "halfrows@0.5"
    assert {r.name: r.pattern for r in half.layers}["conv1"] == "halfrows@0.5+half"
    # the modifier also applies to unstructured (sparse) patterns, not to filter
    u = prune_model(m, "unstructured@0.8+half", X16)
    w = dict(u.model.named_modules())["conv1"].weight
    assert abs(float((w == 0).sum()) / w.numel() - 0.4) < 0.01
    with pytest.raises(PruneConfigError, match=r"unknown option \+half for filter"):
        parse_pattern("filter@0.5+half")
    # saved and loaded through the registry (default restore: architecture unchanged)
    save_pruned(full, str(tmp_path / "p"), "tiny_cnn", (1, 3, 16, 16))
    model, meta = load_pruned(str(tmp_path / "p"))
    assert meta["config"]["rows"] == full.config["rows"]
    assert torch.equal(dict(model.named_modules())["conv1"].weight, dict(full.model.named_modules())["conv1"].weight)


def test_load_unknown_kind_and_restore_hook(tmp_path):
    res = prune_model(load_model("tiny_cnn"), "filter@0.5", X16)
    d = tmp_path / "p"
    save_pruned(res, str(d), "tiny_cnn", (1, 3, 16, 16))
    meta = json.loads((d / "pruning.json").read_text())
    assert get_method(meta["config"]["kind"]).restore is not PruningMethod.restore  # filter shrinks on load
    (d / "pruning.json").write_text(json.dumps(dict(meta, config=dict(meta["config"], kind="gatorx"))))
    with pytest.raises(PruneConfigError, match="unknown pruning pattern kind 'gatorx'"):
        load_pruned(str(d))
    (d / "pruning.json").write_text(json.dumps(dict(meta, input_shape="big")))
    with pytest.raises(PruneConfigError, match="bad input_shape"):
        load_pruned(str(d))


def test_reindexer_registry_by_module_type(monkeypatch):
    with pytest.raises(TraceError, match="GELU.*no re-indexer registered"):
        reindex_module("act", nn.GELU(), [(0, 1, 4, torch.arange(4))], [])

    class MyConv(nn.Conv2d):  # a subclass uses its base class's re-indexer (MRO lookup)
        pass

    conv = MyConv(3, 4, 1)
    w = conv.weight.detach().clone()
    reindex_module("c", conv, [(0, 1, 4, torch.tensor([3, 1]))], [])
    assert conv.out_channels == 2 and torch.equal(conv.weight, w[[3, 1]])

    seen = []
    monkeypatch.setitem(channel_index._REINDEXERS, nn.GELU, lambda m, o, i: seen.append(len(o)))
    reindex_module("act", nn.GELU(), [(0, 1, 4, torch.arange(4))], [])
    assert seen == [1]
