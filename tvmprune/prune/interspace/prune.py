"""Interspace pruning: coefficient masks by magnitude, layer-wise or global, optionally 1xN blocks.

:func:`interspace_prune` converts every eligible KxK conv (see
:func:`.convert.interspace_targets`) to :class:`.module.InterspaceConv2d` with the spatial
basis, then prunes coefficients:

* score of coefficient ``c[o, i, j]`` = ``|c[o, i, j]| * ||B[j]||_F`` (its contribution to the
  filter's size; exactly ``|w|`` for the spatial basis, so at conversion time the masks are
  the unstructured-magnitude masks of the same weights);
* layer-wise: ``round(rate * numel)`` lowest scores of each layer go; ``global_``: one ranking
  over all layers, at most ``max_layer_rate`` of a layer (as ``unstructured@RATE+global``);
* ``block_n`` = N > 1: blocks of N consecutive output channels at one (input channel,
  basis filter) index of the ``[Cout, Cin*K²]`` coefficient matrix are scored by their mean
  score and removed whole (as ``1xN@RATE``), so the sparse 1x1 part of the compiled form
  runs on the 1xN kernels.

1x1 convs and Linear layers have a one-element basis, for which IP and SP coincide: they
are pruned by magnitude on their weights in the same ranking (so ``interspace@R`` and
``unstructured@R`` remove the same number of parameters); their keep-masks are returned in
``PruneResult.masks`` for the usual mask hooks during fine-tuning. The first layer, grouped
and depthwise convs stay dense, as with unstructured pruning.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ...errors import PruneConfigError
from ..bits import encode_bits
from ..block import block_mask, global_block_masks
from ..criteria import check_block_size
from ..graph import DependencyGraph, build_graph
from ..masks import apply_masks
from ..result import LayerReport, PruneResult
from ..selection import MAX_LAYER_RATE, check_rate
from ..unstructured import global_magnitude_masks, magnitude_mask
from .convert import interspace_layers, interspace_targets, to_interspace
from .module import InterspaceConv2d

__all__ = ["interspace_prune", "prune_in_place", "InterspacePruneResult", "interspace_label", "coefficient_scores"]

KIND = "interspace"


def interspace_label(rate: float, global_: bool = False, block_n: int = 1) -> str:
    """Canonical pattern string: ``interspace@0.9``, ``interspace@0.9+1x4``, ``...+global``."""
    s = f"{KIND}@{rate:g}"
    if block_n > 1:
        s += f"+1x{block_n}"
    if global_:
        s += "+global"
    return s


class InterspacePruneResult(PruneResult):
    """A :class:`PruneResult` whose sparsity counts coefficients for interspace layers."""

    @property
    def sparsity(self) -> float:
        """Fraction of zero coefficients (interspace layers) and weights (1x1 / linear) over pruned layers."""
        mods = dict(self.model.named_modules())
        tot = nz = 0
        for r in self.layers:
            if r.skipped_reason is not None or r.name not in mods:
                continue
            m = mods[r.name]
            t = m.masked_coefficients() if isinstance(m, InterspaceConv2d) else m.weight
            tot += t.numel()
            nz += int((t != 0).sum())
        return 1.0 - nz / tot if tot else 0.0


def coefficient_scores(m: InterspaceConv2d) -> torch.Tensor:
    """``|c[o, i, j]| * ||B[j]||_F``, coefficients' shape."""
    norms = m.basis.detach().reshape(m.basis_size, -1).norm(dim=1)
    return m.coefficients.detach().abs() * norms


def _check(model: nn.Module, rate: float, block_n: int, example_input) -> tuple[float, int]:
    if not isinstance(model, nn.Module):
        raise PruneConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    rate = check_rate(rate, "interspace pruning rate")
    if block_n != 1:
        block_n = check_block_size(block_n, "interspace block size N (+1xN)")
    if example_input is not None and not isinstance(example_input, torch.Tensor):
        raise PruneConfigError(f"example_input must be a torch.Tensor or None, got {type(example_input).__name__}")
    return rate, block_n


