"""``1xN@RATE``: 1xN block pruning (Lin et al. 2021).

A weight ``[Cout, Cin, KH, KW]`` (Linear: ``[Cout, Cin]``) is viewed as a matrix
``[Cout, K]`` with ``K = Cin*KH*KW``.  A *block* is N consecutive output channels at one
column ``(cin, kh, kw)``: ``W[g*N:(g+1)*N, k]``.  Blocks are scored by their L1 norm
(:class:`~.criteria.BlockL1`) and the lowest-scoring ones are zeroed.

Choices (documented here, relied on by the tests):

* ``rate`` is the fraction of *blocks* removed: ``round(rate * n_blocks)`` per layer, so the
  achieved block sparsity equals the request within one block.
* ``Cout`` not divisible by N: the tail rows form one shorter block row.  All blocks are
  scored by their mean-per-row L1 (L1 / rows), so a tail block competes fairly; it counts
  as one block.  For layers whose ``Cout`` is a multiple of N, the weight sparsity
  therefore equals the block sparsity exactly.
* ``+global`` ranks all blocks of all prunable layers by mean |w| per row of the block and
  removes the lowest ``round(rate * total_blocks)``, but never more than
  ``max_layer_rate`` (default :data:`MAX_LAYER_RATE` = 0.95) of one layer's blocks.
* by default the filters of each channel group are first permuted by descending L1
  (:mod:`.rearrange`; the model function is unchanged); ``+norearrange`` skips that.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from .bits import decode_bits, encode_bits
from .context import PruneContext
from .criteria import BLOCK_SIZES, BlockL1, check_block_size, expand_block_mask
from .graph import DependencyGraph
from .layer_policy import sparse_targets
from .masks import apply_masks
from .pattern import Option, PrunePattern
from .rearrange import rearrange_filters
from .registry import GLOBAL, PruningMethod
from .result import PruneResult, layer_reports
from .selection import MAX_LAYER_RATE, check_rate, select_lowest, weight_keep_masks

__all__ = [
    "MAX_LAYER_RATE", "check_rate", "check_block_size", "block_scores", "expand_block_mask", "block_mask",
    "global_block_masks", "select_lowest", "block_map", "is_block_structured", "encode_bits", "decode_bits",
    "BlockMethod",
]


def block_scores(weight: torch.Tensor, n: int, name: str = "") -> torch.Tensor:
    """Mean-per-row L1 of each block: ``[ceil(Cout/N), K]`` (float64)."""
    n = check_block_size(n, f"block size N for layer {name}" if name else "block size N")
    return BlockL1(n).scores(weight, name)


def block_mask(weight: torch.Tensor, n: int, rate: float, name: str = "") -> torch.Tensor:
    """Weight-shaped boolean keep-mask removing the ``round(rate * blocks)`` lowest-L1 1xN blocks."""
    check_rate(rate, f"pruning rate for layer {name}" if name else "pruning rate")
    n = check_block_size(n, f"block size N for layer {name}" if name else "block size N")
    return weight_keep_masks(BlockL1(n), {name: weight}, rate)[name]


def global_block_masks(weights: dict[str, torch.Tensor], n: int, rate: float,
                       max_layer_rate: float = MAX_LAYER_RATE) -> dict[str, torch.Tensor]:
    """Global 1xN pruning: one ranking over all layers' blocks, at most ``max_layer_rate`` per layer."""
    return weight_keep_masks(BlockL1(n), weights, rate, global_=True, max_layer_rate=max_layer_rate)


def block_map(weight_or_mask: torch.Tensor, n: int) -> torch.Tensor:
    """``[G, K]`` bool: which blocks have any nonzero entry."""
    w = weight_or_mask.detach().reshape(weight_or_mask.shape[0], -1) != 0
    cout, k = w.shape
    g = -(-cout // n)
    pad = g * n - cout
    if pad:
        w = torch.cat([w, w.new_zeros(pad, k)])
    return w.reshape(g, n, k).any(dim=1)


def is_block_structured(weight: torch.Tensor, mask: torch.Tensor, n: int) -> bool:
    """Every 1xN block of ``mask`` is all-kept or all-removed, and ``weight`` is zero where removed."""
    m = mask.reshape(mask.shape[0], -1).bool()
    bm = block_map(m, n)
    if not torch.equal(expand_block_mask(bm, tuple(m.shape), n), m):
        return False
    return bool((weight.detach().reshape(m.shape)[~m] == 0).all())


def block_mask_from_map(encoded: str, shape: tuple[int, ...], n: int) -> torch.Tensor:
    """Weight-shaped keep-mask from an :func:`encode_bits` block map (as in ``pruning.json``)."""
    k = 1
    for d in shape[1:]:
        k *= d
    bm = decode_bits(encoded, (-(-shape[0] // n), k))
    return expand_block_mask(bm, (shape[0], k), n).reshape(shape)


class BlockMethod(PruningMethod):
    kind = "1xN"
    head = r"1x(\d+)"
    syntax = f"1xN@RATE (N in {list(BLOCK_SIZES)})"
    options = (Option("norearrange", "do not permute filters by L1 first"), GLOBAL)
    uses_n = True
    aliases = ("1xn", "block", "1x")

    def n_from_head(self, head: re.Match) -> int:
        return int(head.group(1))

    def head_label(self, pattern: PrunePattern) -> str:
        return f"1x{pattern.n}"

    def validate(self, pattern: PrunePattern) -> None:
        super().validate(pattern)
        check_block_size(pattern.n, "block size N")

    def apply(self, model: nn.Module, pattern: PrunePattern, graph: DependencyGraph,
              ctx: PruneContext) -> PruneResult:
        config: dict = {"rearrange": pattern.rearrange}
        if pattern.rearrange:
            perms = rearrange_filters(model, graph)
            config["permutations"] = {graph.groups[g].name: p.tolist() for g, p in perms.items()}
        targets, skipped = sparse_targets(model, graph)
        mods = dict(model.named_modules())
        weights = {n: mods[n].weight for n in targets}
        masks = weight_keep_masks(BlockL1(pattern.n), weights, pattern.rate, global_=pattern.global_,
                                  max_layer_rate=ctx.max_layer_rate, layer_rates=ctx.layer_rates)
        apply_masks(model, masks)
        config["masks"] = {n: {"shape": list(k.shape), "blockmap": encode_bits(block_map(k, pattern.n))}
                           for n, k in masks.items()}
        return PruneResult(model, layer_reports(model, graph.layers, pattern.label, skipped), config, masks)
