"""Predicted time of the interspace form of a KxK conv (basis conv + sparse 1x1), roofline style.

Same model and parameters as :mod:`tvmprune.plan.roofline`:

* basis conv: ``2 * B*OH*OWp * Cin * K² * K²`` FLOPs (K² basis filters, K² taps each, output
  width rounded up to whole vectors) at ``BASIS_CONV_EFFICIENCY`` x the dense kernels'
  throughput (its reduction is only K² long: one input vector load per K² FMAs and K²
  accumulator stores per K⁴ FMAs), plus the channel-major copy of the input (CSR form);
* sparse 1x1 over ``Cin*K²`` basis channels at the coefficients' density: the CSR term of the
  direct sparse conv (vector along the output width, per-nonzero and per-row overheads) or
  the 1xN term (N output channels per vector), reading the basis-conv rows from cache
  (computed per row tile in the same kernel, so they add no memory traffic).
"""

from __future__ import annotations

from .kernels.base import ConvSpec
from .plan.roofline import NONZERO_OVERHEAD_FMAS, ROW_OVERHEAD_FMAS, PerfParams, params_for
from .target import NamedTarget

__all__ = ["predict_interspace_ms", "BASIS_CONV_EFFICIENCY"]

# relative to the dense kernels' efficiency; a first estimate from one interleaved measurement of
# the 64->64 @56 layer on x86 (basis conv alone vs the dense conv), see the issue-16 note
BASIS_CONV_EFFICIENCY = 0.5


def predict_interspace_ms(spec: ConvSpec, density: float, n: int, target: NamedTarget,
                          params: PerfParams | None = None) -> float:
    """Milliseconds of :func:`tvmprune.kernels.interspace_conv2d.interspace_conv2d` for one layer.

    ``density``: fraction of nonzero coefficients; ``n``: 1 (CSR) or the 1xN block height.
    """
    prm = params or params_for(target)
    peak = target.peak_gflops * 1e9 * prm.dense_efficiency
    bw = target.mem_bandwidth_gbs * 1e9
    lanes = target.vector_lanes
    k2 = spec.kh * spec.kw
    owp = -(-spec.out_w // lanes) * lanes
    pixels = spec.batch * spec.out_h * owp
    t_basis = 2 * pixels * spec.cin * k2 * k2 / (peak * BASIS_CONV_EFFICIENCY)
    in_bytes = 4 * spec.batch * spec.in_h * spec.in_w * spec.cin
    out_bytes = 4 * spec.batch * spec.out_h * spec.out_w * spec.cout
    w_bytes = 4 * spec.cout * spec.cin * k2 * density * (1 + 1 / max(n, 1))
    sparse_flops = 2 * density * spec.batch * spec.out_h * spec.out_w * spec.cout * spec.cin * k2
    if n > 1:
        t_sparse = prm.alpha_1xn * sparse_flops / (peak * min(1.0, n / lanes))
        t_copy = 2 * in_bytes / bw  # NHWC padded copy
    else:
        nnz_per_row = max(density * spec.cin * k2, 1e-3)
        overhead = 1.0 + NONZERO_OVERHEAD_FMAS / (owp // lanes) + ROW_OVERHEAD_FMAS / nnz_per_row
        t_sparse = prm.alpha_csr_3x3 * sparse_flops * (owp / spec.out_w) * overhead / peak
        t_copy = 2 * in_bytes / bw  # channel-major copy: read NHWC, write [Cin, Hp, Wx]
    t_mem = (in_bytes + out_bytes + w_bytes) / bw
    return (max(t_basis + t_sparse, t_mem) + t_copy) * 1e3
