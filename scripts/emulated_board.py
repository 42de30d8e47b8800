#!/usr/bin/env python3
"""Emulated aarch64 and armv7 (Cortex-A7) boards for functional RPC tuning tests (qemu user mode, no hardware).

What it does for aarch64 (``--arch aarch64``, the default):

1. builds (once) an arm64 root in ``~/.cache/tvmprune/aarch64-root`` (``TVMPRUNE_CACHE`` overrides
   the cache dir): ``mmdebstrap --variant=extract`` of Debian bookworm's python3.11 and its
   libraries, then the host's pip installs the aarch64 wheels of apache-tvm 0.27.0.post1,
   apache-tvm-ffi 0.1.14.post1 and numpy into ``ROOT/opt/pysite`` (``--platform
   manylinux_2_28_aarch64 --only-binary=:all: --target``); nothing is emulated while building;
2. starts a TVM RPC tracker on 127.0.0.1 (host Python) and the TVM RPC server under
   ``qemu-aarch64-static -L ROOT`` registered to it with ``--key`` (default ``aarch64-emulated``).

For armv7 (``--arch armv7``): no armv7 TVM wheel exists, so the root in
``~/.cache/tvmprune/armv7-root`` is assembled by ``armv7_board_root.py`` (armhf Debian python3.11
and numpy, the wheels' pure-Python packages, the cross-built runtime and RPC server, a
cross-compiled tvm_ffi core); the server runs under ``qemu-arm-static -cpu cortex-a7`` with
``--key`` (default ``cortex-a7``).

Pitfalls handled (see shared notes): binfmt_misc is not mounted, so the stock ``rpc_server``
cannot exec its Popen worker (``Exec format error``): the server is started in-process by a
small launcher (sessions fork); ``TVM_USE_RUNTIME_LIB=1`` and ``--load-library
libtvm_runtime_extra.so`` provide ``tvm.contrib.random.random_fill_for_measure``.

Timings measured on this board are 12-15x slower than real hardware and mean NOTHING; use it
to check that tuning over RPC works and that the tuned code is correct.

Usage::

    python scripts/emulated_board.py build          # build / check the root
    python scripts/emulated_board.py serve          # tracker + server until Ctrl-C (prints the ports)
    tvmprune tune --model tiny_cnn --input-shape 1x3x32x32 --prune 1x4@0.8 --target aarch64 \\
        --tracker 127.0.0.1:PORT --key aarch64-emulated --trials 16 --emulated
    python scripts/emulated_board.py serve --arch armv7 --tracker-port 9190
    tvmprune tune ... --target arm_cpu --tracker 127.0.0.1:9190 --key cortex-a7 --emulated
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
import armv7_board_root  # noqa: E402

TVM_VERSION = "0.27.0.post1"
TVM_FFI_VERSION = "0.1.14.post1"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
PACKAGES = ["python3.11", "libstdc++6"]  # apt resolves their libraries
QEMU = "qemu-aarch64-static"
LAUNCHER = r'''
import argparse, ctypes, multiprocessing, sys, threading
p = argparse.ArgumentParser()
p.add_argument("--host"); p.add_argument("--port", type=int); p.add_argument("--port-end", type=int)
p.add_argument("--tracker"); p.add_argument("--key"); p.add_argument("--load-library", default=None)
p.add_argument("--preload", action="append", default=[])
a = p.parse_args()
multiprocessing.set_start_method("fork")
import tvm
for lib in a.preload:  # registers rpc.* functions before tvm.rpc reads them
    ctypes.CDLL(lib, ctypes.RTLD_GLOBAL)
from tvm.rpc.server import PopenRPCServerState
th, tp = a.tracker.rsplit(":", 1)
st = PopenRPCServerState(a.host, a.port, a.port_end, False, (th, int(tp)), a.key, a.load_library)
print("tvmprune-emulated-board: serving on port", st.port, flush=True)
st.thread.join()
'''


class BoardUnavailable(RuntimeError):
    """This machine cannot build or run the emulated board (the message says why)."""


class BoardBuildError(RuntimeError):
    """The tools and network are there but building or starting the board failed: a defect to
    fix, not a reason to skip (tests let it fail)."""


@dataclass(frozen=True)
class BoardKind:
    """What differs between the emulated boards: emulator, CPU, linker, root and default key."""

    arch: str
    qemu: str
    qemu_cpu: str | None
    cross_gcc: str
    gcc_package: str
    root_name: str
    default_key: str
    python: str = "usr/bin/python3.11"


KINDS = {
    "aarch64": BoardKind("aarch64", QEMU, None, "aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu", "aarch64-root",
                         "aarch64-emulated"),
    "armv7": BoardKind("armv7", "qemu-arm-static", "cortex-a7", "arm-linux-gnueabihf-gcc",
                       "g++-arm-linux-gnueabihf", "armv7-root", "cortex-a7"),
}


def cache_dir() -> Path:
    return Path(os.environ.get("TVMPRUNE_CACHE", Path.home() / ".cache" / "tvmprune"))


def default_root(arch: str = "aarch64") -> Path:
    return cache_dir() / KINDS[arch].root_name


def _site(root: Path) -> Path:
    return root / "opt" / "pysite"


def _net_ok(host: str, port: int = 443, timeout: float = 5.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def unavailable_reason(root: Path | None = None, arch: str = "aarch64") -> str | None:
    """None when the board can be built (or is built) and run here; else why not."""
    kind = KINDS[arch]
    root = root or default_root(arch)
    if shutil.which(kind.qemu) is None:
        return f"{kind.qemu} not found (apt-get install qemu-user-static)"
    if shutil.which(kind.cross_gcc) is None:
        return f"{kind.cross_gcc} not found (apt-get install {kind.gcc_package}): needed to link candidates"
    if (root / ".complete").is_file():
        return None
    if arch == "armv7" and shutil.which(armv7_board_root.CXX) is None:
        return f"{armv7_board_root.CXX} not found (scripts/install_toolchains.sh): needed to build the armv7 runtime"
    if shutil.which("mmdebstrap") is None:
        return "mmdebstrap not found (apt-get install mmdebstrap) and no prebuilt root in " + str(root)
    if not _net_ok("pypi.org") or not _net_ok("files.pythonhosted.org"):
        return f"no network access to PyPI (needed once to fetch the {arch} board's Python packages)"
    if not _net_ok("deb.debian.org", 80):
        return f"no network access to deb.debian.org (needed once to fetch the {arch} python3.11)"
    return None


def ensure_root(root: Path | None = None, log: Any = print, arch: str = "aarch64") -> Path:
    """Build the board's root if it is not complete yet; returns it."""
    root = root or default_root(arch)
    if (root / ".complete").is_file():
        return root
    why = unavailable_reason(root, arch)
    if why:
        raise BoardUnavailable(why)
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if arch == "armv7":
        armv7_board_root.build_armv7_root(root, cache_dir() / "board-tools", BoardBuildError, log)
        return _check_root(root, arch, t0, log)
    log(f"building the arm64 root in {root} (mmdebstrap --variant=extract) ...")
    cmd = ["mmdebstrap", "--variant=extract", "--architectures=arm64", "--include=" + ",".join(PACKAGES),
           DEBIAN_SUITE, str(root), DEBIAN_MIRROR]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise BoardUnavailable(f"mmdebstrap failed: {(r.stderr or r.stdout).strip().splitlines()[-3:]}")
    log(f"  root extracted ({time.time() - t0:.0f} s); installing aarch64 wheels with the host's pip ...")
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--platform", "manylinux_2_28_aarch64", "--platform", "manylinux2014_aarch64",
           "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
           "--only-binary=:all:", "--target", str(_site(root)),
           f"apache-tvm=={TVM_VERSION}", f"apache-tvm-ffi=={TVM_FFI_VERSION}", "numpy", "psutil", "cloudpickle",
           "tornado"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise BoardUnavailable(f"pip could not fetch the aarch64 wheels: {(r.stderr or r.stdout).strip()[-600:]}")
    return _check_root(root, arch, t0, log)


