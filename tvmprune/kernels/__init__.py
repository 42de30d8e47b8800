"""TE computes and TensorIR schedules for tvmprune's kernels (see :mod:`.base`).

* :mod:`.format` -- :class:`Format` / :class:`LayerOp`, the one spelling of a storage format;
* :mod:`.family` / :mod:`.registry` -- kernel families and the registry of them;
* :mod:`.identity` -- symbol names and tuning identities of kernels;
* one module per kernel (``dense_conv2d``, ``sparse_conv2d`` ...), each ending with its family.

Kernel builders are loaded on first use (``from tvmprune.kernels import sparse_linear``), so
importing the package's types does not import every kernel.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .base import ConvSpec, KernelInstance
from .format import Format, LayerOp
from .identity import symbol_name

_LAZY = {
    "block_direct_sparse_conv2d": ".block_direct_conv2d",
    "dense_conv2d": ".dense_conv2d",
    "dense_linear": ".dense_linear",
    "direct_sparse_conv2d": ".direct_sparse_conv2d",
    "sparse_conv2d_1xn": ".sparse_conv2d",
    "shrink_sparse_loops": ".sparse_conv2d",
    "sparse_linear": ".sparse_linear",
    "BSR": ".formats",
    "CSR": ".formats",
    "conv_weight_to_bsr": ".formats",
    "conv_weight_to_csr": ".formats",
    "matrix_to_bsr": ".formats",
    "matrix_to_csr": ".formats",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
