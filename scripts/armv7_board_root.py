"""The root of the emulated armv7 (Cortex-A7) board: an armhf Python that runs TVM's RPC server.

No armv7 TVM wheel exists, so the root is put together from parts (nothing is emulated while
building; see the shared notes, "armv7 runtime from the wheels"):

1. ``mmdebstrap --variant=extract --architectures=armhf`` of Debian bookworm's python3.11, its
   headers, numpy, psutil and cloudpickle;
2. the pure-Python ``tvm`` and ``tvm_ffi`` packages of the host's installed wheels (their
   ``.py`` files only) and ``typing_extensions`` in ``ROOT/opt/pysite``;
3. the cross-built runtime of :mod:`tvmprune.bundle.runtime_build` (``libtvm_ffi.so``,
   ``libtvm_runtime.so``) and :mod:`tvmprune.bundle.rpc_build` (``libtvm_rpc_server.so``,
   ``libtvm_ffi_testing.so``);
4. tvm_ffi's Cython ``core``: transpiled on the host with Cython (installed with the host's pip
   into ``<cache>/board-tools``), compiled with ``arm-linux-gnueabihf-g++`` against the root's
   Python headers. tvm_ffi 0.1.14's ``tvm_ffi_python_object.h`` assumes a 16-byte allocation
   header (8 bytes with 32-bit pointers): the build pads it on 32-bit targets, in a patched
   copy in the build directory.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

PACKAGES = ["python3.11", "libpython3.11-dev", "python3.11-dev", "libstdc++6", "python3-numpy", "python3-psutil",
            "python3-cloudpickle"]
TRIPLE = "arm-linux-gnueabihf"
CXX = f"{TRIPLE}-g++"
#: numpy from Debian finds libblas / liblapack through alternatives that an extracted root lacks
LIBRARY_DIRS = [f"usr/lib/{TRIPLE}/blas", f"usr/lib/{TRIPLE}/lapack"]
_SKIP = {"3rdparty", "include", "src", "lib", "lib64", "cmake", "licenses", "web", "__pycache__", "share", "cython",
         "stub"}
_HEADER_32BIT_FIX = ("struct PyCustomAllocHeader {\n  PyObject* tagged_pyobj;",
                     "struct PyCustomAllocHeader {\n#if UINTPTR_MAX == 0xffffffffu\n"
                     "  void* tvmprune_pad32[2];  /* keeps the header 16 bytes with 32-bit pointers */\n#endif\n"
                     "  PyObject* tagged_pyobj;")


def _run(cmd: list[str], what: str, fail: Callable[[str], Exception], **kw: Any) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise fail(f"{what} failed: {(r.stderr or r.stdout).strip()[-1500:]}")


def site_dir(root: Path) -> Path:
    return root / "opt" / "pysite"


def _copy_python_packages(site: Path) -> None:
    """The host wheels' tvm / tvm_ffi Python files (no compiled parts, sources or headers)."""
    import tvm
    import tvm_ffi

    def ignore(_: str, names: list[str]) -> list[str]:
        return [n for n in names if n in _SKIP or n.endswith((".so", ".pyc"))]

    for mod in (tvm, tvm_ffi):
        src = Path(mod.__file__).parent
        shutil.copytree(src, site / src.name, ignore=ignore)
        (site / src.name / "lib").mkdir()


def _cython(tools: Path, fail: Callable[[str], Exception]) -> list[str]:
    """The host command that runs Cython (installed once into ``tools``)."""
    if not (tools / "Cython").is_dir():
        _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target",
              str(tools), "cython>=3.0"], "pip install cython (to build tvm_ffi's core)", fail)
    return ["env", f"PYTHONPATH={tools}", sys.executable, "-m", "cython"]


