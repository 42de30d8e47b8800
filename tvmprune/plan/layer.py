"""What a planner sees of one layer (:class:`LayerInfo`) and what it decides (:class:`LayerPlan`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..kernels.base import ConvSpec, KernelInstance
from ..kernels.format import Format, LayerOp
from ..target import NamedTarget

if TYPE_CHECKING:
    from ..kernels.interspace_conv2d import InterspaceFactors

BLOCK_SIZES = (32, 16, 8, 4, 2)


@dataclass
class LayerInfo:
    """What the planner sees of one conv / linear layer.

    ``weight`` is in PyTorch layout: conv ``[Cout, Cin/groups, KH, KW]``, linear ``[out, in]``.
    ``block_n`` is the largest N in (32, 16, 8, 4, 2) for which the weight is exactly 1xN
    block-structured at a density below 1 (0 when none). ``interspace``: the layer's
    interspace factors (coefficients, basis; attached by the lower stage) when it was
    interspace-pruned; ``weight`` is then the reconstructed ``c * B``.
    """

    index: int
    name: str
    op: LayerOp
    weight: np.ndarray
    spec: ConvSpec | None = None  # conv only
    batch: int = 1  # linear only
    bias: np.ndarray | None = None
    activation: str | None = None
    residual: bool = False
    interspace: "InterspaceFactors | None" = None

    def __post_init__(self) -> None:
        self.op = LayerOp(self.op)

    @property
    def density(self) -> float:
        return float(np.count_nonzero(self.weight)) / max(self.weight.size, 1)

    @property
    def shape_str(self) -> str:
        if self.op == LayerOp.LINEAR:
            return f"linear {self.weight.shape[1]}->{self.weight.shape[0]}"
        if self.spec is None:
            return f"conv weight {'x'.join(map(str, self.weight.shape))}"
        s = self.spec
        g = f" g{s.groups}" if s.groups > 1 else ""
        st = f"/s{s.stride[0]}" if s.stride[0] > 1 else ""
        return f"conv {s.cin}->{s.cout} {s.kh}x{s.kw}{st}{g} @{s.in_h}x{s.in_w}"

    @property
    def dense_flops(self) -> int:
        if self.op == LayerOp.LINEAR:
            return 2 * self.batch * self.weight.size
        if self.spec is None:
            return 0
        return self.spec.dense_flops

    @property
    def groups(self) -> int:
        """Conv groups (1 for linear layers)."""
        return self.spec.groups if self.spec is not None else 1

    @property
    def is_depthwise(self) -> bool:
        s = self.spec
        return s is not None and s.groups > 1 and s.groups == s.cin == s.cout

    @property
    def data_shape(self) -> tuple[int, ...]:
        """Shape of the kernel's ``data`` argument: NHWC input for convs, ``[B, in]`` for linear layers."""
        return self.spec.in_shape if self.spec is not None else (self.batch, self.weight.shape[1])

    @property
    def block_n(self) -> int:
        return detect_block_n(self.weight)


def detect_block_n(weight: np.ndarray) -> int:
    """Largest N in (32, 16, 8, 4, 2) such that ``weight`` is 1xN block-sparse (0 if none).

    A block is N consecutive output channels (rows of dim 0) at one reduction index; the
    weight qualifies when it has at least one zero and its zero pattern is constant within
    blocks. The tail (Cout not divisible by N) is allowed to be a shorter block.
    """
    cout = weight.shape[0]
    nz = (weight.reshape(cout, -1) != 0)
    if nz.all():
        return 0
    for n in BLOCK_SIZES:
        if n > cout:
            continue
        pad = (-cout) % n
        m = np.concatenate([nz, np.repeat(nz[-1:], pad, axis=0)]) if pad else nz
        blocks = m.reshape(-1, n, m.shape[1])
        if (blocks.all(axis=1) == blocks.any(axis=1)).all():
            return n
    return 0


@dataclass
class LayerPlan:
    """The planner's decision for one layer.

    ``fmt``: a :class:`Format` (``Format.RELAX``: left as a Relax op); ``n``: block size of
    the 1xN formats; ``predicted_ms``: per-format predictions of the perf model;
    ``measured_ms``: per-format kernel times where the ``measured`` planner timed them;
    ``kernel``: the kernel built for it (set by the plan stage); ``basis``: what the decision
    rests on (measured on this machine, the roofline prediction with its parameters, the shape).
    """

    info: LayerInfo
    fmt: Format
    n: int = 0
    reason: str = ""
    predicted_ms: dict[Format, float] = field(default_factory=dict)
    kernel: KernelInstance | None = None
    measured_ms: dict[Format, float] = field(default_factory=dict)  # the measured planner's kernel times
    basis: str = ""  # what decided: "measured here (...)", "predicted (...)", "shape"; "" for fixed planners

    def __post_init__(self) -> None:
        self.fmt = Format(self.fmt)

    @property
    def format_label(self) -> str:
        """The format as users see it: ``dense``, ``csr``, ``1x8``, ``1x4-spatial`` ..."""
        return self.fmt.label(self.n)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.info.index,
            "name": self.info.name,
            "op": str(self.info.op),
            "shape": self.info.shape_str,
            "density": round(self.info.density, 4),
            "format": self.format_label,
            "reason": self.reason,
            "predicted_ms": {str(k): round(v, 4) for k, v in self.predicted_ms.items()},
            "measured_ms": {str(k): round(v, 4) for k, v in self.measured_ms.items()},
            "basis": self.basis,
            "kernel": self.kernel.name if self.kernel else None,
        }


Planner = Callable[[LayerInfo, NamedTarget], LayerPlan]


def formats_summary(plans: list[LayerPlan]) -> dict[str, int]:
    """``{format label: number of layers}``, sorted by label (``{"1x8": 20, "dense": 1}``)."""
    counts: dict[str, int] = {}
    for pl in plans:
        counts[pl.format_label] = counts.get(pl.format_label, 0) + 1
    return dict(sorted(counts.items()))
