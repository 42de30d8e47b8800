"""How a run's trials are split between its tasks: by estimated gain, and given back when a space runs dry.

A task's *estimated gain* is what tuning it could save per inference::

    gain = weight x default time x (1 - 1 / points)

``points`` is the number of distinct schedules found by sampling the task's space
(:func:`.space_points.count_points`): a space of one point has nothing to gain, one of two
points little, a large one most of its cost. Trials are split in proportion to gain, every
task with more than one point getting at least ``minimum``; a task never gets more trials than
its space has points (when sampling found fewer points than samples, the count is the space).

While tasks run (most expensive first), one that ends with fewer records than it was allotted
because its space is exhausted gives the rest back: :func:`give_back` spreads them over the
tasks still to run, in proportion to their gain. The computation only reads the task list, the
stored default times and point counts and the record counts, so a resumed run allots the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class TaskCost:
    """What the allotment knows about one task."""

    key: str
    weight: int
    default_s: float | None  # None: not timed (counted as the mean of the others)
    points: int  # distinct points sampled from its space (>= 1)
    space_complete: bool  # sampling saw every point (fewer distinct points than samples)


def estimated_gain(c: TaskCost, fallback_s: float) -> float:
    """Seconds per inference that tuning the task could save (see the module docstring)."""
    return c.weight * (c.default_s or fallback_s) * (1.0 - 1.0 / max(1, c.points))


def _cap(c: TaskCost) -> int | None:
    return c.points if c.space_complete else None


def _fallback(costs: list[TaskCost]) -> float:
    timed = [c.default_s for c in costs if c.default_s]
    return sum(timed) / len(timed) if timed else 1e-3


def _fill(out: dict[str, int], left: int, costs: list[TaskCost], gain: dict[str, float]) -> dict[str, int]:
    """Hand ``left`` more trials to ``costs`` in proportion to gain, never beyond a task's cap."""

    def room(c: TaskCost) -> bool:
        cap = _cap(c)
        return gain[c.key] > 0 and (cap is None or out[c.key] < cap)

    open_ = [c for c in costs if room(c)]
    while left > 0 and open_:
        g = sum(gain[c.key] for c in open_)
        handed = 0
        for c in open_:
            share = int(math.floor(left * gain[c.key] / g))
            cap = _cap(c)
            if cap is not None:
                share = min(share, cap - out[c.key])
            out[c.key] += share
            handed += share
        if handed == 0:  # rounding left a remainder: one more trial to the largest gains
            for c in sorted(open_, key=lambda c: -gain[c.key])[:left]:
                out[c.key] += 1
                handed += 1
        left -= handed
        open_ = [c for c in open_ if room(c)]
    return out


def allot(total: int, costs: list[TaskCost], minimum: int = 4) -> dict[str, int]:
    """Split ``total`` trials by estimated gain (at least ``minimum`` per task with a choice, at most
    its number of points); what a capped task cannot use goes to the uncapped ones."""
    if not costs:
        return {}
    fb = _fallback(costs)
    gain = {c.key: estimated_gain(c, fb) for c in costs}
    out = {c.key: 1 if c.points <= 1 else min(minimum, _cap(c) or minimum) for c in costs}
    return _fill(out, total - sum(out.values()), costs, gain)


def give_back(alloc: dict[str, int], spare: int, later: list[TaskCost]) -> dict[str, int]:
    """``alloc`` with ``spare`` trials (of an exhausted task) spread over the ``later`` tasks by gain."""
    if spare <= 0 or not later:
        return dict(alloc)
    fb = _fallback(later)
    return _fill(dict(alloc), spare, later, {c.key: estimated_gain(c, fb) for c in later})