def _build_core(root: Path, lib_dirs: list[Path], tools: Path, fail: Callable[[str], Exception]) -> Path:
    """Cross-compile tvm_ffi's Cython core for the root's python3.11; returns the extension."""
    import tvm_ffi

    cy = Path(tvm_ffi.__file__).parent / "cython"
    ffi = cy.parent
    build = root / "opt" / "build-core"
    build.mkdir(parents=True, exist_ok=True)
    header = (cy / "tvm_ffi_python_object.h").read_text()
    if _HEADER_32BIT_FIX[0] not in header:
        raise fail("tvm_ffi's tvm_ffi_python_object.h changed: the 32-bit header fix no longer applies")
    (build / "tvm_ffi_python_object.h").write_text(header.replace(*_HEADER_32BIT_FIX))
    (build / "pyinc").mkdir(exist_ok=True)
    (build / "pyinc" / TRIPLE).symlink_to(root / "usr" / "include" / TRIPLE)  # pyconfig.h's <TRIPLE/python3.11/...>
    _run(_cython(tools, fail) + ["--cplus", "-3", "--module-name", "tvm_ffi.core", str(cy / "core.pyx"),
                                 "-o", str(build / "core.cpp")], "cython tvm_ffi/cython/core.pyx", fail)
    from tvmprune.bundle.toolchain import toolchain_for

    flags = ["-std=c++17", "-fPIC", "-O2", "-DNDEBUG", "-Wno-psabi", *toolchain_for("armv7").cpu_flags]
    incs = [build, cy, root / "usr" / "include" / "python3.11", build / "pyinc", ffi / "include",
            ffi / "3rdparty" / "dlpack" / "include"]
    _run([CXX, *flags, *[f"-I{d}" for d in incs], "-c", str(build / "core.cpp"), "-o", str(build / "core.o")],
         "compiling tvm_ffi's core for armv7", fail)
    out = site_dir(root) / "tvm_ffi" / "core.cpython-311-arm-linux-gnueabihf.so"
    _run([CXX, "-shared", str(build / "core.o"), "-o", str(out), *[f"-L{d}" for d in lib_dirs], "-ltvm_ffi",
          "-ltvm_ffi_testing", "-lpthread", "-Wl,-rpath,$ORIGIN/lib"], "linking tvm_ffi's core for armv7", fail)
    shutil.rmtree(build)
    return out


def build_armv7_root(root: Path, tools: Path, fail: Callable[[str], Exception], log: Callable[[str], None]) -> None:
    """Assemble the armv7 board's root in ``root`` (empty or absent); ``fail(msg)`` makes the error raised."""
    from tvmprune.bundle.rpc_build import build_rpc_libs
    from tvmprune.bundle.toolchain import toolchain_for
    from tvmprune.errors import BundleError

    t0 = time.time()
    log(f"building the armhf root in {root} (mmdebstrap --variant=extract) ...")
    _run(["mmdebstrap", "--variant=extract", "--architectures=armhf", "--include=" + ",".join(PACKAGES), "bookworm",
          str(root), "http://deb.debian.org/debian"], "mmdebstrap (armhf)", fail)
    log(f"  root extracted ({time.time() - t0:.0f} s); cross-building the runtime and RPC server ...")
    try:
        libs = build_rpc_libs(toolchain_for("armv7"), log=log)
    except BundleError as e:
        raise fail(str(e)) from None
    site = site_dir(root)
    site.mkdir(parents=True)
    _copy_python_packages(site)
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--target",
          str(site), "typing_extensions>=4.13"], "pip install typing_extensions", fail)
    rt = libs.runtime.lib_dir
    for lib, dest in [(rt / "libtvm_ffi.so", "tvm_ffi"), (libs.ffi_testing_library, "tvm_ffi"),
                      (rt / "libtvm_runtime.so", "tvm"), (libs.rpc_library, "tvm")]:
        shutil.copy2(lib, site / dest / "lib" / lib.name)
    log(f"  libraries in place ({time.time() - t0:.0f} s); cross-compiling tvm_ffi's Cython core ...")
    _build_core(root, [rt, libs.ffi_testing_library.parent], tools, fail)
    log(f"  armhf root assembled ({time.time() - t0:.0f} s)")


def rpc_library(root: Path) -> Path:
    """Where the root keeps ``libtvm_rpc_server.so`` (the launcher loads it before ``tvm.rpc``)."""
    return site_dir(root) / "tvm" / "lib" / "libtvm_rpc_server.so"
