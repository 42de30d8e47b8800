"""What pruning returns: :class:`PruneResult` with one :class:`LayerReport` per conv / linear
layer, and the tables printed from them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping

import torch
from torch import nn

__all__ = ["LayerReport", "PruneResult", "layer_report", "layer_reports", "format_layer_table", "format_summary"]


@dataclass
class LayerReport:
    """One conv / linear layer after pruning.

    Attributes:
        name: module name.
        kind: ``conv`` or ``linear``.
        shape: weight shape after pruning (``[Cout, Cin, KH, KW]`` / ``[Cout, Cin]``).
        density: nonzero fraction for masked patterns; kept fraction of the original weight
            elements for patterns that shrink the layer.
        pattern: the pattern label the layer was pruned with, or ``dense``.
        skipped_reason: why the layer was left dense (None when it was pruned).
    """

    name: str
    kind: str  # 'conv' | 'linear'
    shape: tuple
    density: float
    pattern: str
    skipped_reason: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


@dataclass
class PruneResult:
    """A pruned model (eval mode), its per-layer report, its JSON config and keep-masks.

    ``config`` is what ``pruning.json`` stores (common entries plus the method's own);
    ``masks`` maps module names to bool keep-masks shaped like their weights (masked
    patterns; empty otherwise), e.g. for :func:`~tvmprune.prune.finetune`.
    """

    model: nn.Module
    layers: list[LayerReport]
    config: dict
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    graph: object | None = None  # DependencyGraph of the model before pruning

    @property
    def sparsity(self) -> float:
        """Fraction of zero weights over the pruned (non-skipped) conv / linear layers."""
        mods = dict(self.model.named_modules())
        tot = nz = 0
        for r in self.layers:
            if r.skipped_reason is None and r.name in mods:
                w = mods[r.name].weight
                tot += w.numel()
                nz += int((w != 0).sum())
        return 1.0 - nz / tot if tot else 0.0


def layer_report(name: str, module: nn.Module, pattern: str, skipped_reason: str | None = None,
                 density: float | None = None) -> LayerReport:
    """Report of one layer; ``density`` defaults to the nonzero fraction of its weight.

    ``pattern`` is used for pruned layers; skipped ones report ``dense``.
    """
    w = module.weight
    kind = "linear" if isinstance(module, nn.Linear) else "conv"
    if density is None:
        density = float((w != 0).sum()) / w.numel()
    label = pattern if skipped_reason is None else "dense"
    return LayerReport(name, kind, tuple(w.shape), density, label, skipped_reason)


def layer_reports(model: nn.Module, names: Iterable[str], pattern: str, skipped: Mapping[str, str | None],
                  density: Mapping[str, float] | None = None) -> list[LayerReport]:
    """:func:`layer_report` for each of ``names`` (in order), skip reasons from ``skipped``."""
    mods = dict(model.named_modules())
    return [layer_report(n, mods[n], pattern, skipped.get(n), (density or {}).get(n)) for n in names]


def format_layer_table(layers: list[LayerReport]) -> str:
    """Per-layer table: name, kind, shape, density, pattern (and why a layer was skipped)."""
    rows = [("layer", "kind", "shape", "density", "pattern")]
    for r in layers:
        pat = r.pattern if r.skipped_reason is None else f"{r.pattern} ({r.skipped_reason})"
        rows.append((r.name, r.kind, "x".join(map(str, r.shape)), f"{r.density:.3f}", pat))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for j, row in enumerate(rows):
        lines.append("  ".join(c.ljust(widths[i]) if i != 3 else c.rjust(widths[i]) for i, c in enumerate(row[:4]))
                     + "  " + row[4])
        if j == 0:
            lines.append("-" * (sum(widths) + 8 + max(len(r[4]) for r in rows)))
    return "\n".join(lines)


def format_summary(result: PruneResult, original: nn.Module | None = None) -> str:
    """One line: layers pruned, nonzero weights, parameters (vs ``original``), sparsity."""
    from .registry import get_method

    mods = dict(result.model.named_modules())
    present = [r for r in result.layers if r.name in mods]  # gator may remove whole layers
    tot = sum(mods[r.name].weight.numel() for r in present)
    nz = sum(int((mods[r.name].weight != 0).sum()) for r in present)
    pruned = [r for r in result.layers if r.skipped_reason is None]
    s = (f"pattern {result.config['pattern']}: {len(pruned)}/{len(result.layers)} layers pruned, "
         f"nonzero conv/linear weights {nz:,}/{tot:,}")
    if original is not None:
        p0 = sum(p.numel() for p in original.parameters())
        p1 = sum(p.numel() for p in result.model.parameters())
        s += f"; parameters {p1:,} (was {p0:,})"
    if get_method(result.config["kind"]).sparse:
        s += f"; sparsity of pruned layers {result.sparsity:.3f}"
    ncg = len(result.config.get("coupled_groups", []))
    s += f"; {ncg} coupled channel groups"
    return s
