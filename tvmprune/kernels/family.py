"""The kernel family interface: one storage format of one layer op, and everything the compiler
needs to know about it -- how to build its kernel, how long the roofline model says it takes,
and how calibration measures it.

A family is declared at the end of its kernel's module (``FAMILY = KernelFamily(...)``) and
listed once in :mod:`.registry`; planners, calibration and the benchmark scripts iterate the
registry, so they never name formats themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .base import ConvSpec, KernelInstance
from .format import Format, LayerOp

if TYPE_CHECKING:
    from ..plan.layer import LayerInfo
    from ..plan.roofline import PerfParams
    from ..target import NamedTarget


@dataclass(frozen=True)
class Probe:
    """How `tvmprune calibrate` measures a family on a probe conv layer.

    block_n: N of the probe weight for a target (1: unstructured).
    param: the :class:`~tvmprune.plan.roofline.PerfParams` field the measurement fits, for a
        probe layer (fits of one field over several probe layers are averaged).
    fit: ``(spec, density, measured_ms, n, target, peak)`` -> the parameter value, where
        ``peak`` is the FLOP/s the dense kernel reached on this machine.
    """

    block_n: Callable[["NamedTarget"], int]
    param: Callable[[ConvSpec], str]
    fit: Callable[[ConvSpec, float, float, int, "NamedTarget", float], float]


@dataclass(frozen=True)
class KernelFamily:
    """One kernel family: ``format`` x ``op``.

    build: ``(layer, n, target)`` -> the kernel (``n``: block size of the 1xN formats, else 0).
    accepts: ``(layer)`` -> whether the family can build a kernel for the layer at all
        (shape-wise: groups, ...); default: every layer of its op.
    predict: ``(layer, target, params)`` -> roofline milliseconds, or None when the family
        cannot take the layer (no predict: never chosen by the cost-based planner).
    describe: ``(layer)`` -> why the planner picked it (for ``--explain``).
    probe: how calibration measures it (None: not calibrated).
    """

    format: Format
    op: LayerOp
    build: Callable[["LayerInfo", int, "NamedTarget"], KernelInstance]
    accepts: Callable[["LayerInfo"], bool] = lambda info: True
    predict: Callable[["LayerInfo", "NamedTarget", "PerfParams"], float | None] | None = None
    describe: Callable[["LayerInfo"], str] | None = None
    probe: Probe | None = None

    def reason(self, info: "LayerInfo") -> str:
        return self.describe(info) if self.describe else self.format.label(info.block_n)
