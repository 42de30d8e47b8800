"""Dense linear layer ``y = act(x @ W^T + b)``: a packed, vectorised GEMV (bandwidth-bound at batch 1).

Layouts: data ``[B, in]``; the weight (a constant) is packed at compile time into
``[out_p / OB, in, OB]`` (``OB`` = ``vectors x lanes`` output features, zero-padded to
``out_p``), so each thread streams one contiguous panel per output block; output ``[B, out]``.
Loop nest (the default point of the tuning space; the space samples the accumulator vectors
per block, how many blocks one parallel task walks, the reduction split and the unroll)::

    parallel for ob in out_p / OB:
      for n in B:
        acc[vectors] = 0                    # independent FMA chains hide the FMA latency
        for k in in:                        # broadcast x[n, k], one vector load per chain
          acc[v] += x[n, k] * Wp[ob, k, v*lanes:+lanes]
        out[n, ob*OB:+OB] = act(acc + bias)

At batch 1 every weight is read exactly once: the time is the weight bytes over the memory
(or last-level cache) bandwidth, given enough chains (:data:`_CHAINS`) in flight per core.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from tvm import te

from ..plan.roofline import dense_ms, layer_cost
from ..target import NamedTarget, get_target
from .base import KernelInstance, apply_activation
from .family import KernelFamily
from .format import Format, LayerOp
from .identity import symbol_name
from .register_tile import round_up

if TYPE_CHECKING:
    from ..plan.layer import LayerInfo

# accumulator vectors per output block: 2 FMA pipes x 4 cycles latency
_CHAINS = 8


def linear_epilogue(y: te.Tensor, bias: te.Tensor | None, activation: str | None, out_f: int) -> te.Tensor:
    """``act(y + bias)`` over ``[B, out_f]`` as a stage named ``epilogue`` (or ``y`` itself
    when there is nothing to do and ``y`` is not padded)."""
    if bias is None and activation is None and int(y.shape[1]) == out_f:
        return y

    def f(n, o):
        v = y[n, o]
        if bias is not None:
            v = v + bias[o]
        return apply_activation(v, activation)

    return te.compute((int(y.shape[0]), out_f), f, name="epilogue")


def pick_vectors(out_f: int, lanes: int, cores: int) -> int:
    """Vectors per output block: up to :data:`_CHAINS`, fewer when that would leave a core
    without a block or pad more than an eighth of the outputs."""
    for v in (_CHAINS, 4, 2):
        blocks = -(-out_f // (v * lanes))
        if blocks >= cores and round_up(out_f, v * lanes) <= out_f * 1.125:
            return v
    return 1


def pack_linear_weight(weight: np.ndarray, block: int) -> np.ndarray:
    """PyTorch ``[out, in]`` -> ``[out_p / block, in, block]`` (zero-padded)."""
    out_f, in_f = weight.shape
    w = np.zeros((round_up(out_f, block), in_f), np.float32)
    w[:out_f] = weight
    return np.ascontiguousarray(w.reshape(-1, block, in_f).transpose(0, 2, 1))


def _lane_split(sch: Any, lanes: int) -> tuple[Any, Any, Any, Any]:
    """Split the output loop of ``matmul`` into vectors x lanes: (n, o_vec, o_lane, k)."""
    n, o, k = sch.get_loops(sch.get_sblock("matmul"))
    o_vec, o_l = sch.split(o, factors=[None, lanes])
    return n, o_vec, o_l, k


def schedule_gemv(sch: Any, lanes: int, out_f: int, blocks: tuple[Any, Any, Any], k_split: Any = None,
                  unroll: Any = 0) -> None:
    """The loop nest of the module docstring. ``blocks``: (parallel, sequential, accumulator)
    factors of the ``out_p / lanes`` output vectors (ints, or sampled factors); ``k_split``: factors
    of the reduction split whose inner part is unrolled (None: no split); ``unroll``: auto-unroll."""
    mm = sch.get_sblock("matmul")
    wb = sch.cache_write(mm, 0, "local")
    try:
        out_block = sch.get_sblock("epilogue")
        sch.compute_inline(wb)
    except Exception:  # no epilogue stage
        out_block = wb
    loops = sch.get_loops(mm)
    n, o_vec, o_l, k = loops if len(loops) == 4 else _lane_split(sch, lanes)
    o_p, o_s, o_v = sch.split(o_vec, factors=list(blocks))
    if k_split is not None:
        k_o, k_i = sch.split(k, factors=list(k_split))
        sch.reorder(o_p, o_s, n, k_o, k_i, o_v, o_l)
        sch.unroll(k_i)
    else:
        sch.reorder(o_p, o_s, n, k, o_v, o_l)
    sch.parallel(o_p)
    sch.unroll(o_v)
    sch.vectorize(o_l)
    sch.reverse_compute_at(out_block, n)
    init = sch.decompose_reduction(mm, sch.get_loops(mm)[3])
    sch.vectorize(sch.get_loops(init)[-1])
    if out_f % lanes == 0:
        sch.vectorize(sch.split(sch.get_loops(out_block)[-1], factors=[None, lanes])[1])
    if not isinstance(unroll, int) or unroll:
        sch.annotate(o_p, "pragma_auto_unroll_max_step", unroll)
        sch.annotate(o_p, "pragma_unroll_explicit", 1)


def sample_gemv(sch: Any, lanes: int, out_f: int) -> None:
    """A point of the linear kernel's space: accumulator vectors per block (<= :data:`_CHAINS`),
    parallel vs sequential blocks per task, the reduction split and the unroll depth."""
    _, o_vec, _, k = _lane_split(sch, lanes)
    blocks = sch.sample_perfect_tile(o_vec, n=3, max_innermost_factor=_CHAINS)
    k_split = sch.sample_perfect_tile(k, n=2, max_innermost_factor=16)
    unroll = sch.sample_categorical([0, 16, 64], probs=[1 / 3, 1 / 3, 1 / 3])
    schedule_gemv(sch, lanes, out_f, tuple(blocks), k_split, unroll)


def dense_linear(
    weight: np.ndarray,
    bias: np.ndarray | None,
    batch: int,
    activation: str | None,
    target: "NamedTarget | str",
) -> KernelInstance:
    """Dense linear kernel. ``weight`` is PyTorch's ``[out, in]``; consts = [packed weight
    ``[out_p / OB, in, OB]``, bias?]."""
    t = get_target(target)
    out_f, in_f = weight.shape
    lanes = t.vector_lanes
    vectors = pick_vectors(out_f, lanes, t.cores)
    w_np = pack_linear_weight(np.asarray(weight, np.float32), vectors * lanes)
    block = vectors * lanes
    x = te.placeholder((batch, in_f), name="data", dtype="float32")
    wp = te.placeholder(w_np.shape, name="weight", dtype="float32")
    k = te.reduce_axis((0, in_f), name="k")
    y = te.compute((batch, round_up(out_f, block)),
                   lambda n, o: te.sum(x[n, k] * wp[o // block, k, o % block], axis=k), name="matmul")
    args, consts = [x, wp], [w_np]
    b = None
    if bias is not None:
        b = te.placeholder((out_f,), name="bias", dtype="float32")
        args.append(b)
        consts.append(np.asarray(bias, "float32").reshape(out_f))
    out = linear_epilogue(y, b, activation, out_f)
    args.append(out)
    name = symbol_name("tvmprune_dense_linear", weight.shape, batch, bias is not None, activation, lanes, vectors)
    func = te.create_prim_func(args).with_attr("global_symbol", name)
    k_default = [None, 4] if in_f % 4 == 0 else None

    default_blocks = (round_up(out_f, block) // block, 1, vectors)

    return KernelInstance(
        name=name, format=Format.DENSE, op=LayerOp.LINEAR, func=func, consts=consts, out_shape=(batch, out_f),
        schedule_default=lambda sch: schedule_gemv(sch, lanes, out_f, default_blocks, k_default),
        schedule_space=lambda sch: sample_gemv(sch, lanes, out_f), flops=2 * batch * weight.size,
        info={"density": 1.0, "vec": block, "weight_layout": f"[out/{block},in,{block}]"},
    )


def _build(info: "LayerInfo", n: int, target: "NamedTarget") -> KernelInstance:
    return dense_linear(info.weight, info.bias, info.batch, info.activation, target)


FAMILY = KernelFamily(Format.DENSE, LayerOp.LINEAR, build=_build,
                      predict=lambda info, target, prm: dense_ms(layer_cost(info, target, prm)))
