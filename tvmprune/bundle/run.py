"""``tvmprune run``: run a compiled module directory on this machine.

* A module for this machine's architecture runs in TVM's Python runtime (or, with
  ``bundle_runner=True``, through its bundle's ``bin/tvmprune-run``).
* A bundle for another architecture (``compile --target arm_cpu --bundle``) runs its
  ``bin/tvmprune-run`` under qemu user mode (``qemu-arm-static -cpu cortex-a7 -L
  /usr/arm-linux-gnueabihf``): a functional check whose timings mean nothing.

Either way the input is a float32 NCHW ``.npy`` of meta.json's input shape, the first output is
written as ``.npy``, and the latency summary has the keys of ``tvmprune-run``'s JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BundleError, InvalidInputShapeError
from ..target import host_arch
from .bundle import bundle_runner_path
from .toolchain import toolchain_for


@dataclass
class RunResult:
    """What a run measured: ``latency`` (median_ms, spread_ms, min_ms, max_ms, repeats, ...),
    ``how`` (``python``, ``bundle`` or ``qemu``) and the command line when a runner was used."""

    latency: dict[str, Any]
    how: str
    command: list[str] | None = None

    @property
    def emulated(self) -> bool:
        return self.how == "qemu"


def _read_input(path: "str | os.PathLike[str]", expected: tuple[int, ...]) -> np.ndarray:
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InvalidInputShapeError(f"cannot read {path} as .npy ({e}); write it with numpy.save") from None
    if tuple(x.shape) != tuple(expected):
        raise InvalidInputShapeError(
            f"{path} has shape {'x'.join(map(str, x.shape))} but the model takes "
            f"{'x'.join(map(str, expected))} (float32, NCHW; from meta.json)")
    return np.ascontiguousarray(x, dtype="float32")


def _run_python(module_dir: Path, input_path: str, output_path: str | None, repeat: int) -> RunResult:
    from ..measure.model import time_vm
    from ..compiler import load_compiled

    lm = load_compiled(module_dir)
    x = _read_input(input_path, lm.input_shape)
    y = lm.run(x)
    if output_path:
        np.save(output_path, y)
    t = time_vm(lm.vm, lm.device, lm.input_shape, warmup=1, repeat=repeat)
    latency = {"model": str(module_dir / "model.so"), "input_shape": "x".join(map(str, x.shape)),
               "output_shape": "x".join(map(str, y.shape)), **t}
    return RunResult(latency=latency, how="python")


def _run_runner(module_dir: Path, arch: str, input_path: str, output_path: str | None, repeat: int,
                threads: int | None, timeout_s: float) -> RunResult:
    runner = bundle_runner_path(module_dir)
    if not runner.is_file():
        raise BundleError(f"{module_dir} has no bin/tvmprune-run: compile it with --bundle")
    tc = toolchain_for(arch)
    prefix = tc.emulator_command()
    cmd = [*prefix, str(runner), str(module_dir / "model.so"), "--input", str(input_path), "--repeat", str(repeat)]
    if output_path:
        cmd += ["--output", str(output_path)]
    if threads:
        cmd += ["--threads", str(threads)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise BundleError(f"tvmprune-run did not finish within {timeout_s:.0f} s: {' '.join(cmd)}") from None
    if proc.returncode != 0:
        msg = proc.stderr.strip().removeprefix("error: ") or f"exit status {proc.returncode}"
        err = InvalidInputShapeError if proc.returncode == 2 and "shape" in msg else BundleError
        raise err(f"tvmprune-run failed: {msg}")
    return RunResult(latency=json.loads(proc.stdout.strip().splitlines()[-1]), how="qemu" if prefix else "bundle",
                     command=cmd)


def run_module_dir(module_dir: "str | os.PathLike[str]", input_path: str, output_path: str | None = None,
                   emulate: bool = False, bundle_runner: bool = False, repeat: int = 10,
                   threads: int | None = None, timeout_s: float = 1800.0) -> RunResult:
    """Run ``module_dir`` (written by ``tvmprune compile -o``) on ``input_path``.

    Args:
        module_dir: the compiled directory (model.so, meta.json; bin/ and lib/ for a bundle).
        input_path: float32 NCHW .npy of meta.json's input shape.
        output_path: where the first output goes as .npy (None: not written).
        emulate: allow running a bundle for another architecture under qemu user mode.
        bundle_runner: run a host bundle through bin/tvmprune-run instead of TVM's Python runtime.
        repeat: timed runs after one warm-up run.
        threads: TVM threads of the runner (None: its default).
        timeout_s: limit for the runner process.

    Raises:
        ModuleDirError, BundleError: not a module directory / no bundle / qemu missing / the run failed.
        InvalidInputShapeError: the input does not fit the model.
    """
    from ..compiler import read_meta

    d = Path(module_dir)
    meta = read_meta(d)
    arch = meta.get("target", {}).get("arch", "x86_64")
    if repeat < 1:
        raise BundleError("--repeat must be >= 1")
    if arch != host_arch() and not emulate:
        raise BundleError(
            f"{d} holds a module for {arch} ({meta['target'].get('name')}), this machine is {host_arch()}: copy {d} "
            f"to the board and run {d}/bin/tvmprune-run {d}/model.so --input x.npy there, or pass --emulate to run "
            "it here under qemu (a correctness check; its timings mean nothing)")
    if arch == host_arch() and not bundle_runner:
        return _run_python(d, input_path, output_path, repeat)
    return _run_runner(d, arch, input_path, output_path, repeat, threads, timeout_s)
