"""Training the gates against the cost, with lambda steered to reach the requested cost ratio.

Loss per step: ``cross_entropy + lambda * cost_ratio(open gates)``, where the open count
of each edge is the batch mean of its (straight-through) hard gates, so the gradient of the
cost term on an edge is Gator's ``w_e`` recomputed from the current open channels.  Weights
and gate logits have their own Adam optimisers (gate learning rate ``gate_lr``).  After each
step, channels with ``sigmoid(theta) < 0.5`` close for good; while the model's cost
(eval-mode gates) is above the target ratio, lambda grows by ``lambda_growth`` per step,
so the target is always reached; the gate phase ends as soon as it is.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import nn

from .cost import CostModel
from .gates import ChannelGates, attach_gates

__all__ = ["GateTrainConfig", "GateTrainReport", "train_gates"]


@dataclass
class GateTrainConfig:
    """Knobs of the gate phase (defaults suit the built-in digits data)."""

    ratio: float
    max_epochs: int = 40
    lr: float = 1e-3
    gate_lr: float = 0.05
    lambda0: float = 0.5
    lambda_growth: float = 1.02
    seed: int = 0
    progress: bool = False


@dataclass
class GateTrainReport:
    reached: bool
    steps: int
    epochs: float
    final_lambda: float
    final_ratio: float
    trajectory: list[dict] = field(default_factory=list)  # one entry per epoch (and at the end)


def _batches(loader: Iterable):
    for batch in loader:
        yield batch[0], batch[1]


def train_gates(model: nn.Module, gates: ChannelGates, cost: CostModel, train_loader: Iterable,
                cfg: GateTrainConfig) -> GateTrainReport:
    """Train ``model`` and ``gates`` until the cost ratio (eval gates) is <= ``cfg.ratio``.

    ``model`` is trained in place (train mode during the phase, eval mode after).
    """
    from tqdm import tqdm

    from ...console import progress_enabled

    torch.manual_seed(cfg.seed)
    w_opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    g_opt = torch.optim.Adam(gates.parameters(), lr=cfg.gate_lr)
    loss_fn = nn.CrossEntropyLoss()
    lam = cfg.lambda0
    traj: list[dict] = []
    steps = 0
    ratio_now = cost.ratio_of_counts(gates.open_counts())
    reached = ratio_now <= cfg.ratio
    try:
        per_epoch = len(train_loader)  # type: ignore[arg-type]
    except TypeError:
        per_epoch = None
    bar = tqdm(total=cfg.max_epochs, desc=f"gator gates -> cost {cfg.ratio:g} ({cost.kind})", unit="epoch",
               disable=not (cfg.progress and progress_enabled()), file=sys.stderr)
    model.train()
    gates.train()
    with attach_gates(model, gates):
        for epoch in range(cfg.max_epochs):
            if reached:
                break
            tot, n = 0.0, 0
            for x, y in _batches(train_loader):
                w_opt.zero_grad()
                g_opt.zero_grad()
                out = model(x)
                task = loss_fn(out, y)
                opened = [g.sum(dim=1).mean() for g in gates.current]
                loss = task + lam * cost.ratio(opened)
                loss.backward()
                gates.mask_gradients()
                w_opt.step()
                g_opt.step()
                gates.close_settled()
                steps += 1
                tot, n = tot + float(task.detach()), n + 1
                ratio_now = cost.ratio_of_counts(gates.open_counts())
                if ratio_now <= cfg.ratio:
                    reached = True
                    break
                lam *= cfg.lambda_growth
            open_ch = sum(gates.open_counts())
            traj.append({"epoch": epoch + 1, "steps": steps, "loss": tot / max(n, 1), "lambda": lam,
                         "open_channels": open_ch, "cost_ratio": ratio_now})
            bar.set_postfix(loss=f"{tot / max(n, 1):.3f}", open=open_ch, cost=f"{ratio_now:.3f}", lam=f"{lam:.2g}")
            bar.update(1)
    bar.close()
    model.eval()
    gates.eval()
    epochs = steps / per_epoch if per_epoch else float(len(traj))
    return GateTrainReport(reached, steps, epochs, lam, ratio_now, traj)
