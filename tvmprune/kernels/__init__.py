"""TE computes and TensorIR schedules for tvmprune's kernels (see :mod:`.base`).

* :mod:`.format` -- :class:`Format` / :class:`LayerOp`, the one spelling of a storage format;
* :mod:`.family` / :mod:`.registry` -- kernel families and the registry of them;
* :mod:`.identity` -- symbol names and tuning identities of kernels;
* one module per kernel (``dense_conv2d``, ``sparse_conv2d`` ...), each ending with its family;
* what the kernels share: :mod:`.target_params` (target, register file), :mod:`.tiling` (tile
  sizes), :mod:`.conv_inputs` (argument checks, bias), :mod:`.placeholders` (sparse conv
  signature), :mod:`.padding` (zero padding stage), :mod:`.sparse_loops` (the row loop and
  ``shrink_sparse_loops``), :mod:`.channel_major` (channel-major input copy), :mod:`.shifted_input`
  (its per-``kw`` aligned phase copies).
"""

from __future__ import annotations

from .base import ConvSpec, KernelInstance
from .block_direct_conv2d import block_direct_sparse_conv2d
from .dense_conv2d import dense_conv2d
from .dense_linear import dense_linear
from .direct_sparse_conv2d import direct_sparse_conv2d
from .format import Format, LayerOp
from .formats import BSR, CSR, conv_weight_to_bsr, conv_weight_to_csr, matrix_to_bsr, matrix_to_csr
from .identity import symbol_name
from .sparse_conv2d import sparse_conv2d_1xn
from .sparse_linear import sparse_linear
from .sparse_loops import shrink_sparse_loops
