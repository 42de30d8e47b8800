"""What every kernel in :mod:`tvmprune.kernels` produces: a :class:`KernelInstance`.

Layout convention (whole package): activations are **NHWC** (``[B, H, W, C]``, fp32);
the Relax import converts the model to NHWC once at the input boundary. Convolution
weights arrive in PyTorch's ``[Cout, Cin/groups, KH, KW]`` layout as numpy arrays; each
kernel converts them to its own storage format (dense OHWI/HWIO, BSR 1xN, CSR) and
returns those arrays as ``consts``.

A kernel's PrimFunc takes its buffers in this order::

    data, *consts, [residual], out

``data`` is the NHWC input, ``consts`` are the weight / index / bias arrays in the
order of :attr:`KernelInstance.consts`, ``residual`` (present when
``ConvSpec.residual`` is set) has the output's shape and is added before the final
activation, ``out`` is the NHWC output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .format import Format, LayerOp
from .identity import family_key, workload_key

ACTIVATIONS = (None, "relu", "relu6", "silu", "gelu", "gelu_tanh", "sigmoid", "hardswish", "hardsigmoid")


@dataclass(frozen=True)
class ConvSpec:
    """Shape and epilogue of one 2-D convolution (NHWC activations).

    ``padding`` is (top, left, bottom, right). ``activation`` is one of :data:`ACTIVATIONS`
    and is applied after bias and residual add: ``act(conv(x) + bias + residual)``.
    """

    batch: int
    in_h: int
    in_w: int
    cin: int
    cout: int
    kh: int
    kw: int
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    groups: int = 1
    bias: bool = False
    activation: str | None = None
    residual: bool = False

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")

    @property
    def out_h(self) -> int:
        return (self.in_h + self.padding[0] + self.padding[2] - self.kh) // self.stride[0] + 1

    @property
    def out_w(self) -> int:
        return (self.in_w + self.padding[1] + self.padding[3] - self.kw) // self.stride[1] + 1

    @property
    def in_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.in_h, self.in_w, self.cin)

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.out_h, self.out_w, self.cout)

    @property
    def dense_flops(self) -> int:
        """Multiply-adds x 2 of the dense convolution."""
        return 2 * self.batch * self.out_h * self.out_w * self.cout * (self.cin // self.groups) * self.kh * self.kw

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        """PyTorch weight shape ``[Cout, Cin/groups, KH, KW]``."""
        return (self.cout, self.cin // self.groups, self.kh, self.kw)


@dataclass
class KernelInstance:
    """One concrete kernel: a TE-derived PrimFunc plus the constant arrays it reads.

    Attributes:
        name: unique global symbol (used as the PrimFunc name inside a Relax module).
        format: the weight storage format (:class:`.format.Format`).
        op: conv2d or linear.
        func: the unscheduled PrimFunc (``te.create_prim_func``), named ``name``.
        consts: constant arguments, in PrimFunc argument order after ``data``.
        out_shape: output shape.
        schedule_default: applies the hand-picked default schedule to a
            ``tvm.s_tir.Schedule`` of ``func``.
        schedule_space: applies the tunable schedule (knobs sampled with
            ``sample_perfect_tile`` / ``sample_categorical``) for MetaSchedule.
        flops: useful floating-point operations (2 x nonzero multiply-adds).
        info: free-form facts for reports (density, N, nnz, layout ...).
    """

    name: str
    format: Format
    op: LayerOp
    func: Any
    consts: list[np.ndarray]
    out_shape: tuple[int, ...]
    schedule_default: Callable[[Any], None]
    schedule_space: Callable[[Any], None] | None = None
    flops: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def scheduled(self) -> Any:
        """The PrimFunc with the default schedule applied."""
        from tvm import s_tir

        sch = s_tir.Schedule(self.func)
        self.schedule_default(sch)
        return sch.mod["main"].with_attr("global_symbol", self.name)

    @property
    def kind(self) -> str:
        """The format as tuning records name it: the format for convs, ``<fmt>_linear`` for
        linear layers (``dense_linear``, ``bsr_linear``, ``csr_linear``)."""
        if self.op == LayerOp.LINEAR:
            return ("bsr" if self.format == Format.BSR else self.format.value) + "_linear"
        return self.format.value

    @property
    def workload_key(self) -> str:
        """Stable hash of the computation and its constant structure (see :mod:`.identity`)."""
        return workload_key(self)

    @property
    def family_key(self) -> str:
        """Kernels whose schedule traces are interchangeable (see :mod:`.identity`)."""
        return family_key(self)



def apply_activation(x: Any, activation: str | None) -> Any:
    """One of :data:`ACTIVATIONS` on a TIR expression, as PyTorch defines it (``gelu``: erf form,
    ``gelu_tanh``: the tanh approximation, ``hardswish``: ``x * clamp(x + 3, 0, 6) / 6``,
    ``hardsigmoid``: ``clamp(x + 3, 0, 6) / 6``); None leaves ``x`` as it is. exp / erf / tanh are
    the vectorising forms of :mod:`.fast_math` (libm calls per lane cost 12-50x the epilogue)."""
    from tvm import te, tirx

    from . import fast_math

    f32 = lambda v: tirx.const(v, "float32")  # noqa: E731
    if activation in ("hardswish", "hardsigmoid"):
        gate = te.min(te.max(x + f32(3.0), f32(0.0)), f32(6.0)) * f32(1.0 / 6.0)
        return x * gate if activation == "hardswish" else gate
    if activation == "gelu_tanh":
        inner = f32(0.7978845608028654) * (x + f32(0.044715) * x * x * x)
        return f32(0.5) * x * (f32(1.0) + fast_math.tanh(inner))
    if activation == "silu":
        return x * fast_math.sigmoid(x)
    if activation == "sigmoid":
        return fast_math.sigmoid(x)
    if activation == "gelu":
        half, one = tirx.const(0.5, "float32"), tirx.const(1.0, "float32")
        return half * x * (one + fast_math.erf(x * tirx.const(0.7071067811865476, "float32")))

    if activation == "relu":
        return te.max(x, tirx.const(0.0, "float32"))
    if activation == "relu6":
        return te.min(te.max(x, tirx.const(0.0, "float32")), tirx.const(6.0, "float32"))
    return x


def conv_epilogue(
    shape: tuple[int, ...],
    value_at: Callable[..., Any],
    bias: Any,
    residual: Any,
    activation: str | None,
    name: str,
) -> Any:
    """The NHWC output stage shared by every conv kernel: ``act(acc + bias[c] + residual)``.

    ``value_at(b, oh, ow, c)`` reads the kernel's accumulator in its own layout; ``bias``
    (``[Cout]``) and ``residual`` (NHWC, the output's shape) are TE tensors or None.
    """
    from tvm import te

    def f(b, oh, ow, c):
        v = value_at(b, oh, ow, c)
        if bias is not None:
            v = v + bias[c]
        if residual is not None:
            v = v + residual[b, oh, ow, c]
        return apply_activation(v, activation)

    return te.compute(shape, f, name=name)


def fused_conv_output(conv: Any, spec: ConvSpec, bias: Any, residual: Any) -> Any:
    """The output stage of a conv whose accumulator ``conv`` is already NHWC: ``act(conv + bias +
    residual)`` as one stage named ``epilogue``, or ``conv`` itself when there is nothing to fuse."""
    if bias is None and residual is None and spec.activation is None:
        return conv
    return conv_epilogue(conv.shape, lambda n, y, x, c: conv[n, y, x, c], bias, residual, spec.activation,
                         "epilogue")
