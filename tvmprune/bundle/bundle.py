"""Runtime bundles: a compiled module directory that runs on a board with no TVM or Python.

``tvmprune compile --bundle -o OUT`` lays out::

    OUT/model.so            the Relax VM executable (from compile)
    OUT/meta.json           input shape, target, formats (from compile)
    OUT/lib/libtvm_ffi.so   TVM's runtime, cross-built for the target (runtime_build)
    OUT/lib/libtvm_runtime.so
    OUT/bin/tvmprune-run    the runner (runner.cc); finds lib/ through its RPATH

and records ``"bundle": {...}`` in meta.json. On the board (glibc >= 2.34 and GCC 12's
libstdc++, as Debian / Raspberry Pi OS bookworm): ``OUT/bin/tvmprune-run OUT/model.so --input
x.npy --output y.npy``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from ..errors import BundleError
from ..target import NamedTarget
from .runner_build import RUNNER_NAME, build_runner
from .runtime_build import build_runtime
from .toolchain import toolchain_for

META_FILE = "meta.json"


def bundle_runner_path(module_dir: "str | os.PathLike[str]") -> Path:
    """``DIR/bin/tvmprune-run`` of a bundle directory."""
    return Path(module_dir) / "bin" / RUNNER_NAME


def write_bundle(module_dir: "str | os.PathLike[str]", target: NamedTarget, jobs: int = 2,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Add ``lib/`` and ``bin/tvmprune-run`` for ``target`` to an exported module directory.

    Builds the runtime and runner on first use (cached, see :mod:`.runtime_build`).

    Returns:
        the ``bundle`` entry written to meta.json: triple, files, total size in bytes.

    Raises:
        BundleError: ``module_dir`` has no model.so / meta.json, or the build fails.
    """
    out = Path(module_dir)
    meta_path = out / META_FILE
    if not (out / "model.so").is_file() or not meta_path.is_file():
        raise BundleError(f"{out} is not an exported module directory (model.so + meta.json); compile first")
    tc = toolchain_for(target)
    libs = build_runtime(tc, jobs=jobs, log=log)
    runner = build_runner(libs)
    (out / "lib").mkdir(exist_ok=True)
    (out / "bin").mkdir(exist_ok=True)
    files = []
    for src in libs.libraries:
        shutil.copy2(src, out / "lib" / src.name)
        files.append(f"lib/{src.name}")
    shutil.copy2(runner, bundle_runner_path(out))
    files.append(f"bin/{RUNNER_NAME}")
    size = sum((out / f).stat().st_size for f in files + ["model.so", META_FILE])
    entry = {"triple": tc.triple, "arch": tc.arch, "files": files, "bytes": size}
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["bundle"] = entry
    meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return entry
