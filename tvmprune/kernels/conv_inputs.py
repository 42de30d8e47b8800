"""Checks and normalisation of the arrays a sparse conv kernel is built from."""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedLayerError
from .base import ConvSpec


def check_conv(spec: ConvSpec, weight: np.ndarray, bias: np.ndarray | None, what: str) -> None:
    """``weight`` is PyTorch's ``[Cout, Cin, KH, KW]`` for ``spec`` (groups 1) and a bias is
    given when ``spec.bias``; ``what`` names the kernel in the error.

    Raises:
        UnsupportedLayerError: ``spec.groups != 1``.
        ValueError: wrong weight shape, or a missing bias.
    """
    if spec.groups != 1:
        raise UnsupportedLayerError(
            f"{what} supports groups=1 only (got groups={spec.groups}); use the dense/depthwise kernel"
        )
    check_conv_arrays(spec, weight, bias)


def check_conv_arrays(spec: ConvSpec, weight: np.ndarray, bias: np.ndarray | None) -> None:
    """``weight`` has ``spec.weight_shape`` (``[Cout, Cin/groups, KH, KW]``) and a bias is given
    when ``spec.bias``.

    Raises:
        ValueError: wrong weight shape, or a missing bias.
    """
    if tuple(weight.shape) != spec.weight_shape:
        raise ValueError(f"weight shape {tuple(weight.shape)} does not match spec {spec.weight_shape}")
    if spec.bias and bias is None:
        raise ValueError("spec.bias is set but no bias array was given")


def bias_array(spec_bias: bool, bias: np.ndarray | None, cout: int) -> np.ndarray | None:
    """The bias kernel argument: contiguous float32 ``[Cout]``; zeros when the spec has a bias
    but none was given; None when there is neither."""
    if not spec_bias and bias is None:
        return None
    if bias is None:
        return np.zeros(cout, dtype=np.float32)
    return np.ascontiguousarray(np.asarray(bias, dtype=np.float32).reshape(cout))
