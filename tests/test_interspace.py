"""Interspace pruning (PyTorch side): equivalence with SP, masks through training, save/load, errors."""

import pytest
import torch
from torch import nn

from tvmprune.data import TinyCNN
from tvmprune.errors import PruneConfigError
from tvmprune.prune import finetune, load_pruned, prune_model, save_pruned
from tvmprune.prune.block import is_block_structured
from tvmprune.prune.interspace import (InterspaceConv2d, interspace_layers, interspace_prune, reconstruct_dense,
                                       spatial_basis)

X_SHAPE = (1, 3, 32, 32)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return TinyCNN().eval()


def _loader(n_batches: int = 3, batch: int = 8):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, 10, (batch,), generator=g))
            for _ in range(n_batches)]


def test_identity_basis_equals_unstructured_at_same_masks():
    model = _model()
    ip = interspace_prune(model, 0.9, torch.zeros(X_SHAPE))
    sp = prune_model(model, "unstructured@0.9", torch.zeros(X_SHAPE))
    layers = interspace_layers(ip.model)
    assert set(layers) == {"conv1", "conv2", "down.0"}  # the stem (first layer) and the 1x1 stay out
    sp_mods = dict(sp.model.named_modules())
    for name, m in layers.items():
        assert torch.equal(m.basis, spatial_basis(3, 3))
        assert torch.equal(m.mask.reshape(sp_mods[name].weight.shape), sp_mods[name].weight != 0)
    x = torch.randn(4, *X_SHAPE[1:])
    with torch.no_grad():
        assert (ip.model(x) - sp.model(x)).abs().max() < 1e-5
    assert ip.sparsity == pytest.approx(sp.sparsity, abs=1e-9)
    assert ip.sparsity == pytest.approx(0.9, abs=1e-3)


def test_conversion_keeps_the_function_and_reconstruct_dense_matches():
    model = _model()
    ip = interspace_prune(model, 0.0, torch.zeros(X_SHAPE))
    x = torch.randn(2, *X_SHAPE[1:])
    with torch.no_grad():
        assert (ip.model(x) - model(x)).abs().max() < 1e-5
        dense = reconstruct_dense(ip.model)
        assert not interspace_layers(dense)
        assert set(dense.state_dict()) == set(model.state_dict())
        assert (dense(x) - ip.model(x)).abs().max() < 1e-5


def test_masks_hold_through_optimizer_steps_while_basis_changes():
    model = _model()
    ip = interspace_prune(model, 0.8, torch.zeros(X_SHAPE))
    before = {n: m.mask.clone() for n, m in interspace_layers(ip.model).items()}
    finetune(ip.model, ip.masks, _loader(), epochs=2, lr=0.05, progress=False, weight_decay=1e-3)
    for name, m in interspace_layers(ip.model).items():
        assert torch.equal(m.mask, before[name])
        assert int((m.coefficients[~m.mask] != 0).sum()) == 0, name
        assert (m.basis - spatial_basis(3, 3)).abs().max() > 1e-4, f"{name}: basis was not trained"
        # filters are spatially dense now although the coefficients are 80% zero
        assert float((m.weight != 0).float().mean()) > 0.5
    mods = dict(ip.model.named_modules())
    for name, keep in ip.masks.items():  # 1x1 conv and linear: SP masks
        assert int((mods[name].weight[~keep] != 0).sum()) == 0
    assert ip.sparsity == pytest.approx(0.8, abs=1e-3)


def test_block_and_global_options():
    model = _model()
    blk = interspace_prune(model, 0.75, torch.zeros(X_SHAPE), block_n=4)
    assert blk.config["pattern"] == "interspace@0.75+1x4"
    for m in interspace_layers(blk.model).values():
        flat = m.mask.reshape(m.out_channels, -1)
        assert is_block_structured(flat.float(), flat, 4)
        assert float(flat.float().mean()) == pytest.approx(0.25, abs=0.01)
    glb = interspace_prune(model, 0.9, torch.zeros(X_SHAPE), global_=True)
    assert glb.config["pattern"] == "interspace@0.9+global"
    assert glb.sparsity == pytest.approx(0.9, abs=1e-3)
    dens = {r.name: r.density for r in glb.layers if r.skipped_reason is None}
    assert len(set(round(d, 3) for d in dens.values())) > 1  # one ranking: layers differ


