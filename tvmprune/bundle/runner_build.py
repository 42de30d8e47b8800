"""Build ``tvmprune-run`` (``runner.cc``) against a cross-built runtime.

The executable lands in ``<runtime dir>/bin/tvmprune-run``, cached like the libraries (rebuilt
when ``runner.cc`` / ``npy.h`` or the runtime change). Its RPATH is ``$ORIGIN/../lib``, so a
bundle laid out as ``bin/tvmprune-run`` + ``lib/*.so`` runs without ``LD_LIBRARY_PATH``.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from ..errors import BundleError
from .runtime_build import COMMON_FLAGS, RuntimeLibs

RUNNER_SOURCE = Path(__file__).parent / "runner.cc"
RUNNER_HEADERS = (Path(__file__).parent / "npy.h",)
RUNNER_NAME = "tvmprune-run"


def _runner_key(libs: RuntimeLibs) -> str:
    h = hashlib.sha256()
    for p in (RUNNER_SOURCE, *RUNNER_HEADERS, *libs.libraries):
        h.update(p.read_bytes())
    h.update(" ".join(libs.toolchain.cpu_flags).encode())
    return h.hexdigest()[:16]


def build_runner(libs: RuntimeLibs) -> Path:
    """Compile and link ``tvmprune-run`` for ``libs``' toolchain (cached); returns its path.

    Raises:
        BundleError: the compiler fails.
    """
    tc = libs.toolchain
    out = libs.directory / "bin" / RUNNER_NAME
    stamp = out.with_suffix(".key")
    key = _runner_key(libs)
    if out.is_file() and stamp.is_file() and stamp.read_text() == key:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    cmd = [tc.require_compiler(), *COMMON_FLAGS, *tc.cpu_flags, *[f"-I{d}" for d in libs.include_dirs],
           f"-I{RUNNER_SOURCE.parent}", str(RUNNER_SOURCE), "-o", str(tmp), f"-L{libs.lib_dir}",
           # --no-as-needed: the VM's loader registers itself when libtvm_runtime is loaded,
           # though the runner calls nothing of it directly
           "-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi", "-Wl,--as-needed",
           "-Wl,-rpath,$ORIGIN/../lib", "-lpthread", "-ldl"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BundleError(f"building {RUNNER_NAME} for {tc.triple} failed:\n{proc.stderr.strip()[-3000:]}")
    tmp.replace(out)
    stamp.write_text(key)
    return out
