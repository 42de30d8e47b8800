"""The C++ toolchain and emulator of each CPU architecture a runtime bundle can be built for.

A :class:`BundleToolchain` says how to compile C++ for a board (Debian's cross g++ and its
flags), where that compiler's target libraries live (the ``-L`` sysroot of qemu user mode),
and how to run the board's binaries on this machine (qemu user mode, or natively).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from ..errors import BundleError
from ..target import NamedTarget, host_arch


@dataclass(frozen=True)
class BundleToolchain:
    """How to build and run C++ for one architecture.

    Attributes:
        arch: ``armv7``, ``aarch64`` or ``x86_64`` (as :attr:`NamedTarget.arch`).
        triple: GNU triple, also the cache directory's name (``arm-linux-gnueabihf``).
        cxx: the C++ compiler (``arm-linux-gnueabihf-g++``; ``g++`` for the host).
        cpu_flags: code generation flags for the board class.
        debian_package: the Debian package that provides ``cxx``.
        qemu: qemu user-mode emulator that runs the board's binaries here (None: native).
        qemu_cpu: the CPU qemu emulates (``cortex-a7``).
        sysroot: the cross toolchain's target root (qemu's ``-L``: ld.so, libc, libstdc++).
    """

    arch: str
    triple: str
    cxx: str
    cpu_flags: tuple[str, ...]
    debian_package: str
    qemu: str | None
    qemu_cpu: str | None
    sysroot: str | None

    @property
    def runs_natively(self) -> bool:
        """True when this machine executes the toolchain's binaries without emulation."""
        return self.arch == host_arch()

    def require_compiler(self) -> str:
        """Path of :attr:`cxx`.

        Raises:
            BundleError: it is not installed (the message says how to install it).
        """
        path = shutil.which(self.cxx)
        if path is None:
            raise BundleError(
                f"the C++ compiler {self.cxx} for {self.arch} is not installed; run scripts/build_arm_runtime.sh "
                f"(installs Debian's {self.debian_package}) or `apt-get install {self.debian_package}`"
            )
        return path

    def emulator_command(self) -> list[str]:
        """The command prefix that runs one of the board's executables here (empty when native).

        Raises:
            BundleError: qemu user mode is needed but not installed.
        """
        if self.runs_natively:
            return []
        if self.qemu is None or shutil.which(self.qemu) is None:
            raise BundleError(
                f"running {self.arch} code here needs {self.qemu or 'qemu user mode'}; "
                "install it with scripts/build_arm_runtime.sh or `apt-get install qemu-user-static`"
            )
        cmd = [self.qemu]
        if self.qemu_cpu:
            cmd += ["-cpu", self.qemu_cpu]
        if self.sysroot:
            cmd += ["-L", self.sysroot]
        return cmd


def _debian_cross(arch: str, triple: str, cpu_flags: tuple[str, ...], qemu_arch: str,
                  qemu_cpu: str) -> BundleToolchain:
    """A Debian cross toolchain: ``<triple>-g++`` from ``g++-<triple>``, its sysroot in
    ``/usr/<triple>``, run under ``qemu-<qemu_arch>-static``."""
    return BundleToolchain(arch=arch, triple=triple, cxx=f"{triple}-g++", cpu_flags=cpu_flags,
                           debian_package=f"g++-{triple}", qemu=f"qemu-{qemu_arch}-static", qemu_cpu=qemu_cpu,
                           sysroot=f"/usr/{triple}")


_TOOLCHAINS = {
    "armv7": _debian_cross("armv7", "arm-linux-gnueabihf", ("-mcpu=cortex-a7", "-mfpu=neon-vfpv4", "-mfloat-abi=hard"),
                           "arm", "cortex-a7"),
    "aarch64": _debian_cross("aarch64", "aarch64-linux-gnu", ("-march=armv8-a",), "aarch64", "cortex-a72"),
    "x86_64": BundleToolchain(
        arch="x86_64",
        triple="x86_64-linux-gnu",
        cxx="g++",
        cpu_flags=(),
        debian_package="g++",
        qemu="qemu-x86_64-static",
        qemu_cpu=None,
        sysroot=None,
    ),
}

ARCHES: tuple[str, ...] = tuple(_TOOLCHAINS)


def toolchain_for(target: "NamedTarget | str") -> BundleToolchain:
    """The toolchain of a target (a :class:`NamedTarget` or an arch name such as ``armv7``).

    Raises:
        BundleError: no toolchain is known for the target's architecture.
    """
    arch = target.arch if isinstance(target, NamedTarget) else str(target)
    if arch not in _TOOLCHAINS:
        raise BundleError(f"no runtime bundle for architecture {arch!r}; bundles exist for {', '.join(ARCHES)}")
    return _TOOLCHAINS[arch]
