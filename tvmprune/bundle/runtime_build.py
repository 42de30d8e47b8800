"""Cross-build TVM's C++ runtime (``libtvm_ffi.so`` + ``libtvm_runtime.so``) from the installed wheels.

The apache-tvm and apache-tvm-ffi wheels ship the C++ sources of the runtime (``tvm/src/runtime``,
``tvm_ffi/src``) and their headers. This module compiles the subset a Relax VM needs to run a
float32 CPU model (module loading, tensors, thread pool, memory manager, VM) with a toolchain
from :mod:`tvmprune.bundle.toolchain`. The internal support headers the wheels lack are
tvmprune's own (``tvmprune/bundle/cxx``, see its README).

Results are cached per toolchain and TVM version in
``$TVMPRUNE_CACHE_DIR/runtime/<triple>-<tvm version>/`` (default ``~/.cache/tvmprune``):
``lib/libtvm_ffi.so``, ``lib/libtvm_runtime.so``; a stamp file holds a hash of everything that
went into the build, and the libraries are rebuilt only when it changes. Objects are compiled
to a temporary name and renamed, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

from ..cache_dir import cache_dir

import hashlib
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..errors import BundleError
from .toolchain import BundleToolchain

CXX_DIR = Path(__file__).parent / "cxx"

# tvm_ffi/src/ffi: the core library and its "extra" C++ API (module loading, JSON), as its CMakeLists.
FFI_SOURCES: tuple[str, ...] = tuple(
    ["backtrace.cc", "object.cc", "error.cc", "function.cc", "tensor.cc", "dtype.cc", "container.cc",
     "init_once.cc", "custom_allocator.cc"]
    + [f"extra/{n}.cc" for n in (
        "structural_equal", "structural_hash", "structural_visit", "structural_mutate", "visit_error_context",
        "json_parser", "json_writer", "serialization", "dataclass", "reflection_extra", "module",
        "library_module", "library_module_system_lib", "library_module_dynamic_lib", "env_context", "env_c_api")]
)

# tvm/src/runtime: what loading model.so into the Relax VM and running it on the CPU needs.
RUNTIME_SOURCES: tuple[str, ...] = (
    "const_loader_module.cc", "cpu_device_api.cc", "device_api.cc", "file_utils.cc", "logging.cc", "module.cc",
    "static_library.cc", "tensor.cc", "thread_pool.cc", "threading_backend.cc", "timer.cc", "workspace_pool.cc",
    "memory/memory_manager.cc", "vm/builtin.cc", "vm/bytecode.cc", "vm/executable.cc", "vm/vm.cc",
)

COMMON_FLAGS: tuple[str, ...] = ("-std=c++17", "-fPIC", "-O2", "-DNDEBUG", "-Wno-psabi")
FFI_DEFINES: tuple[str, ...] = (
    "-DTVM_FFI_EXPORTS", "-DTVM_FFI_USE_LIBBACKTRACE=0", "-DTVM_FFI_BACKTRACE_ON_SEGFAULT=0",
    "-DTVM_FFI_CMAKE_LITTLE_ENDIAN=1", "-fvisibility=hidden", "-fvisibility-inlines-hidden",
)

LIB_FFI = "libtvm_ffi.so"
LIB_RUNTIME = "libtvm_runtime.so"
STAMP = "build-stamp.json"


@dataclass(frozen=True)
class WheelSources:
    """Where the installed wheels keep the runtime's C++ sources and headers."""

    tvm_root: Path
    ffi_root: Path
    tvm_version: str
    ffi_version: str

    @property
    def runtime_src(self) -> Path:
        return self.tvm_root / "src" / "runtime"

    @property
    def ffi_src(self) -> Path:
        return self.ffi_root / "src" / "ffi"

    @property
    def include_dirs(self) -> list[Path]:
        return [self.tvm_root / "include", self.ffi_root / "include", self.ffi_root / "3rdparty" / "dlpack" / "include"]


def wheel_sources() -> WheelSources:
    """Locate the C++ sources of the installed apache-tvm / apache-tvm-ffi wheels.

    Raises:
        BundleError: a wheel lacks the sources (e.g. a build without ``src/``).
    """
    import tvm
    import tvm_ffi

    ws = WheelSources(Path(tvm.__file__).parent, Path(tvm_ffi.__file__).parent, tvm.__version__,
                      getattr(tvm_ffi, "__version__", "unknown"))
    for path in [ws.runtime_src / s for s in RUNTIME_SOURCES] + [ws.ffi_src / s for s in FFI_SOURCES]:
        if not path.is_file():
            raise BundleError(f"the installed TVM wheels lack {path}, needed to build the board runtime; "
                              "reinstall apache-tvm / apache-tvm-ffi from PyPI")
    return ws


def cache_root() -> Path:
    """tvmprune's cache directory (``$TVMPRUNE_CACHE_DIR`` or ``~/.cache/tvmprune``)."""
    return cache_dir()


def runtime_dir(toolchain: BundleToolchain, sources: WheelSources | None = None) -> Path:
    """``<cache>/runtime/<triple>-<tvm version>``: where the runtime for ``toolchain`` is cached."""
    ws = sources or wheel_sources()
    return cache_root() / "runtime" / f"{toolchain.triple}-{ws.tvm_version}"


def support_include_dirs(root: Path) -> list[Path]:
    """Include dirs that resolve the runtime's ``<tvm/support/...>``, ``"../support/..."`` and
    ``"../../support/..."`` includes to tvmprune's headers (``..`` is resolved against the
    include dir, so two empty anchor directories below a link to ``cxx/support`` do it)."""
    inc = root / "include"
    (inc / "anchor" / "anchor").mkdir(parents=True, exist_ok=True)
    link = inc / "support"
    if not link.exists():
        link.symlink_to(CXX_DIR / "support", target_is_directory=True)
    return [CXX_DIR, inc / "anchor", inc / "anchor" / "anchor"]


