"""Kernel identity: the names under which a kernel is found again (symbols, tuning records).

* :func:`symbol_name` -- the PrimFunc's global symbol, deterministic in its parameters.
* :func:`workload_key` -- same computation *and* same index structure (values do not
  matter): layers with equal keys share one tuning task.
* :func:`family_key` -- kernels whose schedule traces are interchangeable (format, block
  size, argument count, input / output shapes): a tuned trace of one replays on the others.
* :func:`structural_hash` -- MetaSchedule's workload hash of a PrimFunc module.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .base import KernelInstance


def symbol_name(prefix: str, *parts: Any) -> str:
    """A short deterministic symbol name from ``prefix`` and hashed ``parts``."""
    h = hashlib.sha1(repr(parts).encode()).hexdigest()[:10]
    return f"{prefix}_{h}"


def workload_key(kernel: "KernelInstance") -> str:
    """Stable hash of the computation and its constant index structure (16 hex digits)."""
    h = hashlib.sha1(str(kernel.func.script()).encode())
    for c in kernel.consts:
        if c.dtype.kind in "iu":  # index structure matters, values do not
            h.update(np.ascontiguousarray(c).tobytes())
    return h.hexdigest()[:16]


def _buffer_shapes(func: Any) -> list[list[int]]:
    return [[int(d) for d in func.buffer_map[p].shape] for p in func.params]


def family_key(kernel: "KernelInstance") -> str:
    """JSON ``[kind, n, number of arguments, input shape, output shape]`` of a kernel."""
    shapes = _buffer_shapes(kernel.func)
    return json.dumps([kernel.kind, kernel.info.get("n", 0), len(shapes), shapes[0], shapes[-1]])


def structural_hash(mod: Any) -> str:
    """MetaSchedule's workload hash string (``structural`` module equality)."""
    import tvm_ffi

    return str(tvm_ffi.structural_hash(mod) & 0xFFFFFFFFFFFFFFFF)
