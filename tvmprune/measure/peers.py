"""The engines users already have — ONNX Runtime, OpenVINO, DeepSparse — timed on the same weights.

Each engine runs in a child process (``peer_worker.py``) started with the Python of the venv it is
installed in, so their pins never meet torch's or each other's; the parent sends "take k samples"
requests, which lets ``measure.runners.time_interleaved`` interleave them with tvmprune and PyTorch
in rounds. Where an engine's Python is looked for, in order: ``--peer-python ENGINE=PATH``
(``pythons``), ``$TVMPRUNE_PEER_PYTHON_<ENGINE>``, ``~/.cache/tvmprune/peers/<engine>/bin/python``
(``scripts/install_peers.sh`` puts them there), the current interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TvmpruneError

ENGINES = ("onnxruntime", "openvino", "deepsparse")
ALIASES = {"ort": "onnxruntime", "ov": "openvino", "ds": "deepsparse"}
_WORKER = Path(__file__).with_name("peer_worker.py")


class PeerEngineError(TvmpruneError):
    """A peer engine could not be started or failed while timing."""


def engine_name(name: str) -> str:
    """``ort`` / ``onnxruntime`` ... -> the canonical engine name; a clear error for anything else."""
    canon = ALIASES.get(name.strip().lower(), name.strip().lower())
    if canon not in ENGINES:
        raise PeerEngineError(f"unknown engine {name!r}: choose from {', '.join(ENGINES)} "
                              f"(or {', '.join(ALIASES)})")
    return canon


def peers_dir() -> Path:
    return Path(os.environ.get("TVMPRUNE_PEERS_DIR", Path.home() / ".cache" / "tvmprune" / "peers"))


def python_candidates(engine: str, pythons: dict[str, str] | None = None) -> list[str]:
    """Interpreters that may have ``engine`` installed, most specific first."""
    out = []
    if pythons and engine in pythons:
        out.append(pythons[engine])
    env = os.environ.get(f"TVMPRUNE_PEER_PYTHON_{engine.upper()}")
    if env:
        out.append(env)
    venv = peers_dir() / engine / "bin" / "python"
    if venv.exists():
        out.append(str(venv))
    out.append(sys.executable)
    return out


@dataclass(frozen=True)
class PeerEngine:
    """An engine found on this machine: its name, the Python that has it, and its version."""

    engine: str
    python: str
    version: str


def find_engine(engine: str, pythons: dict[str, str] | None = None) -> PeerEngine | str:
    """The first interpreter that imports ``engine`` -> PeerEngine; else why not (one line)."""
    engine = engine_name(engine)
    for py in python_candidates(engine, pythons):
        try:
            r = subprocess.run([py, str(_WORKER), "--engine", engine, "--probe"], capture_output=True,
                               text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            continue
        line = (r.stdout.strip().splitlines() or [""])[-1]
        if r.returncode == 0 and line.startswith("{"):
            return PeerEngine(engine, py, json.loads(line)["version"])
    return (f"{engine} not installed (bash scripts/install_peers.sh {engine}, "
            f"or --peer-python {engine}=PATH)")


def export_onnx(model: Any, shape: tuple[int, ...], path: str | os.PathLike) -> str:
    """Export an eval-mode PyTorch model to ONNX (opset 17, TorchScript exporter: works for every
    torchvision CNN; zeros of pruned weights survive BN folding, so every engine gets the same weights)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(shape),), str(path), input_names=["x"],
                          output_names=["y"], dynamo=False, opset_version=17)
    return str(path)


class PeerRunner:
    """One ONNX model in one peer engine, in its own process: ``sample(k)`` -> k run times (s)."""

    def __init__(self, peer: PeerEngine, onnx_path: str, shape: tuple[int, ...], threads: int,
                 warmup: int = 5, pattern: str = "dense") -> None:
        self.runtime, self.pattern, self.version = peer.engine, pattern, peer.version
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE")
        cmd = [peer.python, str(_WORKER), "--engine", peer.engine, "--onnx", onnx_path,
               "--threads", str(threads), "--shape", ",".join(map(str, shape)), "--warmup", str(warmup)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        first = self._reply()
        if "error" in first:
            self.close()
            raise PeerEngineError(f"{peer.engine} could not load the model: {first['error']}")

    def _reply(self) -> dict[str, Any]:
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            err = self.proc.stderr.read()[-800:] if self.proc.stderr else ""
            raise PeerEngineError(f"{self.runtime} worker exited: {err.strip() or 'no message'}")
        try:
            return json.loads(line)
        except ValueError:
            raise PeerEngineError(f"{self.runtime} worker wrote {line.strip()[:200]!r}, not a reply") from None

    def _ask(self, **req: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
        except OSError as e:  # the worker is gone: its stderr says why
            raise PeerEngineError(f"{self.runtime} worker is not running ({e.strerror or e})") from None
        rep = self._reply()
        if "error" in rep:
            raise PeerEngineError(f"{self.runtime}: {rep['error']}")
        return rep

    def sample(self, k: int) -> list[float]:
        return [float(t) for t in self._ask(cmd="sample", k=k)["times"]]

    def run(self, x: np.ndarray, workdir: str | os.PathLike) -> np.ndarray:
        """Run once on ``x`` (for the numerics check); files go through ``workdir``."""
        src, dst = Path(workdir) / f"{self.runtime}_in.npy", Path(workdir) / f"{self.runtime}_out.npy"
        np.save(src, x.astype("float32"))
        self._ask(cmd="run", input=str(src), output=str(dst))
        return np.load(dst)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                    self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
