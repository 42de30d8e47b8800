"""The storage format of a layer's weights, and the layer op: one spelling each, used everywhere.

:class:`Format` is what plans (``LayerPlan.fmt``), kernels (``KernelInstance.format``), the
perf model (keys of ``predict_ms``), the kernel family registry and reports use. Members are
strings (``Format.BSR == "1xN"``), so JSON and older comparisons with plain strings keep working.
"""

from __future__ import annotations

from enum import StrEnum


class Format(StrEnum):
    """Weight storage format of one conv / linear layer.

    DENSE: dense weights (OHWI/HWIO conv, ``[out, in]`` linear).
    DEPTHWISE: dense depthwise conv (groups == Cin == Cout).
    BSR: 1xN block sparse rows (N output channels share a reduction index), vector over N.
    BSR_SPATIAL: 1xN blocks, vector along the output width (for N smaller than the vector).
    CSR: unstructured compressed sparse rows.
    INTERSPACE: an interspace-pruned KxK conv as basis conv + sparse (CSR or 1xN) 1x1 conv.
    RELAX: no kernel; the layer stays a Relax op.
    """

    DENSE = "dense"
    DEPTHWISE = "depthwise"
    BSR = "1xN"
    BSR_SPATIAL = "1xN-spatial"
    CSR = "csr"
    GROUPED = "grouped"
    INTERSPACE = "interspace"
    RELAX = "relax"

    @classmethod
    def _missing_(cls, value: object) -> "Format | None":
        # ``sparse_linear(fmt="bsr")`` is the linear-algebra name of 1xN blocks
        return cls.BSR if value == "bsr" else None

    @property
    def blocked(self) -> bool:
        """Whether the format has a block size N (1xN families)."""
        return self in (Format.BSR, Format.BSR_SPATIAL)

    def label(self, n: int = 0) -> str:
        """The format as users see it: ``dense``, ``csr``, ``1x8``, ``1x4-spatial`` ..."""
        if self.blocked:
            return f"1x{n}" + self.value[len("1xN"):]
        return self.value


class LayerOp(StrEnum):
    """The op of a layer that has kernels."""

    CONV2D = "conv2d"
    LINEAR = "linear"