def test_save_load_round_trip(tmp_path):
    model = _model()
    ip = interspace_prune(model, 0.9, torch.zeros(X_SHAPE))
    finetune(ip.model, ip.masks, _loader(2), epochs=1, lr=0.05, progress=False)
    save_pruned(ip, str(tmp_path), "tiny_cnn", X_SHAPE)
    loaded, meta = load_pruned(str(tmp_path))
    assert meta["config"]["kind"] == "interspace"
    a, b = interspace_layers(ip.model), interspace_layers(loaded)
    assert set(a) == set(b)
    for name in a:
        assert torch.equal(a[name].basis, b[name].basis)
        assert torch.equal(a[name].mask, b[name].mask)
        assert torch.equal(a[name].coefficients, b[name].coefficients)
    x = torch.randn(2, *X_SHAPE[1:])
    with torch.no_grad():
        assert (ip.model.eval()(x) - loaded(x)).abs().max() < 1e-6


def test_one_by_one_only_model_is_a_clear_error():
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 1), nn.Flatten(), nn.Linear(8 * 4 * 4, 2))
    with pytest.raises(PruneConfigError, match="needs a KxK conv"):
        interspace_prune(model, 0.5, torch.zeros(1, 3, 4, 4))


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5, float("nan")])
def test_rate_outside_unit_interval_is_an_error(rate):
    with pytest.raises(PruneConfigError, match=r"\[0, 1\)"):
        interspace_prune(_model(), rate, torch.zeros(X_SHAPE))


def test_bad_block_size_is_an_error():
    with pytest.raises(PruneConfigError, match="block size"):
        interspace_prune(_model(), 0.5, torch.zeros(X_SHAPE), block_n=3)


def test_module_rejects_non_zero_padding_mode():
    conv = nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")
    from tvmprune.errors import UnsupportedLayerError
    with pytest.raises(UnsupportedLayerError, match="zero padding"):
        InterspaceConv2d.from_conv(conv)


def test_registered_pattern_prunes_and_round_trips(tmp_path):
    from tvmprune.prune import parse_pattern

    pat = parse_pattern("interspace@0.9+global+1x4")
    assert pat.label == "interspace@0.9+1x4+global"
    res = prune_model(_model(), pat, torch.zeros(X_SHAPE))
    assert res.config["kind"] == "interspace" and res.config["n"] == 4
    assert set(interspace_layers(res.model)) == {"conv1", "conv2", "down.0"}
    assert res.sparsity == pytest.approx(0.9, abs=0.01)
    save_pruned(res, str(tmp_path), "tiny_cnn", X_SHAPE)
    loaded, _ = load_pruned(str(tmp_path))
    x = torch.randn(1, *X_SHAPE[1:])
    with torch.no_grad():
        assert (res.model(x) - loaded(x)).abs().max() < 1e-6


@pytest.mark.parametrize("text", ["interspace@0.9+1x3", "interspace@1.0", "interspace", "interspace@0.9+1x4+1x8"])
def test_bad_pattern_strings_are_clear_errors(text):
    from tvmprune.prune import parse_pattern

    with pytest.raises(PruneConfigError):
        parse_pattern(text)


def test_compare_counts_interspace_coefficients():
    from tvmprune.compare import count_model

    model = _model()
    ip = interspace_prune(model, 0.9, torch.zeros(X_SHAPE))
    sp = prune_model(model, "unstructured@0.9", torch.zeros(X_SHAPE))
    with torch.no_grad():  # a moved basis makes the filters spatially dense; the count must not change
        for m in interspace_layers(ip.model).values():
            m.basis.add_(0.1)
    c_ip, c_sp = count_model(ip.model, X_SHAPE), count_model(sp.model, X_SHAPE)
    assert c_ip["weights_total"] == c_sp["weights_total"]
    assert c_ip["weights_nonzero"] == c_sp["weights_nonzero"]
    assert c_ip["flops_nonzero"] == c_sp["flops_nonzero"]
