"""Cross-build TVM's RPC runtime for an emulated board: ``libtvm_rpc_server.so`` + ``libtvm_ffi_testing.so``.

TVM's Python RPC server (``tvm.rpc.server``) drives the C++ RPC endpoint (``rpc.ServerLoop``,
sessions, remote time evaluators) in ``tvm/src/runtime/rpc``. The bundle's runtime
(:mod:`.runtime_build`) leaves it out; this module compiles it, from the same wheel sources and
against the bundle's ``libtvm_runtime.so`` / ``libtvm_ffi.so``, into a library the board's RPC
launcher loads before it imports ``tvm.rpc``. ``libtvm_ffi_testing.so`` is what tvm_ffi's
Cython core links against. The support headers the RPC sources need and the wheel lacks are
tvmprune's own (``tvmprune/bundle/rpc_cxx``, see its README).

Cached in ``$TVMPRUNE_CACHE_DIR/runtime/<triple>-<tvm version>-rpc/lib`` with a stamp of its
inputs (which include the bundle runtime's build key), like the runtime itself.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import BundleError
from . import runtime_build as rb
from .toolchain import BundleToolchain

RPC_CXX_DIR = Path(__file__).parent / "rpc_cxx"

# tvm/src/runtime/rpc: the endpoint, TCP server loop, sessions and remote device / module API.
RPC_SOURCES: tuple[str, ...] = tuple(f"rpc/{n}.cc" for n in (
    "rpc_channel", "rpc_device_api", "rpc_endpoint", "rpc_event_impl", "rpc_local_session", "rpc_module",
    "rpc_server_env", "rpc_session", "rpc_socket_impl"))
FFI_TESTING_SOURCES: tuple[str, ...] = ("testing/testing.cc",)

LIB_RPC = "libtvm_rpc_server.so"
LIB_FFI_TESTING = "libtvm_ffi_testing.so"


@dataclass(frozen=True)
class RpcLibs:
    """The board's RPC libraries and the runtime they were linked against."""

    directory: Path
    runtime: rb.RuntimeLibs

    @property
    def rpc_library(self) -> Path:
        return self.directory / "lib" / LIB_RPC

    @property
    def ffi_testing_library(self) -> Path:
        return self.directory / "lib" / LIB_FFI_TESTING


def rpc_dir(toolchain: BundleToolchain) -> Path:
    """``<cache>/runtime/<triple>-<tvm version>-rpc``."""
    base = rb.runtime_dir(toolchain)
    return base.with_name(base.name + "-rpc")


def _rpc_include_dirs(root: Path) -> list[Path]:
    """Include dirs resolving the RPC sources' ``"../../support/..."`` to ``rpc_cxx/support``
    (the same two-anchor trick as :func:`.runtime_build.support_include_dirs`)."""
    inc = root / "include"
    (inc / "anchor" / "anchor").mkdir(parents=True, exist_ok=True)
    link = inc / "support"
    if link.is_symlink() and link.resolve() != (RPC_CXX_DIR / "support").resolve():
        link.unlink()
    if not link.exists():
        link.symlink_to(RPC_CXX_DIR / "support", target_is_directory=True)
    return [inc / "anchor", inc / "anchor" / "anchor"]


def _key(runtime: rb.RuntimeLibs) -> str:
    h = hashlib.sha256()
    stamp = json.loads((runtime.directory / rb.STAMP).read_text())
    h.update(json.dumps([stamp.get("key"), RPC_SOURCES, FFI_TESTING_SOURCES]).encode())
    for header in sorted(RPC_CXX_DIR.rglob("*.h")):
        h.update(header.read_bytes())
    return h.hexdigest()[:16]


def build_rpc_libs(toolchain: BundleToolchain, jobs: int = 2, log: Callable[[str], None] | None = None) -> RpcLibs:
    """Build (or reuse) the bundle runtime of ``toolchain``, then the RPC server library and
    ``libtvm_ffi_testing.so`` linked against it.

    Raises:
        BundleError: the compiler is missing, or a source does not compile / link.
    """
    say = log or (lambda s: None)
    runtime = rb.build_runtime(toolchain, jobs=jobs, log=log)
    ws = rb.wheel_sources()
    root = rpc_dir(toolchain)
    libs = RpcLibs(root, runtime)
    key = _key(runtime)
    stamp = root / rb.STAMP
    if stamp.is_file() and json.loads(stamp.read_text()).get("key") == key and libs.rpc_library.is_file() \
            and libs.ffi_testing_library.is_file():
        return libs
    for src in [ws.runtime_src / s for s in RPC_SOURCES] + [ws.ffi_src / s for s in FFI_TESTING_SOURCES]:
        if not src.is_file():
            raise BundleError(f"the installed TVM wheels lack {src}, needed for the board's RPC server")
    say(f"building TVM's RPC server for {toolchain.triple} into {root} ({jobs} jobs, a few minutes once)")
    t0 = time.time()
    cxx = toolchain.require_compiler()
    inc_flags = [f"-I{d}" for d in [rb.CXX_DIR, *_rpc_include_dirs(root), *ws.include_dirs]]
    base = [cxx, *rb.COMMON_FLAGS, *toolchain.cpu_flags, *inc_flags]
    lib_dir = root / "lib"
    lib_dir.mkdir(parents=True, exist_ok=True)
    build = root / "build" / key
    link = [f"-L{runtime.lib_dir}", "-ltvm_ffi", "-lpthread", "-ldl", "-Wl,--no-undefined", "-Wl,-rpath,$ORIGIN"]
    objs = rb._compile_all(base, ws.ffi_src, FFI_TESTING_SOURCES, build / "ffi_testing", jobs, "libtvm_ffi_testing")
    rb._link(cxx, objs, libs.ffi_testing_library, ["-Wl,-soname," + LIB_FFI_TESTING, *link])
    objs = rb._compile_all(base, ws.runtime_src, RPC_SOURCES, build / "rpc", jobs, f"TVM RPC ({toolchain.triple})")
    rb._link(cxx, objs, libs.rpc_library, ["-Wl,-soname," + LIB_RPC, "-ltvm_runtime", *link])
    seconds = time.time() - t0
    stamp.write_text(json.dumps({"key": key, "build_seconds": round(seconds, 1), "jobs": jobs}, indent=2))
    shutil.rmtree(root / "build", ignore_errors=True)
    say(f"built {LIB_RPC}, {LIB_FFI_TESTING} in {seconds:.0f} s")
    return libs
