"""Where the time goes inside a whole compiled model: per-call times from the Relax VM's instrument hook."""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .runners import random_input


@dataclass
class VmProfile:
    """Median ms per PrimFunc symbol over the runs, calls per run, and the median instrumented total."""

    ms: dict[str, float]
    calls: dict[str, int]
    total_ms: float

    @property
    def between_calls_ms(self) -> float:
        """Time not inside any PrimFunc call: VM dispatch, allocation, the hook itself."""
        return self.total_ms - sum(self.ms.values())


def profile_vm(executable: Any, shape: tuple[int, ...], runs: int = 10) -> VmProfile:
    """Run the model ``runs`` times with an instrument hook around every call.

    The Python hook adds a few microseconds per call, so totals read a little high.
    """
    import tvm
    from tvm import relax

    dev = tvm.cpu()
    vm = relax.VirtualMachine(executable, dev)
    x = tvm.runtime.tensor(random_input(shape), dev)
    vm["main"](x)
    cur: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter = collections.Counter()
    start: dict[str, float] = {}

    def instrument(func: Any, sym: str, before: bool, ret: Any, *a: Any) -> int:
        if before:
            start[sym] = time.perf_counter()
        else:
            cur[sym] += time.perf_counter() - start.pop(sym, time.perf_counter())
            calls[sym] += 1
        return 0

    vm.set_instrument(instrument)
    per_run: list[dict[str, float]] = []
    totals = []
    for _ in range(runs):
        cur.clear()
        t0 = time.perf_counter()
        vm["main"](x)
        totals.append(time.perf_counter() - t0)
        per_run.append(dict(cur))
    syms = {k for r in per_run for k in r}
    med = {k: float(np.median([r.get(k, 0.0) for r in per_run])) * 1e3 for k in syms}
    return VmProfile(med, {k: v // runs for k, v in calls.items()}, float(np.median(totals)) * 1e3)
