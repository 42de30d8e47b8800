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


def balanced_chunks(channels: int, n_par: int, cores: int, lanes: int) -> int:
    """Chunks of the channel loop for a parallel loop of ``n_par x chunks`` tasks: the fewest
    with about 4 tasks per core such that the task count is a multiple of ``cores`` (the
    runtime hands each thread one contiguous range of tasks, so 9 tasks on 2 threads run as 5)
    and, where possible, each chunk a whole number of ``lanes`` channels (vector stores of the
    output); falls back to the nearest divisor of ``channels``."""
    want = max(1, -(-4 * cores // max(1, n_par)))
    divisors = [d for d in range(want, channels + 1) if channels % d == 0]
    for ok in (lambda d: (n_par * d) % cores == 0 and (channels // d) % lanes == 0,
               lambda d: (n_par * d) % cores == 0):
        for d in divisors:
            if ok(d) and d <= 4 * want:
                return d
    return pick_tile(channels, want)
