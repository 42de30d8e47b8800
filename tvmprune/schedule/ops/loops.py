"""Loop facts shared by the schedule rules: vector factors, parallel thresholds, and an IR walker
that reads back what a scheduled PrimFunc actually does (parallel / vectorised loop extents)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Below this many output elements (x reduction length) a parallel launch costs more than it saves.
MIN_PARALLEL_WORK = 4096


def vector_factor(extent: int, lanes: int) -> int:
    """The vector length for a loop of ``extent``: the largest power of two <= ``lanes`` that divides it
    (at least 2), the whole loop when it is short (<= ``lanes``), else 0 (not vectorisable without a tail)."""
    f = lanes
    while f >= 2:
        if extent % f == 0:
            return f
        f //= 2
    return extent if 2 <= extent <= lanes else 0


def const_extent(sch: Any, loop: Any) -> int:
    """The constant extent of ``loop`` (-1 when it is symbolic)."""
    ext = sch.get(loop).extent
    return int(ext.value) if hasattr(ext, "value") else -1


@dataclass(frozen=True)
class LoopFacts:
    """What the loops of one PrimFunc do: the largest parallel and vectorised loop extents (0: none)."""

    parallel: int
    vector: int
    loops: int


def loop_facts(func: Any) -> LoopFacts:
    """Walk ``func``'s body and report its parallel / vectorised loops (works on scheduled TIR)."""
    import tvm_ffi
    from tvm import tirx

    found = {"parallel": 0, "vector": 0, "loops": 0}

    def on_for(loop: Any) -> None:
        ext = int(loop.extent.value) if hasattr(loop.extent, "value") else 0
        found["loops"] += 1
        if loop.kind == tirx.ForKind.PARALLEL:
            found["parallel"] = max(found["parallel"], ext)
        elif loop.kind == tirx.ForKind.VECTORIZED:
            found["vector"] = max(found["vector"], ext)

    tvm_ffi.structural_walk(func.body, [(tirx.For, on_for)])
    return LoopFacts(**found)


def output_shape(func: Any) -> tuple[int, ...]:
    """Shape of the last buffer parameter of a PrimFunc (its output, by TVM's calling convention)."""
    shape = func.params[-1].shape  # TVM 0.27: PrimFunc params are the buffers themselves
    return tuple(int(d.value) if hasattr(d, "value") else int(d) for d in shape)