def _check_root(root: Path, arch: str, t0: float, log: Any) -> Path:
    """Import tvm and numpy under qemu; marks the root complete."""
    out = run_in_root(root, ["-c", "import tvm, numpy; print(tvm.__version__)"], timeout=600, arch=arch)
    if out.returncode != 0:
        raise BoardBuildError(f"python under qemu cannot import tvm: {out.stderr.strip()[-600:]}")
    (root / ".complete").write_text(out.stdout.strip() + "\n")
    log(f"  {arch} root ready ({time.time() - t0:.0f} s): tvm {out.stdout.strip()} under qemu")
    return root


def board_env(root: Path, arch: str = "aarch64") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(_site(root))
    env["PYTHONNOUSERSITE"] = "1"
    env["TVM_USE_RUNTIME_LIB"] = "1"
    env["QEMU_LD_PREFIX"] = str(root)
    if arch == "armv7":
        env["LD_LIBRARY_PATH"] = ":".join(str(root / d) for d in armv7_board_root.LIBRARY_DIRS)
    return env


def board_python(root: Path, arch: str = "aarch64") -> list[str]:
    kind = KINDS[arch]
    cpu = ["-cpu", kind.qemu_cpu] if kind.qemu_cpu else []
    return [shutil.which(kind.qemu) or kind.qemu, *cpu, "-L", str(root), str(root / kind.python)]


