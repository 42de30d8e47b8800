"""TE computes and TensorIR schedules for tvmprune's kernels (see :mod:`.base`)."""

from .base import ConvSpec, KernelInstance, unique_name
from .block_direct_conv2d import block_direct_sparse_conv2d
from .direct_sparse_conv2d import direct_sparse_conv2d
from .formats import BSR, CSR, conv_weight_to_bsr, conv_weight_to_csr, matrix_to_bsr, matrix_to_csr
from .sparse_conv2d import shrink_sparse_loops, sparse_conv2d_1xn
from .sparse_linear import sparse_linear
