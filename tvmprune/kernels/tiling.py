"""Tile-size choices of the default schedules (register blocking of output pixels / rows)."""

from __future__ import annotations

from typing import Any


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


def parallel_chunks(channels: int, batch: int, out_h: int, rows: Any, cores: int) -> int:
    """How many chunks of the channel (or block-row) loop join the parallel loop of a spatial
    tile schedule, so that ``batch x out_h/rows x chunks`` gives about 4 tasks per core; 1 when
    ``rows`` is sampled (tuning), whose parallel extent is unknown here."""
    if not isinstance(rows, int):
        return 1
    n_par = batch * (out_h // rows)
    return pick_tile(channels, max(1, -(-4 * cores // n_par)))
