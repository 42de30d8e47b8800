"""What a kernel needs to know about its target: the resolved :class:`~tvmprune.target.NamedTarget`
and its register file (vector lanes, cores and the ISA's register count)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..target import NamedTarget


def resolve_target(target: Any) -> "NamedTarget":
    """A target name, TVM target JSON / dict or :class:`NamedTarget` -> :class:`NamedTarget`."""
    from ..target import get_target

    return get_target(target)


def n_vector_registers(t: "NamedTarget") -> int:
    """Architectural SIMD registers of a target (32 on AVX-512 / aarch64, 16 otherwise)."""
    if t.arch == "aarch64" or t.vector_lanes >= 16:
        return 32
    return 16


def has_fused_fma(t: "NamedTarget") -> bool:
    """Whether LLVM's code for the target fuses multiply-add: not on armv7, whose output
    multiplies and adds separately (``vmul.f32`` + ``vadd.f32`` on q registers, see the shared
    notes); x86 (FMA3 / AVX-512) and aarch64 (``fmla``) do."""
    return t.arch != "armv7"