def run_in_root(root: Path, args: list[str], timeout: float = 300,
                arch: str = "aarch64") -> subprocess.CompletedProcess:
    return subprocess.run(board_python(root, arch) + args, capture_output=True, text=True,
                          env=board_env(root, arch), timeout=timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmulatedBoard:
    """Tracker (host) + RPC server (qemu aarch64 or armv7) on loopback; a context manager.

    Attributes:
        tracker_port: where ``--tracker 127.0.0.1:PORT`` points.
        key: the server's device key (default: the kind's, ``aarch64-emulated`` / ``cortex-a7``).
    """

    def __init__(self, root: Path | None = None, key: str | None = None, tracker_port: int | None = None,
                 start_timeout: float = 300.0, arch: str = "aarch64") -> None:
        self.arch = arch
        self.root = root or default_root(arch)
        self.key = key or KINDS[arch].default_key
        self.tracker_port = tracker_port or _free_port()
        self.start_timeout = start_timeout
        self.procs: list[subprocess.Popen] = []
        self.logdir = Path(tempfile.mkdtemp(prefix="tvmprune_board_"))

    def __enter__(self) -> "EmulatedBoard":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        tlog = open(self.logdir / "tracker.log", "w")
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(self.tracker_port),
             "--port-end", str(self.tracker_port + 1)], stdout=tlog, stderr=subprocess.STDOUT,
            start_new_session=True))
        extra = next(iter(_site(self.root).glob("tvm/lib/libtvm_runtime_extra.so")), None)
        sport = _free_port()
        slog = open(self.logdir / "server.log", "w")
        launcher = self.root / "opt" / "tvmprune_rpc_launcher.py"
        launcher.write_text(LAUNCHER)
        cmd = board_python(self.root, self.arch) + [
            str(launcher), "--host", "127.0.0.1", "--port", str(sport),
            "--port-end", str(sport + 1), "--tracker", f"127.0.0.1:{self.tracker_port}", "--key", self.key]
        if extra is not None:
            cmd += ["--load-library", str(extra)]
        if self.arch == "armv7":
            cmd += ["--preload", str(armv7_board_root.rpc_library(self.root))]
        self.procs.append(subprocess.Popen(cmd, stdout=slog, stderr=subprocess.STDOUT,
                                           env=board_env(self.root, self.arch), start_new_session=True,
                                           cwd=str(self.logdir)))
        self._wait_registered()

    def _wait_registered(self) -> None:
        from tvmprune.errors import RPCConnectionError
        from tvmprune.tune.measure import RemoteSpec, check_tracker

        deadline = time.time() + self.start_timeout
        last = None
        while time.time() < deadline:
            if any(p.poll() is not None for p in self.procs):
                break
            try:
                check_tracker(RemoteSpec("127.0.0.1", self.tracker_port, self.key), timeout=30)
                return
            except RPCConnectionError as e:
                last = e
                time.sleep(2)
        log = (self.logdir / "server.log").read_text()[-1500:]
        self.stop()
        raise BoardBuildError(f"the emulated RPC server did not register ({last}); server log:\n{log}")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            p.wait()
        self.procs = []

    def run_kernel(self, func: Any, consts: list, target: Any, inputs: list) -> Any:
        """Run a scheduled kernel on the board (cross-compiled, uploaded); returns ``out`` as numpy."""
        import numpy as np
        import tvm
        from tvm import rpc
        from tvm.support import cc

        from tvmprune.tune.measure import arg_info

        mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
        lib = tvm.compile(mod, target=target.tvm_target)
        so = str(self.logdir / "check.so")
        lib.export_library(so, fcompile=cc.cross_compiler(target.cross_compiler))
        sess = rpc.connect_tracker("127.0.0.1", self.tracker_port).request(self.key, session_timeout=600)
        sess.upload(so)
        rlib = sess.load_module("check.so")
        dev = sess.cpu(0)
        info = arg_info(func)
        out = np.zeros(info[-1][2], dtype=info[-1][1])
        args = [inputs[0], *consts, *inputs[1:], out]
        targs = [tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in args]
        rlib["main"](*targs)
        return targs[-1].numpy()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["build", "serve", "check"])
    p.add_argument("--arch", choices=sorted(KINDS), default="aarch64", help="the board (default aarch64)")
    p.add_argument("--root", default=None, help="the board's root (default ~/.cache/tvmprune/<arch>-root)")
    p.add_argument("--key", default=None, help="device key (default aarch64-emulated / cortex-a7)")
    p.add_argument("--tracker-port", type=int, default=9190)
    args = p.parse_args(argv)
    root = Path(args.root) if args.root else default_root(args.arch)
    if args.action == "check":
        why = unavailable_reason(root, args.arch)
        print(why or "ok")
        return 0 if why is None else 1
    try:
        t0 = time.time()
        ensure_root(root, arch=args.arch)
    except (BoardUnavailable, BoardBuildError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.action == "build":
        print(f"{args.arch} root ready: {root} ({time.time() - t0:.0f} s)")
        return 0
    with EmulatedBoard(root, key=args.key, tracker_port=args.tracker_port, arch=args.arch) as b:
        print(f"emulated {args.arch} board: --tracker 127.0.0.1:{b.tracker_port} --key {b.key} --emulated  "
              f"(logs {b.logdir}); Ctrl-C stops it. Its timings mean nothing.", flush=True)
        try:
            while all(pr.poll() is None for pr in b.procs):
                time.sleep(1)
            print("a board process exited; see the logs", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
