"""Pruned directories on disk: safetensors weights, the legacy weights.pt, what loading may run."""

import json
import os

import pytest
import torch

from tvmprune.errors import PruneConfigError, UnknownModelError
from tvmprune.frontend.model_source import load_model
from tvmprune.prune import load_pruned, prune_model, save_pruned

X = torch.zeros(1, 3, 16, 16)


def _saved(tmp_path, pattern="1x8@0.5"):
    res = prune_model(load_model("tiny_cnn"), pattern, X)
    d = tmp_path / "p"
    save_pruned(res, str(d), "tiny_cnn", tuple(X.shape))
    return res, d


def test_weights_are_safetensors_and_legacy_weights_pt_still_loads(tmp_path):
    res, d = _saved(tmp_path)
    assert sorted(os.listdir(d)) == ["pruning.json", "weights.safetensors"]
    assert (d / "weights.safetensors").read_bytes()[8:9] == b"{"
    x = torch.randn(1, 3, 16, 16)
    model, _ = load_pruned(str(d))
    assert torch.equal(model(x), res.model(x))
    # a directory from before safetensors: weights.pt (state_dict), read with weights_only=True
    os.remove(d / "weights.safetensors")
    torch.save(res.model.state_dict(), d / "weights.pt")
    model, _ = load_pruned(str(d))
    assert torch.equal(model(x), res.model(x))
    # saving again replaces the legacy file
    save_pruned(res, str(d), "tiny_cnn", tuple(X.shape))
    assert sorted(os.listdir(d)) == ["pruning.json", "weights.safetensors"]


def test_legacy_weights_pt_with_code_is_refused(tmp_path):
    _, d = _saved(tmp_path)
    os.remove(d / "weights.safetensors")
    torch.save({"w": torch.ones(1), "obj": _Payload()}, d / "weights.pt")  # pickled object, not tensors
    with pytest.raises(PruneConfigError, match="cannot load .*weights.pt"):
        load_pruned(str(d))


class _Payload:
    pass


def test_missing_and_damaged_weights(tmp_path):
    _, d = _saved(tmp_path)
    os.remove(d / "weights.safetensors")
    with pytest.raises(PruneConfigError, match="weights.safetensors is missing"):
        load_pruned(str(d))
    (d / "weights.safetensors").write_bytes(b"\x10\0\0\0\0\0\0\0{not json at all}")
    with pytest.raises(PruneConfigError, match="cannot load .*not JSON"):
        load_pruned(str(d))


def test_factory_spec_is_saved_absolute_and_only_that_file_runs(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    (src / "net.py").write_text(
        "import torch\n"
        "def make():\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),\n"
        "                               torch.nn.Conv2d(16, 16, 3, padding=1))\n")
    monkeypatch.chdir(src)
    res = prune_model(load_model("net.py:make"), "1x8@0.5", X)
    d = tmp_path / "p"
    save_pruned(res, str(d), "net.py:make", tuple(X.shape))
    meta = json.loads((d / "pruning.json").read_text())
    assert meta["model_spec"] == f"{src / 'net.py'}:make"
    # from another directory with its own net.py: the recorded file runs, not the local one
    other = tmp_path / "other"
    other.mkdir()
    (other / "net.py").write_text("raise SystemExit('the wrong net.py ran')\n")
    monkeypatch.chdir(other)
    model, _ = load_pruned(str(d))
    x = torch.randn(1, 3, 16, 16)
    assert torch.equal(model(x), res.model(x))
    # a spec that is neither a torchvision name nor a file is refused, nothing is imported
    meta["model_spec"] = "os:system"
    (d / "pruning.json").write_text(json.dumps(meta))
    with pytest.raises(UnknownModelError, match="unknown model 'os:system'"):
        load_pruned(str(d))
