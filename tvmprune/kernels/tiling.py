"""Tile-size choices of the default schedules (register blocking of output pixels / rows)."""

from __future__ import annotations


def pick_tile(extent: int, limit: int) -> int:
    """Largest divisor of ``extent`` that is <= ``limit`` (at least 1)."""
    limit = max(1, min(limit, extent))
    for t in range(limit, 0, -1):
        if extent % t == 0:
            return t
    return 1


def pick_unrolled_tile(extent: int, limit: int) -> int:
    """Largest divisor of ``extent`` in ``[3, limit]``; without one, ``min(limit, extent)``
    (a non-divisor: the split pads the last tile). Used by the dense-style kernels, whose
    unrolled tile of fewer than 3 pixels does not hide the FMA latency."""
    for t in range(min(limit, extent), 0, -1):
        if extent % t == 0 and t >= 3:
            return t
    return min(limit, extent)
