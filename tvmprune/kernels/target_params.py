"""What a kernel needs to know about its target: the resolved :class:`~tvmprune.target.NamedTarget`,
its register file (vector lanes, cores and the ISA's register count) and its per-core caches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..target import NamedTarget

# per-core data caches when the target does not name them (``extra["l1_bytes"]`` / ``["l2_bytes"]``):
# AVX-512 parts (Zen4/5, Ice Lake and later) have >= 32 KiB L1d and >= 1 MiB L2; the others 32 KiB / 256 KiB
_L1_BYTES = 32 * 1024
_L2_BYTES_WIDE, _L2_BYTES = 1024 * 1024, 256 * 1024


def resolve_target(target: Any) -> "NamedTarget":
    """A target name, TVM target JSON / dict or :class:`NamedTarget` -> :class:`NamedTarget`."""
    from ..target import get_target

    return get_target(target)


def n_vector_registers(t: "NamedTarget") -> int:
    """Architectural SIMD registers of a target (32 on AVX-512 / aarch64, 16 otherwise)."""
    if t.arch == "aarch64" or t.vector_lanes >= 16:
        return 32
    return 16


def l1_bytes(t: "NamedTarget") -> int:
    """Per-core L1 data cache in bytes (``t.extra["l1_bytes"]`` or a default for the ISA)."""
    return int(t.extra.get("l1_bytes", _L1_BYTES))


def l2_bytes(t: "NamedTarget") -> int:
    """Per-core L2 cache in bytes (``t.extra["l2_bytes"]`` or a default for the ISA)."""
    return int(t.extra.get("l2_bytes", _L2_BYTES_WIDE if t.vector_lanes >= 16 else _L2_BYTES))
