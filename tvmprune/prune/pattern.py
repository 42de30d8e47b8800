"""Pruning pattern strings: ``dense``, ``unstructured@0.8``, ``1x8@0.8``, ``filter@0.5``.

The same strings are used by every CLI command (``prune``, ``compile --prune``, ``tune``,
``compare``).  A pattern may carry options after a colon-free suffix:
``1x8@0.8`` (1xN blocks, N=8, 80% of blocks removed), ``1x8@0.8+norearrange`` (no filter
rearrangement), ``unstructured@0.9+global`` (one global magnitude threshold).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import PruneConfigError

BLOCK_SIZES: tuple[int, ...] = (2, 4, 8, 16, 32)
KINDS: tuple[str, ...] = ("dense", "unstructured", "1xN", "filter")


@dataclass(frozen=True)
class PrunePattern:
    """A parsed pruning request.

    Attributes:
        kind: ``dense``, ``unstructured``, ``1xN`` or ``filter``.
        rate: fraction of weights / blocks / filters removed, in [0, 1).
        n: block height (output channels per block) for ``1xN``; 1 otherwise.
        rearrange: permute filters by L1 before 1xN pruning (Lin et al. 2021).
        global_: rank weights / blocks across all layers instead of per layer.
    """

    kind: str
    rate: float = 0.0
    n: int = 1
    rearrange: bool = True
    global_: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise PruneConfigError(f"unknown pruning pattern kind {self.kind!r}; known: {', '.join(KINDS)}")
        if not (0.0 <= self.rate < 1.0):
            raise PruneConfigError(f"pruning rate must be in [0, 1), got {self.rate}")
        if self.kind == "1xN" and self.n not in BLOCK_SIZES:
            raise PruneConfigError(f"block size N must be one of {list(BLOCK_SIZES)}, got {self.n}")

    @property
    def label(self) -> str:
        """Canonical string, e.g. ``1x8@0.8``; parse(label) == self."""
        if self.kind == "dense":
            return "dense"
        base = f"1x{self.n}" if self.kind == "1xN" else self.kind
        s = f"{base}@{self.rate:g}"
        if self.kind == "1xN" and not self.rearrange:
            s += "+norearrange"
        if self.global_:
            s += "+global"
        return s

    def __str__(self) -> str:
        return self.label


_RE = re.compile(r"^(dense|unstructured|filter|1x(\d+))(?:@([0-9.]+))?((?:\+[a-z]+)*)$")


def parse_pattern(text: str) -> PrunePattern:
    """Parse a pattern string such as ``1x8@0.8`` or ``unstructured@0.9+global``.

    Raises:
        PruneConfigError: with the accepted syntax, for anything else.
    """
    s = str(text).strip().lower().replace(" ", "")
    m = _RE.match(s)
    if not m:
        raise PruneConfigError(
            f"cannot parse pruning pattern {text!r}; use dense, unstructured@RATE, 1xN@RATE "
            f"(N in {list(BLOCK_SIZES)}) or filter@RATE, e.g. 1x8@0.8, optionally +norearrange / +global"
        )
    head, n, rate, opts = m.group(1), m.group(2), m.group(3), m.group(4)
    flags = [o for o in opts.split("+") if o]
    for f in flags:
        if f not in ("norearrange", "global"):
            raise PruneConfigError(f"unknown pattern option +{f} in {text!r}; known: +norearrange, +global")
    if head == "dense":
        if rate is not None and float(rate) != 0.0:
            raise PruneConfigError(f"'dense' takes no rate (got {text!r})")
        return PrunePattern("dense")
    if rate is None:
        raise PruneConfigError(f"pattern {text!r} needs a rate, e.g. {head}@0.8")
    try:
        r = float(rate)
    except ValueError:
        raise PruneConfigError(f"bad rate {rate!r} in pattern {text!r}") from None
    kind = "1xN" if n is not None else head
    return PrunePattern(
        kind=kind,
        rate=r,
        n=int(n) if n is not None else 1,
        rearrange="norearrange" not in flags,
        global_="global" in flags,
    )


def parse_patterns(text: str) -> list[PrunePattern]:
    """Parse a comma-separated list, e.g. ``dense,1x8@0.8,filter@0.5``."""
    items = [p for p in str(text).split(",") if p.strip()]
    if not items:
        raise PruneConfigError("empty pattern list; give e.g. dense,1x8@0.8")
    return [parse_pattern(p) for p in items]
