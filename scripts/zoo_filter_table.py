"""Parameters kept per torchvision CNN family after ``filter@RATE`` (tvmprune vs Torch-Pruning).

For every model: tvmprune's ``prune_model(model, "filter@RATE")`` on random weights, the
fraction of parameters kept (of all, and of those the eval forward uses), how many conv / linear layers lost channels, and whether the
output shape is unchanged; then ``filter@RATE+params`` (the rate as a parameter budget, (1-RATE)^2 kept,
:mod:`tvmprune.prune.param_budget`): its kept fraction, the uniform channel rate it chose, and its output shape check.  When ``torch_pruning`` is importable (``pip install
torch-pruning``; it is *not* a tvmprune dependency) the same per-layer L1 rate is applied with
its ``MetaPruner`` and its kept fraction is printed beside ours (with its output shape when that changed).

    PYTHONPATH=$PWD python scripts/zoo_filter_table.py [--rate 0.3] [--size 64] [--models a,b]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

from tvmprune.frontend.model_source import load_model
from tvmprune.prune import prune_model

ZOO = ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
       "regnet_x_400mf", "regnet_y_400mf", "resnext50_32x4d", "densenet121", "convnext_tiny",
       "shufflenet_v2_x1_0", "vgg16", "squeezenet1_0", "googlenet", "mnasnet1_0"]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def n_used_params(model: nn.Module, x: torch.Tensor) -> int:
    """Parameters the eval forward uses (those that get a gradient): googlenet's aux heads do not count."""
    m = copy.deepcopy(model).eval()
    m(x).sum().backward()
    return sum(p.numel() for p in m.parameters() if p.grad is not None)


def tvmprune_row(model: nn.Module, x: torch.Tensor, rate: float, options: str = "") -> dict:
    t0 = time.perf_counter()
    res = prune_model(model, f"filter@{rate:g}{options}", x)
    with torch.no_grad():
        shape_ok = tuple(res.model.eval()(x).shape) == tuple(model.eval()(x).shape)
    pruned = sum(1 for r in res.layers if r.skipped_reason is None)
    return {"kept": n_params(res.model) / n_params(model), "layers": f"{pruned}/{len(res.layers)}",
            "kept_used": n_used_params(res.model, x) / n_used_params(model, x),
            "channel_rate": res.config.get("channel_rate", rate),
            "shape_ok": shape_ok, "seconds": time.perf_counter() - t0}


def torch_pruning_kept(model: nn.Module, x: torch.Tensor, rate: float) -> str:
    """Kept fraction with Torch-Pruning's MetaPruner (L1, per-layer rate, 1000-output classifiers ignored),
    flagged when its pruned model's eval output shape differs; ``n/a`` when unavailable or failing."""
    try:
        import torch_pruning as tp
    except ImportError:
        return "n/a"
    m = copy.deepcopy(model)
    ignored = [mod for mod in m.modules() if isinstance(mod, nn.Linear) and mod.out_features == 1000]
    ignored += [mod for mod in m.modules() if isinstance(mod, nn.Conv2d) and mod.out_channels == 1000]
    try:
        pruner = tp.pruner.MetaPruner(m, x, importance=tp.importance.MagnitudeImportance(p=1),
                                      pruning_ratio=rate, ignored_layers=ignored)
        pruner.step()
        with torch.no_grad():
            shape, want = tuple(m.eval()(x).shape), tuple(model.eval()(x).shape)
    except Exception as e:  # noqa: BLE001 - report, do not stop the table
        print(f"  torch-pruning failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}")
        return "n/a (fails)"
    kept = f"{n_params(m) / n_params(model):.3f}"
    return kept if shape == want else f"{kept} (output {'x'.join(map(str, shape))})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=0.3)
    ap.add_argument("--size", type=int, default=64, help="input height = width")
    ap.add_argument("--models", default=",".join(ZOO))
    args = ap.parse_args()
    x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    print("| model | params | kept (tvmprune) | kept of used params | layers pruned | shape ok | kept (Torch-Pruning) "
          "| kept (+params) | channel rate (+params) | shape ok (+params) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for spec in args.models.split(","):
        model = load_model(spec).eval()
        row = tvmprune_row(model, x, args.rate)
        tp_s = torch_pruning_kept(model, x, args.rate)
        var = tvmprune_row(model, x, args.rate, "+params")
        print(f"| {spec} | {n_params(model) / 1e6:.2f}M | {row['kept']:.3f} | {row['kept_used']:.3f} | {row['layers']} | "
              f"{'yes' if row['shape_ok'] else 'NO'} | {tp_s} | {var['kept']:.3f} | {var['channel_rate']:.3f} | "
              f"{'yes' if var['shape_ok'] else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
