"""Masked fine-tuning (a tqdm bar per epoch on stderr, where :mod:`tvmprune.console` allows one)."""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from ..console import progress as progress_bar
from ..console import progress_enabled
from ..errors import PruneConfigError
from .masks import apply_masks, attach_masks, detach_masks

__all__ = ["finetune"]


def finetune(model: nn.Module, masks: dict[str, torch.Tensor] | None, loader: Iterable, epochs: int = 1,
             lr: float = 1e-3, loss_fn: Callable | None = None, progress: bool = True,
             momentum: float = 0.9, weight_decay: float = 0.0,
             regularizer: Callable[[], torch.Tensor] | None = None,
             after_step: Callable[[], None] | None = None) -> nn.Module:
    """Fine-tune ``model`` with SGD while keeping pruned weights at zero.

    ``loader`` yields ``(inputs, targets)`` batches; ``loss_fn`` defaults to cross-entropy.
    Masks are attached as forward pre-hooks + gradient masks and re-applied after every
    step, so the returned model (eval mode) has exactly the masked pattern.  Returns the model.
    ``regularizer()`` is added to the loss; ``after_step()`` runs after each optimizer step and
    may shrink ``masks`` in place (guided sparsity's thresholding).
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise PruneConfigError(f"epochs must be a non-negative integer, got {epochs!r}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise PruneConfigError(f"lr must be a positive number, got {lr!r}")
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    masks = masks or {}
    attach_masks(model, masks)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    try:
        total = len(loader)  # type: ignore[arg-type]
    except TypeError:
        total = None
    model.train()
    try:
        for ep in range(epochs):
            bar = progress_bar(loader, total=total, desc=f"fine-tune epoch {ep + 1}/{epochs}", unit="batch",
                               disable=not (progress and progress_enabled()), delay=0)
            run_loss, n = 0.0, 0
            for batch in bar:
                x, y = batch[0], batch[1]
                opt.zero_grad()
                loss = loss_fn(model(x), y)
                (loss + regularizer() if regularizer is not None else loss).backward()
                opt.step()
                if after_step is not None:
                    after_step()
                apply_masks(model, masks)
                run_loss += float(loss.detach())
                n += 1
                bar.set_postfix(loss=f"{run_loss / n:.4f}", refresh=False)
            bar.close()
    finally:
        detach_masks(model)
        apply_masks(model, masks)
    return model.eval()
