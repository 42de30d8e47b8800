"""A module directory: what `tvmprune compile -o DIR` writes and `tvmprune bench` loads.

* ``model.so``  -- the Relax VM executable with the weights embedded;
* ``meta.json`` -- model, input shape / dtype, target, versions, per-layer formats.

It loads in a fresh process with nothing but TVM: ``tvm.runtime.load_module`` and
``relax.VirtualMachine`` (see :func:`load_compiled`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModuleDirError, OutputDirError

MODULE_FILE = "model.so"
META_FILE = "meta.json"


def ensure_writable_dir(path: "str | os.PathLike[str]") -> Path:
    """Create ``path`` if needed and check a file can be written there.

    Raises:
        OutputDirError: it exists as a file, or it cannot be created or written.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputDirError(f"output path {p} exists and is not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / ".tvmprune_write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise OutputDirError(f"output directory {p} is not writable ({e.strerror}); choose another with -o") from None
    return p


def first_output(out: Any) -> np.ndarray:
    if hasattr(out, "numpy"):
        return out.numpy()
    return out[0].numpy()


@dataclass
class LoadedModule:
    """A module directory loaded for running on this machine."""

    vm: Any
    meta: dict[str, Any]
    device: Any

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.meta["input_shape"])

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run on an NCHW float32 array; returns the first output as numpy."""
        import tvm

        return first_output(self.vm["main"](tvm.runtime.tensor(np.ascontiguousarray(x, dtype="float32"))))


def read_meta(module_dir: "str | os.PathLike[str]") -> dict[str, Any]:
    """Read ``meta.json`` of a module directory (raises ModuleDirError with what is missing)."""
    d = Path(module_dir)
    if not d.is_dir():
        raise ModuleDirError(f"{d} is not a directory; give the -o directory of `tvmprune compile`")
    mp = d / META_FILE
    if not mp.is_file():
        raise ModuleDirError(f"{d} has no {META_FILE}: not a `tvmprune compile` output directory")
    try:
        return json.loads(mp.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ModuleDirError(f"{mp} is damaged (not JSON: {e}); compile again") from None


def load_compiled(module_dir: "str | os.PathLike[str]") -> LoadedModule:
    """Load ``model.so`` + ``meta.json`` from ``module_dir`` for running on this machine."""
    import tvm
    from tvm import relax

    from ..target import host_arch

    meta = read_meta(module_dir)
    arch = meta.get("target", {}).get("arch", "x86_64")
    if arch != host_arch():
        raise ModuleDirError(
            f"{module_dir} holds a module for {arch} ({meta['target'].get('name')}); this machine is {host_arch()}. "
            "Copy it to the board, or run `tvmprune bench` there."
        )
    so = Path(module_dir) / MODULE_FILE
    if not so.is_file():
        raise ModuleDirError(f"{module_dir} has no {MODULE_FILE}; compile again")
    try:
        lib = tvm.runtime.load_module(str(so))
    except Exception as e:
        raise ModuleDirError(f"cannot load {so}: {str(e).splitlines()[0]}") from None
    dev = tvm.cpu()
    return LoadedModule(vm=relax.VirtualMachine(lib, dev), meta=meta, device=dev)
