"""TE placeholders, PrimFunc signature and :class:`KernelInstance` of the sparse conv kernels (one
argument order for all)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import ConvSpec, KernelInstance
from .format import Format, LayerOp


def sparse_conv_placeholders(spec: ConvSpec, w_data: np.ndarray, w_index: np.ndarray, w_ptr: np.ndarray,
                             index_name: str, bias_np: np.ndarray | None) -> tuple:
    """TE placeholders of a sparse conv kernel in argument order:
    ``data, w_data, <index_name>, w_indptr, bias (or None), residual (or None)``."""
    from tvm import te

    return (
        te.placeholder(spec.in_shape, "float32", name="data"),
        te.placeholder(w_data.shape, "float32", name="w_data"),
        te.placeholder(w_index.shape, "int32", name=index_name),
        te.placeholder(w_ptr.shape, "int32", name="w_indptr"),
        te.placeholder((spec.cout,), "float32", name="bias") if bias_np is not None else None,
        te.placeholder(spec.out_shape, "float32", name="residual") if spec.residual else None,
    )


def sparse_kernel_signature(placeholders: tuple, out: Any, arrays: list[np.ndarray],
                            bias_np: np.ndarray | None) -> tuple[list, list[np.ndarray]]:
    """PrimFunc arguments (placeholders that exist, then ``out``) and the matching consts
    (``arrays`` = weight values, index, indptr; then the bias)."""
    args = [p for p in placeholders if p is not None] + [out]
    return args, list(arrays) + ([bias_np] if bias_np is not None else [])


def sparse_conv_kernel(spec: ConvSpec, fmt: Format, name: str, bufs: tuple, out: Any, arrays: list[np.ndarray],
                       bias_np: np.ndarray | None, schedule: Any, flops: int, info: dict[str, Any]) -> KernelInstance:
    """The :class:`KernelInstance` of a sparse conv: PrimFunc ``name`` over ``bufs`` (from
    :func:`sparse_conv_placeholders`) and ``out``; ``schedule`` has ``default`` and ``space``."""
    from tvm import te

    args, consts = sparse_kernel_signature(bufs, out, arrays, bias_np)
    func = te.create_prim_func(args).with_attr("global_symbol", name)
    return KernelInstance(name=name, format=fmt, op=LayerOp.CONV2D, func=func, consts=consts,
                          out_shape=spec.out_shape, schedule_default=schedule.default,
                          schedule_space=schedule.space, flops=flops, info=info)
