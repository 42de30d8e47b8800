"""Candidates timed side by side: tvmprune modules, PyTorch, peer engines, in interleaved rounds.

A runner is anything with ``runtime``, ``pattern``, ``sample(k) -> [seconds]`` and ``close()``
(:class:`TvmRunner`, :class:`TorchRunner`, :class:`.peers.PeerRunner`). :func:`time_interleaved`
takes ``repeat`` samples of each, in rounds, so load from other processes hits all of them alike:
on a shared machine the ratios of one such run are what counts, not absolute times.
"""

from __future__ import annotations

import time
from typing import Any, Protocol, Sequence

import numpy as np

from .model import summarize_ms


class Runner(Protocol):
    runtime: str
    pattern: str

    def sample(self, k: int) -> list[float]: ...

    def close(self) -> None: ...


def random_input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """The timed input every runner uses: standard normal, float32, NCHW."""
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


class TvmRunner:
    """A compiled model in the Relax VM: a ``CompiledModel`` (``.executable``) or a loaded module
    directory (``LoadedModule``, whose ``.vm`` is used as it is)."""

    runtime = "tvmprune"

    def __init__(self, compiled: Any, pattern: str, shape: tuple[int, ...], warmup: int = 3) -> None:
        import tvm
        from tvm import relax

        self.pattern = pattern
        dev = tvm.cpu()
        self.vm = getattr(compiled, "vm", None) or relax.VirtualMachine(compiled.executable, dev)
        self.vm.set_input("main", tvm.runtime.tensor(random_input(shape), dev))
        for _ in range(warmup):
            self.vm.invoke_stateful("main")
        self.ev = self.vm.time_evaluator("invoke_stateful", dev, number=1, repeat=1, min_repeat_ms=0)

    def sample(self, k: int) -> list[float]:
        return [float(self.ev("main").results[0]) for _ in range(k)]

    def close(self) -> None:
        self.vm = self.ev = None


class TorchRunner:
    """A PyTorch model in eval mode under ``no_grad`` (threads as set by ``torch.set_num_threads``)."""

    runtime = "pytorch"

    def __init__(self, model: Any, pattern: str, shape: tuple[int, ...], warmup: int = 3) -> None:
        import torch

        self.torch, self.pattern = torch, pattern
        self.model = model.eval()
        self.x = torch.from_numpy(random_input(shape))
        with torch.no_grad():
            for _ in range(warmup):
                self.model(self.x)

    def sample(self, k: int) -> list[float]:
        out = []
        with self.torch.no_grad():
            for _ in range(k):
                t0 = time.perf_counter()
                self.model(self.x)
                out.append(time.perf_counter() - t0)
        return out

    def close(self) -> None:
        self.model = None


def time_interleaved(runners: Sequence[Runner], repeat: int, rounds: int | None = None,
                     settle_s: float | None = None) -> list[dict[str, float]]:
    """``repeat`` samples per runner taken in ``rounds`` interleaved rounds (default: blocks of 4).

    In each round every runner takes its share of samples as one block, after one discarded run
    and a ``settle_s`` pause: engines whose threads spin-wait after a run (ONNX Runtime, OpenVINO,
    DeepSparse) would otherwise steal the cores from the next runner's first samples. 50 ms was
    not enough with all three peers in the run: resnet50 1x4@0.8 read 15.4 ms median (p25 11.4)
    next to them and 11.2 ms with any one of them; with 0.5 s every engine reads its solo time.
    Default ``settle_s``: 0.5 s when another engine (PyTorch, a peer) is among the runners, 50 ms
    when all are tvmprune modules.
    Returns one :func:`.model.summarize_ms` dict per runner (plus ``p25_ms``), in ``runners`` order.
    """
    if settle_s is None:
        settle_s = 0.05 if all(isinstance(r, TvmRunner) for r in runners) else 0.5
    rounds = max(1, min(rounds or -(-repeat // 4), repeat))
    samples: list[list[float]] = [[] for _ in runners]
    for i in range(rounds):
        k = repeat // rounds + (1 if i < repeat % rounds else 0)
        for j, r in enumerate(runners):
            if k == 0:
                continue
            time.sleep(settle_s)
            r.sample(1)
            samples[j] += r.sample(k)
    out = []
    for s in samples:
        st = summarize_ms(s)
        st["p25_ms"] = float(np.percentile(np.asarray(s) * 1e3, 25))
        out.append(st)
    return out


def cpu_time_rounds(calls: Sequence[Any], rounds: int, per_round: int = 3) -> list[list[float]]:
    """Per callable, one sample per interleaved round: the mean thread CPU ms of ``per_round`` calls
    after one discarded call. Thread CPU time counts only this thread's work (run with one TVM
    thread), so other processes' load disturbs it little."""
    out: list[list[float]] = [[] for _ in calls]
    for _ in range(rounds):
        for i, call in enumerate(calls):
            call()
            t0 = time.thread_time()
            for _ in range(per_round):
                call()
            out[i].append((time.thread_time() - t0) / per_round * 1e3)
    return out


def max_rel_err(out: np.ndarray, ref: np.ndarray) -> float:
    """max |out - ref| / max |ref|; infinite when the shapes differ."""
    if out.shape != ref.shape:
        return float("inf")
    return float(np.abs(out - ref).max()) / max(float(np.abs(ref).max()), 1e-6)