def _keep_masks(scores: dict[str, torch.Tensor], rate: float, global_: bool, block_n: int,
                max_layer_rate: float) -> dict[str, torch.Tensor]:
    """Keep-masks (scores' shapes) from the ranking the options ask for."""
    if block_n == 1:
        if global_:
            return global_magnitude_masks(scores, rate, max_layer_rate)
        return {n: magnitude_mask(s, rate, n) for n, s in scores.items()}
    flat = {n: s.reshape(s.shape[0], -1) for n, s in scores.items()}  # [Cout, Cin*K²] / [Cout, K]
    if global_:
        kept = global_block_masks(flat, block_n, rate, max_layer_rate)
    else:
        kept = {n: block_mask(s, block_n, rate, n) for n, s in flat.items()}
    return {n: kept[n].reshape(scores[n].shape) for n in scores}


def interspace_prune(model: nn.Module, rate: float, example_input: torch.Tensor | None = None, *,
                     global_: bool = False, block_n: int = 1,
                     max_layer_rate: float = MAX_LAYER_RATE) -> InterspacePruneResult:
    """Interspace-prune a copy of ``model`` (the input is not modified).

    Args:
        model: a CNN with at least one eligible KxK conv (K > 1).
        rate: fraction of coefficients (and 1x1 / linear weights) removed, in [0, 1).
        example_input: traces shapes (default ``1xCx224x224`` zeros).
        global_: one magnitude ranking over all layers (each layer capped at ``max_layer_rate``).
        block_n: 1 (unstructured) or N in (2, 4, 8, 16, 32): 1xN blocks along output channels.

    Returns:
        An :class:`InterspacePruneResult` (model in eval mode, KxK convs as ``InterspaceConv2d``).

    Raises:
        PruneConfigError: rate outside [0, 1), bad N, or a model with no eligible KxK conv.
        TraceError: the model cannot be traced with torch.fx.
    """
    rate, block_n = _check(model, rate, block_n, example_input)
    m = copy.deepcopy(model).eval()
    graph = build_graph(m, example_input)
    result = prune_in_place(m, graph, rate, global_, block_n, max_layer_rate)
    result.graph = graph
    return result


def prune_in_place(m: nn.Module, graph: DependencyGraph, rate: float, global_: bool, block_n: int,
                   max_layer_rate: float) -> InterspacePruneResult:
    """Convert and prune ``m`` itself (a private copy; ``graph`` traced from it); see :func:`interspace_prune`."""
    why = interspace_targets(m, graph)
    ip_names = [n for n, r in why.items() if r is None]
    if not ip_names:
        kinds = sorted({r for r in why.values() if r})
        raise PruneConfigError(
            f"interspace pruning needs a KxK conv (K > 1, groups 1, not the first layer); this model has none "
            f"({', '.join(kinds) or 'no conv / linear layers'}): use unstructured@RATE instead")
    mods = dict(m.named_modules())
    sp_names = [n for n, r in why.items() if r in ("1x1 conv", "not a conv")
                and n not in graph.input_consumers and getattr(mods[n], "groups", 1) == 1]
    shapes = {n: tuple(mods[n].weight.shape) for n in graph.layers}
    to_interspace(m, ip_names)
    ip = interspace_layers(m)
    mods = dict(m.named_modules())
    scores = {n: coefficient_scores(ip[n]) for n in ip_names}
    scores.update({n: mods[n].weight.detach().abs() for n in sp_names})
    keep = _keep_masks(scores, rate, global_, block_n, max_layer_rate)
    for n in ip_names:
        ip[n].set_mask(keep[n])
    sp_masks = {n: keep[n] for n in sp_names}
    apply_masks(m, sp_masks)
    label = interspace_label(rate, global_, block_n)
    config = {
        "pattern": label, "kind": KIND, "n": block_n, "rate": rate, "rearrange": False, "global": global_,
        "max_layer_rate": max_layer_rate, "coupled_groups": [g.producers for g in graph.coupled_groups()],
        "interspace": {n: {"shape": list(ip[n].mask.shape), "kernel": list(ip[n].kernel_size),
                           "mask": encode_bits(ip[n].mask)} for n in ip_names},
        "masks": {n: {"shape": list(shapes[n]), "mask": encode_bits(k)} for n, k in sp_masks.items()},
    }
    layers = []
    for n in graph.layers:
        mod = mods[n]
        kind = "linear" if isinstance(mod, nn.Linear) else "conv"
        t = mod.masked_coefficients() if n in ip else mod.weight
        dens = float((t != 0).sum()) / t.numel()
        skipped = None if (n in ip or n in sp_names) else why[n]
        layers.append(LayerReport(n, kind, shapes[n], dens, label if skipped is None else "dense", skipped))
    return InterspacePruneResult(m.eval(), layers, config, sp_masks)
