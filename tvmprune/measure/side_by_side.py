"""``--vs ENGINES`` of ``bench`` and ``compare``: the same (pruned) PyTorch model in the engines users
already have, as runners for :func:`.runners.time_interleaved`; for a module compiled from an ONNX
file, that file itself in the peers (:func:`onnx_file_runners`).

Engines: ``pytorch`` and the peers of :mod:`.peers` (``ort`` / ``onnxruntime``, ``openvino``,
``deepsparse``). A peer that is not installed is reported, not fatal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .peers import PeerEngine, PeerEngineError, PeerRunner, engine_name, export_onnx, find_engine
from .runners import TorchRunner, max_rel_err, random_input

RTOL = 1e-3  # an engine whose output differs more than this from PyTorch's gets no timing row


def parse_vs(spec: str | None) -> list[str]:
    """``"ort,openvino,pytorch"`` -> canonical engine names; a clear error for unknown ones."""
    out: list[str] = []
    for name in (spec or "").split(","):
        name = name.strip().lower()
        if not name:
            continue
        canon = "pytorch" if name in ("pytorch", "torch") else engine_name(name)
        if canon not in out:
            out.append(canon)
    return out


@dataclass
class EngineSet:
    """The engines found for ``--vs`` (peers with their Python) and why the others are missing."""

    torch: bool = False
    peers: list[PeerEngine] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)

    @classmethod
    def find(cls, names: list[str]) -> "EngineSet":
        es = cls(torch="pytorch" in names)
        for n in names:
            if n == "pytorch":
                continue
            r = find_engine(n)
            if isinstance(r, PeerEngine):
                es.peers.append(r)
            else:
                es.missing[n] = r
        return es


def peer_runs(peers: list[PeerEngine], model: Any, pattern: str, shape: tuple[int, ...], threads: int,
              workdir: str | os.PathLike, warmup: int, x: np.ndarray, ref: np.ndarray
              ) -> tuple[list[tuple[PeerRunner, float]], list[tuple[str, str]]]:
    """``model`` exported to ONNX once and loaded in every peer, each run once on ``x`` against
    PyTorch's ``ref``: ([(runner, max rel err)], [(engine, why it failed)])."""
    if not peers:
        return [], []
    path = export_onnx(model, shape, os.path.join(str(workdir), f"{pattern.replace('@', '_').replace('+', '_')}.onnx"))
    return _load_peers(peers, path, pattern, shape, threads, workdir, warmup, x, ref)


def _load_peers(peers: list[PeerEngine], path: str, pattern: str, shape: tuple[int, ...], threads: int,
                workdir: str | os.PathLike, warmup: int, x: np.ndarray, ref: np.ndarray
                ) -> tuple[list[tuple[PeerRunner, float]], list[tuple[str, str]]]:
    """The ONNX file ``path`` loaded in every peer and run once on ``x`` against ``ref``."""
    runs, failed = [], []
    for peer in peers:
        try:
            r = PeerRunner(peer, path, shape, threads, warmup, pattern)
            runs.append((r, max_rel_err(r.run(x, workdir), ref)))
        except PeerEngineError as e:
            failed.append((peer.engine, str(e)))
    return runs, failed


def engine_runners(es: EngineSet, model: Any, pattern: str, shape: tuple[int, ...], threads: int,
                   workdir: str | os.PathLike, warmup: int = 3) -> tuple[list[Any], list[str]]:
    """Runners of ``model`` (eval mode) in every engine of ``es``, each checked against PyTorch on
    one random input; returns (runners, notes about engines that failed or differ)."""
    import torch

    runners: list[Any] = [TorchRunner(model, pattern, shape, warmup)] if es.torch else []
    if not es.peers:
        return runners, []
    x = random_input(shape, seed=1)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    runs, failed = peer_runs(es.peers, model, pattern, shape, threads, workdir, warmup, x, ref)
    checked, notes = _keep_agreeing(runs, failed, pattern, "PyTorch")
    return runners + checked, notes


def _keep_agreeing(runs: list[tuple[PeerRunner, float]], failed: list[tuple[str, str]], pattern: str,
                   ref_name: str) -> tuple[list[PeerRunner], list[str]]:
    """The runners whose output agreed with the reference (the others closed) and notes on the rest."""
    notes = [f"{pattern}: {engine} failed: {why}" for engine, why in failed]
    kept = []
    for r, err in runs:
        if err > RTOL:
            notes.append(f"{pattern}: {r.runtime} output differs from {ref_name} (rel err {err:.1e}): not timed")
            r.close()
        else:
            kept.append(r)
    return kept, notes


def onnx_file_runners(es: EngineSet, onnx_path: str, pattern: str, shape: tuple[int, ...], threads: int,
                      workdir: str | os.PathLike, reference: Callable[[np.ndarray], np.ndarray],
                      warmup: int = 3) -> tuple[list[Any], list[str]]:
    """Runners of the ONNX file a module was compiled from (``--model m.onnx``) in the peers of ``es``.

    Such a module has no PyTorch form, so the peers run the file itself, each checked on one random
    NCHW float32 input against ``reference`` (the compiled module's own output); ``pytorch`` in
    ``es`` gets a note instead of a runner. Returns (runners, notes).
    """
    notes = [f"pytorch not timed: the module was compiled from the ONNX file {onnx_path}, which has no "
             "PyTorch form"] if es.torch else []
    if not es.peers:
        return [], notes
    x = random_input(shape, seed=1)
    runs, failed = _load_peers(es.peers, onnx_path, pattern, shape, threads, workdir, warmup, x, reference(x))
    kept, more = _keep_agreeing(runs, failed, pattern, "the compiled module")
    return kept, notes + more
