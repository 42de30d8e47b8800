"""The training-time form of guided sparsity: GESL and GDNS in the fine-tune loop, with GSL's rules.

Given a :class:`~.planner.GuidedPlan` (the one-shot densities, which spend the pattern's budget)
and training batches, :func:`guided_train` runs two phases over the same number of batches as a
plain fine-tune (``epochs`` passes, each split ``prune_fraction`` / rest):

1. Pruning phase, on the layers with speedup potential only (GSL rules 1 and 2):

   * ``gesl`` (SkimCaffe's guided element-wise sparsity learning): L1 regularisation on those
     layers plus, after every step, a hard threshold ``|w| <= th_i`` with the gradient-adaptive
     ``th_i = 1 / (|g_i| / th0 + 1 / (f * th0))`` (th0 = 1e-4, f = 10): weights with large
     gradients are spared, idle small ones are removed. Pruned weights stay pruned.
   * ``gdns`` (guided dynamic network surgery): the layer's weight is a dense shadow copy that
     keeps learning (straight-through gradient of the masked forward); after every step the
     mask is recomputed as the largest-|w| units, as many as GESL's threshold leaves, so pruned
     weights may come back.

   Rule 3: a layer stops being pruned once at its floor ``max(saturation, 1 - max_layer_rate)``
   (never below it within a step). For 1xN patterns a unit is a block, its |w| and threshold are
   block means.
2. Rule 4, then masked retraining: a layer whose density ended at or above its breakeven (not
   sparse enough to run faster) gets its dense weights back (the pre-pruning ones for GESL, the
   shadow for GDNS) and is no longer masked; then every mask is kept fixed while training at
   ``retrain_lr_factor`` (0.1) of the learning rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

from ...errors import PruneConfigError
from ..block import block_map, block_scores, expand_block_mask
from ..finetune import finetune
from .planner import GuidedPlan

__all__ = ["GESL_TH0", "GESL_F", "GuidedTraining", "TrainingReport", "gesl_threshold", "guided_train",
           "restore_unprofitable"]

GESL_TH0 = 1e-4
GESL_F = 10.0
METHODS = ("gesl", "gdns")


def gesl_threshold(grad: torch.Tensor, th0: float = GESL_TH0, f: float = GESL_F) -> torch.Tensor:
    """GESL's per-weight threshold ``1 / (|g| / th0 + 1 / (f * th0))``, shaped like ``grad``.

    ``f * th0`` for an idle weight (g = 0), about ``th0**2 / |g|`` for a busy one.
    """
    return 1.0 / (grad.abs() / th0 + 1.0 / (f * th0))


@dataclass(frozen=True)
class GuidedTraining:
    """Settings of :func:`guided_train` (module docstring)."""

    method: str = "gdns"
    l1: float = 1e-4
    th0: float = GESL_TH0
    f: float = GESL_F
    prune_fraction: float = 0.8
    retrain_lr_factor: float = 0.1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise PruneConfigError(f"guided training method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not 0.0 < self.prune_fraction < 1.0:
            raise PruneConfigError(f"prune_fraction must be in (0, 1), got {self.prune_fraction}")


@dataclass
class TrainingReport:
    """What training did: per-layer densities (of units) before / after, and which rule fired where."""

    method: str
    density_before: dict[str, float] = field(default_factory=dict)
    density_after: dict[str, float] = field(default_factory=dict)
    stopped: list[str] = field(default_factory=list)  # rule 3: reached the floor
    restored: list[str] = field(default_factory=list)  # rule 4: dense weights back

    def to_json(self) -> dict:
        return {"method": self.method, "density_before": self.density_before, "density_after": self.density_after,
                "stopped_at_floor": self.stopped, "restored_dense": self.restored}


class _EpochSlice:
    """The batches ``[start, stop)`` (fractions of one pass) of every pass over ``loader``."""

    def __init__(self, loader: Iterable, start: float, stop: float) -> None:
        self.loader, self.start, self.stop = loader, start, stop
        n = len(loader)  # type: ignore[arg-type]
        self.lo, self.hi = int(round(start * n)), max(int(round(start * n)) + 1, int(round(stop * n)))

    def __len__(self) -> int:
        return self.hi - self.lo

    def __iter__(self):
        for i, batch in enumerate(self.loader):
            if i >= self.hi:
                break
            if i >= self.lo:
                yield batch


class _Units:
    """A layer's prunable units: weights (``n`` <= 1) or 1xN blocks."""

    def __init__(self, n: int) -> None:
        self.n = n

    def kept(self, mask: torch.Tensor) -> int:
        return int(mask.sum()) if self.n <= 1 else int(block_map(mask, self.n).sum())

    def total(self, mask: torch.Tensor) -> int:
        return mask.numel() if self.n <= 1 else block_map(torch.ones_like(mask), self.n).numel()

    def scores(self, t: torch.Tensor) -> torch.Tensor:
        """|t| per unit: flat weights, or block means ``[G, K]``."""
        return t.detach().abs().reshape(-1) if self.n <= 1 else block_scores(t, self.n).float()

    def expand(self, unit_keep: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        if self.n <= 1:
            return unit_keep.reshape(shape)
        return expand_block_mask(unit_keep.reshape(-1, math.prod(shape[1:])), shape, self.n)

    def unit_mask(self, mask: torch.Tensor) -> torch.Tensor:
        return mask.reshape(-1) if self.n <= 1 else block_map(mask, self.n)


def _top_units(score: torch.Tensor, keep: int) -> torch.Tensor:
    """Bool mask (score's shape) of the ``keep`` largest scores."""
    flat = score.reshape(-1)
    out = torch.zeros(flat.numel(), dtype=torch.bool)
    if keep > 0:
        out[torch.topk(flat, min(keep, flat.numel())).indices] = True
    return out.reshape(score.shape)


class _StraightThroughMask(nn.Module):
    """Parametrization ``w -> w * mask`` whose gradient reaches the dense ``w`` unmasked (DNS)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.clone())

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        m = self.mask.to(w.dtype)
        return w * m + (w - w.detach()) * (1 - m)


def _floors(plan: GuidedPlan, names: list[str]) -> dict[str, int]:
    """Rule 3: the fewest units each layer may keep."""
    out = {}
    for gl in plan.layers:
        if gl.name in names:
            out[gl.name] = int(math.ceil(max(gl.bounds.saturation, 1 - plan.max_layer_rate) * gl.elements))
    return out


def _gesl_drop(units: _Units, w: torch.Tensor, grad: torch.Tensor, unit_keep: torch.Tensor, floor_units: int,
               cfg: GuidedTraining) -> torch.Tensor:
    """Units GESL's threshold removes this step (at most down to ``floor_units`` kept, smallest first)."""
    score = units.scores(w).reshape(unit_keep.shape)
    th = units.scores(gesl_threshold(grad, cfg.th0, cfg.f)).reshape(unit_keep.shape)
    drop = unit_keep & (score <= th)
    allowed = int(unit_keep.sum()) - floor_units
    if int(drop.sum()) > max(allowed, 0):
        drop_scores = torch.where(drop, score, torch.full_like(score, float("inf")))
        drop = _top_units(-drop_scores, max(allowed, 0)) & drop
    return drop


def guided_train(model: nn.Module, masks: dict[str, torch.Tensor], plan: GuidedPlan,
                 dense_weights: dict[str, torch.Tensor], loader: Iterable, *, epochs: int = 1, lr: float = 1e-3,
                 settings: GuidedTraining | None = None, progress: bool = True) -> TrainingReport:
    """Train ``model`` in place with GESL / GDNS and GSL rules 3 and 4 (module docstring).

    ``masks`` (bool keep-masks by module name, weight-shaped) is updated in place: layers
    restored by rule 4 are removed from it. ``dense_weights`` are the planned layers' weights
    before pruning. ``loader`` must have a length. Returns the :class:`TrainingReport`.
    """
    cfg = settings or GuidedTraining()
    mods = dict(model.named_modules())
    units = _Units(plan.n if plan.kind == "1xN" else 1)
    learn = [gl.name for gl in plan.layers if gl.bounds.has_potential and gl.name in mods]
    for name in learn:
        masks.setdefault(name, torch.ones_like(mods[name].weight, dtype=torch.bool))
    floors = _floors(plan, learn)
    report = TrainingReport(cfg.method, {n: units.kept(masks[n]) / units.total(masks[n]) for n in learn})
    active = [n for n in learn if units.kept(masks[n]) > floors[n]]
    report.stopped = [n for n in learn if n not in active]
    phase1 = _EpochSlice(loader, 0.0, cfg.prune_fraction)
    phase2 = _EpochSlice(loader, cfg.prune_fraction, 1.0)
    if cfg.method == "gesl":
        _run_gesl(model, masks, learn, active, floors, units, phase1, epochs, lr, cfg, progress, report)
        dense_back = {n: dense_weights[n] for n in learn}
    else:
        dense_back = _run_gdns(model, masks, learn, active, floors, units, phase1, epochs, lr, cfg, progress, report)
    report.restored = restore_unprofitable(model, masks, plan, dense_back, units.n)
    finetune(model, masks, phase2, epochs=epochs, lr=lr * cfg.retrain_lr_factor, progress=progress)
    report.density_after = {n: (units.kept(masks[n]) / units.total(masks[n]) if n in masks else 1.0) for n in learn}
    return report


def _run_gesl(model, masks, learn, active, floors, units, batches, epochs, lr, cfg, progress, report) -> None:
    mods = dict(model.named_modules())

    def l1() -> torch.Tensor:
        return cfg.l1 * sum(mods[n].weight.abs().sum() for n in learn)

    def threshold() -> None:
        with torch.no_grad():
            for n in list(active):
                w = mods[n].weight
                if w.grad is None:
                    continue
                unit_keep = units.unit_mask(masks[n]).clone()
                drop = _gesl_drop(units, w, w.grad, unit_keep, floors[n], cfg)
                if drop.any():
                    # in place: the mask hooks of finetune hold these very tensors
                    masks[n].logical_and_(units.expand(unit_keep & ~drop, tuple(w.shape)))
                if int((unit_keep & ~drop).sum()) <= floors[n]:
                    active.remove(n)
                    report.stopped.append(n)

    finetune(model, masks, batches, epochs=epochs, lr=lr, progress=progress, regularizer=l1, after_step=threshold)


def _run_gdns(model, masks, learn, active, floors, units, batches, epochs, lr, cfg, progress, report):
    """Dynamic surgery; returns the dense shadow weights (rule 4 restores those)."""
    mods = dict(model.named_modules())
    keep_count = {n: units.kept(masks[n]) for n in learn}
    for n in learn:
        parametrize.register_parametrization(mods[n], "weight", _StraightThroughMask(masks.pop(n)))

    def surgery() -> None:
        with torch.no_grad():
            for n in learn:
                par = mods[n].parametrizations.weight
                w, mask = par.original, par[0].mask
                if n in active and w.grad is not None:
                    unit_keep = units.unit_mask(mask.bool())
                    drop = _gesl_drop(units, w, w.grad, unit_keep, floors[n], cfg)
                    keep_count[n] -= int(drop.sum())
                    if keep_count[n] <= floors[n]:
                        active.remove(n)
                        report.stopped.append(n)
                score = units.scores(w)
                mask.copy_(units.expand(_top_units(score, keep_count[n]), tuple(w.shape)))

    try:
        finetune(model, masks, batches, epochs=epochs, lr=lr, progress=progress, after_step=surgery)
    finally:
        shadows = {}
        for n in learn:
            par = mods[n].parametrizations.weight
            shadows[n] = par.original.detach().clone()
            masks[n] = par[0].mask.bool().clone()
            parametrize.remove_parametrizations(mods[n], "weight", leave_parametrized=False)
            with torch.no_grad():
                mods[n].weight.mul_(masks[n].to(mods[n].weight.dtype))
    return shadows


def restore_unprofitable(model: nn.Module, masks: dict[str, torch.Tensor], plan: GuidedPlan,
                         dense_weights: dict[str, torch.Tensor], n: int = 1) -> list[str]:
    """GSL rule 4: layers whose unit density is at or above their breakeven get ``dense_weights`` back.

    Their masks are removed from ``masks``; returns their names.
    """
    units = _Units(n)
    mods = dict(model.named_modules())
    restored = []
    for gl in plan.layers:
        if gl.name not in masks or gl.name not in dense_weights:
            continue
        density = units.kept(masks[gl.name]) / units.total(masks[gl.name])
        if density >= gl.bounds.breakeven:
            with torch.no_grad():
                mods[gl.name].weight.copy_(dense_weights[gl.name])
            del masks[gl.name]
            restored.append(gl.name)
    return restored
