"""Timing a whole model: a compiled module's VM (here or over RPC) and the same model in PyTorch."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import numpy as np


def summarize_ms(samples_s: list[float]) -> dict[str, float]:
    """Median, spread and extremes of a list of per-run seconds, in milliseconds.

    ``spread`` is the interquartile range (p75 - p25).
    """
    ms = sorted(s * 1e3 for s in samples_s)
    q = statistics.quantiles(ms, n=4) if len(ms) >= 2 else [ms[0]] * 3
    return {
        "median_ms": statistics.median(ms),
        "mean_ms": statistics.fmean(ms),
        "min_ms": ms[0],
        "max_ms": ms[-1],
        "spread_ms": q[2] - q[0],
        "repeats": len(ms),
    }


def time_callable(fn: Callable[[], Any], warmup: int = 3, repeat: int = 20) -> dict[str, float]:
    """Run ``fn`` ``warmup`` times, then time ``repeat`` single runs (wall clock)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return summarize_ms(samples)


def time_vm(vm: Any, device: Any, input_shape: tuple[int, ...], warmup: int = 3, repeat: int = 20,
            seed: int = 0) -> dict[str, float]:
    """Time ``vm["main"]`` on a random NCHW input with TVM's time evaluator (one run per sample)."""
    import tvm

    x = np.random.default_rng(seed).standard_normal(input_shape).astype("float32")
    vm.set_input("main", tvm.runtime.tensor(x, device))
    for _ in range(warmup):
        vm.invoke_stateful("main")
    ev = vm.time_evaluator("invoke_stateful", device, number=1, repeat=repeat, min_repeat_ms=0)
    res = ev("main")
    return summarize_ms(list(res.results))


def time_torch(model: Any, input_shape: tuple[int, ...], warmup: int = 3, repeat: int = 20,
               threads: int | None = None, seed: int = 0) -> dict[str, float]:
    """Time a PyTorch model (eval, no_grad) on a random input of ``input_shape``."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(input_shape, generator=g)
    model = model.eval()
    with torch.no_grad():
        return time_callable(lambda: model(x), warmup=warmup, repeat=repeat)
