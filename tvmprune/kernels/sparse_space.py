"""Knobs of the sparse kernels' tuning spaces, drawn so that the traced schedule is replay-safe.

Every knob of a sparse schedule is either a concrete ``int`` (the default schedule, chosen from
the target) or a sampled random variable (the tuning space). The loop structure never depends
on a sampled value -- a sampled value only flows into a ``split`` factor or an annotation -- so
MetaSchedule can replay a design-space trace with other decisions:

- tile sizes along output pixels are :func:`factor` knobs: any value in ``1..limit``, not only
  divisors (a non-divisor pads the last tile with a predicate), so a 2-D pixel tile has
  ``rows x cols`` choices;
- loop order and parallel granularity of the (block) row loop come from one 3-way perfect tile
  of that loop, :func:`row_split`: ``[parallel chunks, rows outside the pixel tile loop, rows
  inside it]`` -- all rows inside is "pixel tile outer", all outside is "row outer";
- unrolling is two categorical annotations on the tile loop (:func:`unroll`).
"""

from __future__ import annotations

from typing import Any

UNROLL_STEPS = (0, 16, 64, 512)


def factor(sch: Any, value: int | None, limit: int) -> Any:
    """A split factor in ``1..limit``: ``value`` itself for the default schedule (``value`` not
    None), else a uniformly sampled categorical."""
    if value is not None:
        return int(value)
    limit = max(1, int(limit))
    return sch.sample_categorical(list(range(1, limit + 1)), [1.0 / limit] * limit)


def row_split(sch: Any, loop: Any, value: tuple[int, int, int] | None) -> list:
    """Split the (block) row ``loop`` into ``[parallel, outer, inner]`` (see module doc);
    ``value`` for the default, else a sampled perfect tile."""
    if value is not None:
        return sch.split(loop, list(value))
    return sch.split(loop, sch.sample_perfect_tile(loop, n=3))


def unroll(sch: Any, loop: Any, value: tuple[int, int] | None) -> None:
    """Annotate ``loop`` with ``pragma_auto_unroll_max_step`` / ``pragma_unroll_explicit``:
    ``value = (max_step, explicit)`` for the default, else two sampled categoricals."""
    if value is None:
        step = sch.sample_categorical(list(UNROLL_STEPS), [1.0 / len(UNROLL_STEPS)] * len(UNROLL_STEPS))
        explicit = sch.sample_categorical([0, 1], [0.5, 0.5])
    else:
        step, explicit = value
    sch.annotate(loop, "pragma_auto_unroll_max_step", step)
    sch.annotate(loop, "pragma_unroll_explicit", explicit)
