"""Named compilation targets.

A :class:`NamedTarget` bundles what tvmprune needs to know about a CPU: the TVM target
(a JSON dict, as TVM 0.27 wants), the cross compiler that links its shared objects, its
SIMD width in fp32 lanes, and rough machine figures (clock, cores, FMA pipes, memory
bandwidth) used by the roofline performance model.

Users pick a target by name (``x86``, ``x86-avx2``, ``x86-avx512``, ``arm_cpu``,
``aarch64``) or pass a raw TVM target JSON string / dict.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import UnknownTargetError


@dataclass(frozen=True)
class NamedTarget:
    """A CPU target tvmprune can compile for.

    Attributes:
        name: short name used on the command line.
        description: one line for ``tvmprune targets``.
        target_dict: the TVM target as a JSON-compatible dict.
        vector_lanes: SIMD width in fp32 lanes (16 for AVX-512, 8 for AVX2, 4 for NEON).
        cross_compiler: C compiler used to link the exported ``.so`` (None: the host's ``cc``).
        arch: ``x86_64``, ``armv7`` or ``aarch64``; says whether this host can run the code.
        clock_ghz, cores, fma_units, mem_bandwidth_gbs: roofline figures (approximate;
            calibrated by measurement where available).
    """

    name: str
    description: str
    target_dict: dict[str, Any]
    vector_lanes: int
    cross_compiler: str | None
    arch: str
    clock_ghz: float = 2.5
    cores: int = 2
    fma_units: int = 2
    mem_bandwidth_gbs: float = 20.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tvm_target(self):
        """The :class:`tvm.target.Target` (imports TVM lazily)."""
        import tvm

        return tvm.target.Target(self.target_dict)

    @property
    def peak_gflops(self) -> float:
        """Peak fp32 GFLOP/s: lanes x 2 (FMA) x FMA pipes x clock x cores."""
        return self.vector_lanes * 2 * self.fma_units * self.clock_ghz * self.cores

    @property
    def runs_on_host(self) -> bool:
        """True when this machine can execute code built for the target: same architecture,
        and for x86 code with 16 fp32 lanes (AVX-512) a CPU that has AVX-512F (running it on
        an AVX2-only CPU dies with SIGILL)."""
        if self.arch != host_arch():
            return False
        return not (self.arch == "x86_64" and self.vector_lanes >= 16 and "avx512f" not in _cpu_flags())

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable summary (for meta.json and reports)."""
        return {
            "name": self.name,
            "target": self.target_dict,
            "vector_lanes": self.vector_lanes,
            "cross_compiler": self.cross_compiler,
            "arch": self.arch,
        }


def host_arch() -> str:
    """``x86_64``, ``aarch64`` or ``armv7`` for the machine running Python."""
    m = platform.machine().lower()
    if m in ("x86_64", "amd64"):
        return "x86_64"
    if m in ("aarch64", "arm64"):
        return "aarch64"
    if m.startswith("armv7"):
        return "armv7"
    return m


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _host_cores() -> int:
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _x86(name: str, description: str, mcpu: str, lanes: int, cores: int) -> NamedTarget:
    return NamedTarget(
        name=name,
        description=description,
        target_dict={"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu, "num-cores": cores},
        vector_lanes=lanes,
        cross_compiler=None,
        arch="x86_64",
        clock_ghz=2.5,
        cores=cores,
        fma_units=2,
        mem_bandwidth_gbs=20.0,
    )


def _arm_cpu() -> NamedTarget:
    return NamedTarget(
        name="arm_cpu",
        description="ARM Cortex-A7 (armv7l hard-float, NEON), the 1xN paper's board class",
        target_dict={
            "kind": "llvm",
            "device": "arm_cpu",
            "mtriple": "armv7l-linux-gnueabihf",
            "mcpu": "cortex-a7",
            "mattr": ["+neon", "+vfp4"],
            "mfloat-abi": "hard",
            "num-cores": 4,
        },
        vector_lanes=4,
        cross_compiler="arm-linux-gnueabihf-gcc",
        arch="armv7",
        clock_ghz=1.2,
        cores=4,
        fma_units=1,
        mem_bandwidth_gbs=2.0,
    )


def _aarch64() -> NamedTarget:
    return NamedTarget(
        name="aarch64",
        description="ARMv8-A Cortex-A72 class (aarch64, NEON), e.g. Raspberry Pi 4",
        target_dict={
            "kind": "llvm",
            "device": "arm_cpu",
            "mtriple": "aarch64-linux-gnu",
            "mcpu": "cortex-a72",
            "mattr": ["+neon"],
            "num-cores": 4,
        },
        vector_lanes=4,
        cross_compiler="aarch64-linux-gnu-gcc",
        arch="aarch64",
        clock_ghz=1.5,
        cores=4,
        fma_units=2,
        mem_bandwidth_gbs=4.0,
    )


def _host_x86() -> NamedTarget:
    flags = _cpu_flags()
    cores = _host_cores()
    if "avx512f" in flags:
        t = _x86("x86", "this machine (detected AVX-512)", "skylake-avx512", 16, cores)
    elif "avx2" in flags:
        t = _x86("x86", "this machine (detected AVX2)", "haswell", 8, cores)
    else:
        t = _x86("x86", "this machine (no AVX2 detected: generic x86-64 SSE)", "x86-64", 4, cores)
    return t


_STATIC = {
    "x86-avx2": lambda: _x86("x86-avx2", "x86-64 with AVX2 + FMA (Haswell and newer)", "haswell", 8, _host_cores()),
    "x86-avx512": lambda: _x86(
        "x86-avx512", "x86-64 with AVX-512 (Skylake-SP and newer)", "skylake-avx512", 16, _host_cores()
    ),
    "arm_cpu": _arm_cpu,
    "aarch64": _aarch64,
}

TARGET_NAMES: tuple[str, ...] = ("x86", "x86-avx2", "x86-avx512", "arm_cpu", "aarch64")


def list_targets() -> list[NamedTarget]:
    """All named targets, ``x86`` (the host) first."""
    return [get_target(n) for n in TARGET_NAMES]


def _from_dict(d: dict[str, Any]) -> NamedTarget:
    import tvm

    if d.get("kind") != "llvm":
        raise UnknownTargetError(
            f"target kind {d.get('kind')!r} is not supported: tvmprune compiles for CPUs, use "
            '{"kind": "llvm", "mtriple": ..., "mcpu": ...}'
        )
    try:
        tvm.target.Target(d)
    except Exception as e:  # TVM raises its own error types
        raise UnknownTargetError(f"TVM rejects the target {json.dumps(d)}: {e}") from None
    triple = str(d.get("mtriple", "x86_64-linux-gnu"))
    mattr = " ".join(d.get("mattr", []) if isinstance(d.get("mattr"), list) else [str(d.get("mattr", ""))])
    mcpu = str(d.get("mcpu", ""))
    if triple.startswith("aarch64"):
        arch, cc, lanes = "aarch64", "aarch64-linux-gnu-gcc", 4
    elif triple.startswith("arm") or triple.startswith("thumb"):
        arch, cc, lanes = "armv7", "arm-linux-gnueabihf-gcc", 4
    else:
        arch, cc = "x86_64", None
        avx512 = "avx512" in mattr or mcpu in ("skylake-avx512", "cascadelake", "icelake-server", "sapphirerapids",
                                                "znver4", "znver5", "tigerlake", "icelake-client")
        lanes = 16 if avx512 else 8 if ("avx2" in mattr or mcpu in ("haswell", "broadwell", "skylake", "znver2",
                                                                      "znver3", "znver1")) else 4
    if arch == host_arch():
        cc = None
    cores = int(d.get("num-cores", 4 if arch != "x86_64" else _host_cores()))
    return NamedTarget(
        name="custom",
        description=f"custom target {json.dumps(d)}",
        target_dict=dict(d),
        vector_lanes=lanes,
        cross_compiler=cc,
        arch=arch,
        cores=cores,
    )


def get_target(spec: "str | dict[str, Any] | NamedTarget") -> NamedTarget:
    """Resolve a target name, a TVM target JSON string or dict into a :class:`NamedTarget`.

    Raises:
        UnknownTargetError: unknown name (the message lists the known ones) or a JSON target
            TVM rejects.
    """
    if isinstance(spec, NamedTarget):
        return spec
    if isinstance(spec, dict):
        return _from_dict(spec)
    s = str(spec).strip()
    if s.startswith("{"):
        try:
            d = json.loads(s)
        except json.JSONDecodeError as e:
            raise UnknownTargetError(f"target JSON does not parse: {e}") from None
        return _from_dict(d)
    if s == "x86":
        return _host_x86()
    if s in _STATIC:
        return _STATIC[s]()
    if s.startswith("llvm"):
        raise UnknownTargetError(
            f"CLI target strings such as {s!r} are not accepted by TVM 0.27; pass a named target "
            f"({', '.join(TARGET_NAMES)}) or a JSON dict like "
            '\'{"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell"}\''
        )
    raise UnknownTargetError(
        f"unknown target {s!r}; known targets: {', '.join(TARGET_NAMES)} (or a TVM target JSON dict). "
        "Run `tvmprune targets` to see them."
    )


def with_cores(t: NamedTarget, cores: int) -> NamedTarget:
    """A copy of ``t`` that uses ``cores`` threads."""
    d = dict(t.target_dict)
    d["num-cores"] = cores
    return replace(t, target_dict=d, cores=cores)
