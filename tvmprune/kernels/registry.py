"""The kernel family registry: every (format, layer op) that has a kernel, in preference order.

Adding a family: write its kernel module ending with ``FAMILY = KernelFamily(...)`` (see
:mod:`.family`) and add it to :data:`FAMILIES`. Order matters where predictions tie: the
planner takes the first of equal predictions, so dense comes first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import UnsupportedLayerError
from .base import KernelInstance
from .block_direct_conv2d import FAMILY as BSR_SPATIAL_CONV2D_FAMILY
from .dense_conv2d import DENSE_FAMILY
from .dense_linear import FAMILY as DENSE_LINEAR_FAMILY
from .depthwise_conv2d import FAMILY as DEPTHWISE_FAMILY
from .direct_sparse_conv2d import FAMILY as CSR_CONV2D_FAMILY
from .family import KernelFamily
from .format import Format, LayerOp
from .grouped_conv2d import FAMILY as GROUPED_CONV2D_FAMILY
from .interspace_conv2d import FAMILY as INTERSPACE_CONV2D_FAMILY
from .sparse_conv2d import FAMILY as BSR_CONV2D_FAMILY
from .sparse_linear import BSR_FAMILY as BSR_LINEAR_FAMILY
from .sparse_linear import CSR_FAMILY as CSR_LINEAR_FAMILY

if TYPE_CHECKING:
    from ..plan.layer import LayerInfo, LayerPlan
    from ..target import NamedTarget

FAMILIES: tuple[KernelFamily, ...] = (
    DENSE_FAMILY,
    DEPTHWISE_FAMILY,
    GROUPED_CONV2D_FAMILY,
    BSR_CONV2D_FAMILY,
    BSR_SPATIAL_CONV2D_FAMILY,
    CSR_CONV2D_FAMILY,
    INTERSPACE_CONV2D_FAMILY,
    DENSE_LINEAR_FAMILY,
    BSR_LINEAR_FAMILY,
    CSR_LINEAR_FAMILY,
)


def families(op: LayerOp | str | None = None) -> tuple[KernelFamily, ...]:
    """The registered families (of one layer op), in preference order."""
    return tuple(f for f in FAMILIES if op is None or f.op == op)


def family(fmt: Format | str, op: LayerOp | str) -> KernelFamily:
    """The family of ``fmt`` for ``op``.

    Raises:
        UnsupportedLayerError: no kernel of that format exists for that op.
    """
    for f in FAMILIES:
        if f.format == fmt and f.op == op:
            return f
    raise UnsupportedLayerError(f"no {fmt} kernel for {op} layers (formats with kernels: "
                                f"{', '.join(sorted(str(f.format) for f in families(op)))})")


def accepts_layer(info: "LayerInfo") -> bool:
    """Whether some registered family can build a kernel for ``info``."""
    return any(f.accepts(info) for f in families(info.op))


def build_kernel(plan: "LayerPlan", target: "NamedTarget") -> KernelInstance | None:
    """The kernel the plan asks for (None when the plan keeps the layer a Relax op)."""
    if plan.fmt == Format.RELAX:
        return None
    return family(plan.fmt, plan.info.op).build(plan.info, plan.n, target)