def _build_key(toolchain: BundleToolchain, ws: WheelSources) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([toolchain.cxx, toolchain.cpu_flags, COMMON_FLAGS, FFI_DEFINES, FFI_SOURCES,
                         RUNTIME_SOURCES, ws.tvm_version, ws.ffi_version]).encode())
    for header in sorted(CXX_DIR.rglob("*.h")):
        h.update(header.read_bytes())
    return h.hexdigest()[:16]


def _compile(cmd_prefix: Sequence[str], src: Path, obj: Path) -> None:
    tmp = obj.with_suffix(".o.tmp")
    proc = subprocess.run([*cmd_prefix, "-c", str(src), "-o", str(tmp)], capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BundleError(f"compiling {src} failed:\n{proc.stderr.strip()[-3000:]}")
    tmp.replace(obj)


def _compile_all(cmd_prefix: Sequence[str], src_dir: Path, names: Sequence[str], obj_dir: Path, jobs: int,
                 label: str) -> list[Path]:
    """Compile ``src_dir/name`` for each name (``jobs`` at a time); objects already there are kept."""
    from tqdm import tqdm

    obj_dir.mkdir(parents=True, exist_ok=True)
    sources = [src_dir / n for n in names]
    objs = [obj_dir / (n.replace("/", "_") + ".o") for n in names]
    todo = [(s, o) for s, o in zip(sources, objs) if not o.exists()]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool, \
            tqdm(total=len(todo), desc=label, unit="file", disable=not sys.stderr.isatty()) as bar:
        for fut in [pool.submit(_compile, cmd_prefix, s, o) for s, o in todo]:
            fut.result()
            bar.update(1)
    return objs


def _link(cxx: str, objs: list[Path], out: Path, extra: Sequence[str]) -> None:
    proc = subprocess.run([cxx, "-shared", "-o", str(out), *map(str, objs), *extra], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BundleError(f"linking {out.name} failed:\n{proc.stderr.strip()[-3000:]}")


@dataclass(frozen=True)
class RuntimeLibs:
    """A built runtime: ``lib/`` holds ``libtvm_ffi.so`` and ``libtvm_runtime.so``."""

    directory: Path
    toolchain: BundleToolchain
    include_dirs: tuple[Path, ...]
    build_seconds: float

    @property
    def lib_dir(self) -> Path:
        return self.directory / "lib"

    @property
    def libraries(self) -> list[Path]:
        return [self.lib_dir / LIB_FFI, self.lib_dir / LIB_RUNTIME]


def build_runtime(toolchain: BundleToolchain, jobs: int = 2, log: Callable[[str], None] | None = None) -> RuntimeLibs:
    """Build (or reuse the cached) ``libtvm_ffi.so`` + ``libtvm_runtime.so`` for ``toolchain``.

    Args:
        toolchain: compiler and flags of the board's architecture.
        jobs: compiler processes at a time.
        log: progress messages.

    Raises:
        BundleError: the compiler is missing, or a source does not compile / link.
    """
    say = log or (lambda s: None)
    ws = wheel_sources()
    cxx = toolchain.require_compiler()
    root = runtime_dir(toolchain, ws)
    key = _build_key(toolchain, ws)
    build = root / "build" / key
    includes = tuple(support_include_dirs(root) + ws.include_dirs)
    stamp = root / STAMP
    libs = RuntimeLibs(root, toolchain, includes, 0.0)
    if stamp.is_file() and json.loads(stamp.read_text()).get("key") == key and all(p.is_file() for p in libs.libraries):
        return libs
    say(f"building the TVM runtime for {toolchain.triple} from the installed wheels into {root} "
        f"({jobs} jobs, a few minutes once)")
    t0 = time.time()
    base = [cxx, *COMMON_FLAGS, *toolchain.cpu_flags]
    inc_flags = [f"-I{d}" for d in includes]
    libs.lib_dir.mkdir(parents=True, exist_ok=True)
    ffi_objs = _compile_all([*base, *FFI_DEFINES, *inc_flags], ws.ffi_src, FFI_SOURCES,
                            build / "ffi", jobs, f"libtvm_ffi ({toolchain.triple})")
    _link(cxx, ffi_objs, libs.lib_dir / LIB_FFI, ["-Wl,-soname," + LIB_FFI, "-lpthread", "-ldl"])
    rt_objs = _compile_all([*base, *inc_flags], ws.runtime_src, RUNTIME_SOURCES,
                           build / "runtime", jobs, f"libtvm_runtime ({toolchain.triple})")
    _link(cxx, rt_objs, libs.lib_dir / LIB_RUNTIME,
          ["-Wl,-soname," + LIB_RUNTIME, f"-L{libs.lib_dir}", "-ltvm_ffi", "-lpthread", "-ldl",
           "-Wl,--no-undefined", "-Wl,-rpath,$ORIGIN"])
    seconds = time.time() - t0
    stamp.write_text(json.dumps({"key": key, "tvm": ws.tvm_version, "tvm_ffi": ws.ffi_version,
                                 "build_seconds": round(seconds, 1), "jobs": jobs}, indent=2))
    shutil.rmtree(root / "build", ignore_errors=True)
    say(f"built {', '.join(p.name for p in libs.libraries)} in {seconds:.0f} s")
    return RuntimeLibs(root, toolchain, includes, seconds)
