"""1xN block pruning (Lin et al. 2021).

A weight ``[Cout, Cin, KH, KW]`` (Linear: ``[Cout, Cin]``) is viewed as a matrix
``[Cout, K]`` with ``K = Cin*KH*KW``.  A *block* is N consecutive output channels at one
column ``(cin, kh, kw)``: ``W[g*N:(g+1)*N, k]``.  Blocks are scored by their L1 norm and
the lowest-scoring ones are zeroed.

Choices (documented here, relied on by the tests):

* ``rate`` is the fraction of *blocks* removed: ``round(rate * n_blocks)`` per layer, so the
  achieved block sparsity equals the request within one block.
* ``Cout`` not divisible by N: the tail rows form one shorter block row.  All blocks are
  scored by their mean-per-row L1 (L1 / rows), so a tail block competes fairly; it counts
  as one block.  For layers whose ``Cout`` is a multiple of N, the weight sparsity
  therefore equals the block sparsity exactly.
* global mode ranks all blocks of all prunable layers by mean |w| per element of the
  block (L1 / (rows)) and removes the lowest ``round(rate * total_blocks)``, but never more
  than ``max_layer_rate`` (default :data:`MAX_LAYER_RATE` = 0.95) of one layer's blocks.
"""

from __future__ import annotations

import base64
import zlib

import numpy as np
import torch

from ..errors import PruneConfigError
from .pattern import BLOCK_SIZES

__all__ = [
    "MAX_LAYER_RATE",
    "check_rate",
    "check_block_size",
    "block_scores",
    "expand_block_mask",
    "block_mask",
    "global_block_masks",
    "select_lowest",
    "block_map",
    "is_block_structured",
    "encode_bits",
    "decode_bits",
]

MAX_LAYER_RATE = 0.95


def check_rate(rate, what: str = "rate") -> float:
    try:
        r = float(rate)
    except (TypeError, ValueError):
        raise PruneConfigError(f"{what} must be a number in [0, 1), got {rate!r}") from None
    if not (0.0 <= r < 1.0) or r != r:
        raise PruneConfigError(f"{what} must be in [0, 1), got {rate!r}")
    return r


def check_block_size(n, what: str = "block size N") -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or int(n) not in BLOCK_SIZES:
        raise PruneConfigError(f"{what} must be one of {list(BLOCK_SIZES)}, got {n!r}")
    return int(n)


def _as_matrix(weight: torch.Tensor, name: str) -> torch.Tensor:
    if weight.dim() not in (2, 4):
        raise PruneConfigError(
            f"layer {name or '?'}: 1xN pruning needs a 2-D (Linear) or 4-D (Conv2d) weight, got shape {tuple(weight.shape)}"
        )
    return weight.detach().reshape(weight.shape[0], -1)


def block_scores(weight: torch.Tensor, n: int, name: str = "") -> torch.Tensor:
    """Mean-per-row L1 of each block: ``[ceil(Cout/N), K]`` (float64)."""
    n = check_block_size(n, f"block size N for layer {name}" if name else "block size N")
    w = _as_matrix(weight, name)
    cout, k = w.shape
    full = cout // n
    parts = []
    if full:
        parts.append(w[: full * n].abs().reshape(full, n, k).sum(dim=1, dtype=torch.float64) / n)
    if cout % n:
        parts.append(w[full * n:].abs().sum(dim=0, keepdim=True, dtype=torch.float64) / (cout % n))
    return torch.cat(parts)


def expand_block_mask(bmask: torch.Tensor, weight_shape: tuple[int, ...], n: int) -> torch.Tensor:
    """``[G, K]`` block keep-mask -> weight-shaped keep-mask."""
    cout = weight_shape[0]
    full = bmask.repeat_interleave(n, dim=0)[:cout]
    return full.reshape(weight_shape)


def select_lowest(scores: list[torch.Tensor], k: int, caps: list[int]) -> list[torch.Tensor]:
    """Pick the ``k`` lowest scores across all tensors, at most ``caps[i]`` from tensor ``i``.

    Returns a boolean *prune* mask per tensor (True = removed).  Ties are broken by position
    (stable sort), so the result is deterministic.
    """
    sizes = [s.numel() for s in scores]
    if not scores:
        return []
    flat = torch.cat([s.reshape(-1).double().cpu() for s in scores]).numpy()
    lid = np.repeat(np.arange(len(scores)), sizes)
    order = np.argsort(flat, kind="stable")
    lid_sorted = lid[order]
    # rank of each sorted element within its tensor
    by_layer = np.argsort(lid_sorted, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(lid_sorted, minlength=len(scores)))[:-1]])
    rank = np.empty_like(by_layer)
    rank[by_layer] = np.arange(len(by_layer)) - np.repeat(starts, np.bincount(lid_sorted, minlength=len(scores)))
    allowed = rank < np.asarray(caps)[lid_sorted]
    chosen_pos = np.nonzero(allowed)[0][: max(0, int(k))]
    pruned = np.zeros(len(flat), dtype=bool)
    pruned[order[chosen_pos]] = True
    out, pos = [], 0
    for s, n in zip(scores, sizes):
        out.append(torch.from_numpy(pruned[pos:pos + n].copy()).reshape(s.shape))
        pos += n
    return out


def block_mask(weight: torch.Tensor, n: int, rate: float, name: str = "") -> torch.Tensor:
    """Weight-shaped boolean keep-mask removing the ``round(rate * blocks)`` lowest-L1 1xN blocks."""
    where = f" for layer {name}" if name else ""
    rate = check_rate(rate, f"pruning rate{where}")
    scores = block_scores(weight, n, name)
    k = int(round(rate * scores.numel()))
    pruned = select_lowest([scores], k, [scores.numel()])[0]
    return expand_block_mask(~pruned, tuple(weight.shape), n)


def global_block_masks(weights: dict[str, torch.Tensor], n: int, rate: float,
                       max_layer_rate: float = MAX_LAYER_RATE) -> dict[str, torch.Tensor]:
    """Global 1xN pruning: one ranking over all layers' blocks, at most ``max_layer_rate`` per layer."""
    rate = check_rate(rate, "global pruning rate")
    max_layer_rate = check_rate(max_layer_rate, "max_layer_rate")
    names = list(weights)
    scores = [block_scores(weights[nm], n, nm) for nm in names]
    total = sum(s.numel() for s in scores)
    caps = [int(np.floor(max_layer_rate * s.numel())) for s in scores]
    k = min(int(round(rate * total)), sum(caps))
    pruned = select_lowest(scores, k, caps)
    return {nm: expand_block_mask(~p, tuple(weights[nm].shape), n) for nm, p in zip(names, pruned)}


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


def encode_bits(mask: torch.Tensor) -> str:
    """Compact text encoding of a bool tensor (packbits + zlib + base64); shape is kept separately."""
    bits = np.packbits(mask.reshape(-1).cpu().numpy().astype(np.uint8))
    return base64.b64encode(zlib.compress(bits.tobytes(), 9)).decode("ascii")


def decode_bits(text: str, shape) -> torch.Tensor:
    try:
        raw = zlib.decompress(base64.b64decode(text.encode("ascii")))
    except Exception as e:
        raise PruneConfigError(f"corrupt mask encoding in pruning config: {type(e).__name__}: {e}") from None
    n = int(np.prod(shape)) if len(shape) else 1
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))
    if bits.size < n:
        raise PruneConfigError(f"mask encoding too short for shape {list(shape)} in pruning config")
    return torch.from_numpy(bits[:n].astype(bool)).reshape(tuple(shape))
