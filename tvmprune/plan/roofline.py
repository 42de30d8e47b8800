"""Roofline performance model: the parameters of a target and the cost terms of the formats.

Park et al. (2016): sparse time is bounded by compute (``alpha`` x the useful FLOPs at the
dense kernel's throughput, where ``alpha`` > 1 is the cost of indirection) and by memory
traffic (input activations + ``beta`` x weight bytes, index included). Dense time is FLOPs
over the throughput the dense kernel reaches. Each kernel family predicts its time from
these terms (``KernelFamily.predict``); the planner takes the smallest prediction.
"""

from __future__ import annotations

from ..cache_dir import cache_dir, target_key

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..target import NamedTarget

if TYPE_CHECKING:  # kernels import this module: no run-time import back into kernels at module level
    from ..kernels.base import ConvSpec
    from .layer import LayerInfo

# Built-in parameters, fitted on x86 AVX-512 (2 threads): our dense conv reaches ~50% of peak;
# 1x16 reaches 6.0x / 4.1x / 2.3x over the best dense at density 0.1 / 0.2 / 0.3 (alpha ~1.6);
# the CSR direct conv and the spatially vectorised 1xN kernel (N < lanes) run their FMAs over
# the output width rounded up to whole vectors, after a channel-major copy of the input
# (spatial_ms), where CSR on 1x1 layers pays most. `tvmprune calibrate` measures them per target.
DEFAULT_PARAMS = {"dense_efficiency": 0.5, "alpha_1xn": 1.6, "alpha_csr_3x3": 1.25, "alpha_csr_1x1": 2.0,
                  "alpha_1xn_spatial": 1.0}
# Per nonzero (block) and output row, the spatial kernels pay an index load, a weight broadcast
# and loop overhead worth about this many vector FMAs, shared by the N rows of a block and
# amortised over the vectors of the output width. This and the CSR / spatial alphas were
# fitted on x86 AVX-512 to scripts/check_perf_model.py (54 layer x density x format cases) and
# the 45 CSR layers of ResNet-50 unstructured@0.9 (scripts/bench_models.py --per-layer): the
# sparse-vs-dense call is right in 94 of 99, with every alpha >= 1 (a sparse FMA never costs
# less than a dense one).
NONZERO_OVERHEAD_FMAS = 1.0
# Per output row of a block (accumulator set-up, loop entry, the NHWC store that scatters the
# row across channels), in vector FMAs: it weighs on layers with few nonzeros per row, e.g. the
# 1x1 expansions of ResNet-50 (64->256) at density 0.1, 3x slower than dense with CSR.
ROW_OVERHEAD_FMAS = 64.0
# Strided layers read the channel-major input with a gather along the vector axis.
STRIDE_PENALTY = 6.0


@dataclass(frozen=True)
class PerfParams:
    """Roofline parameters of one target.

    dense_efficiency: fraction of peak FLOP/s the dense kernels reach.
    alpha_1xn: slowdown of a 1xN sparse multiply-add (N = vector lanes) vs a dense one.
    alpha_csr_3x3 / alpha_csr_1x1: the same for CSR direct convolution (KxK and 1x1 / linear).
    alpha_1xn_spatial: the same for the spatially vectorised 1xN conv (vector along the output
        width, any N), on top of the time of its channel-major input copy.
    source: where the numbers come from (built-in, or the calibration file).
    """

    dense_efficiency: float = DEFAULT_PARAMS["dense_efficiency"]
    alpha_1xn: float = DEFAULT_PARAMS["alpha_1xn"]
    alpha_csr_3x3: float = DEFAULT_PARAMS["alpha_csr_3x3"]
    alpha_csr_1x1: float = DEFAULT_PARAMS["alpha_csr_1x1"]
    alpha_1xn_spatial: float = DEFAULT_PARAMS["alpha_1xn_spatial"]
    source: str = "built-in (fitted on x86 AVX-512)"


def calibration_path(target: NamedTarget) -> Path:
    """Where calibrated parameters of ``target`` are stored (``$TVMPRUNE_CACHE_DIR`` or ~/.cache/tvmprune)."""
    return cache_dir("calibration", f"{target_key(target)}.json")


def params_for(target: NamedTarget) -> PerfParams:
    """Calibrated parameters of ``target`` when `tvmprune calibrate` stored some, else the built-in ones."""
    p = calibration_path(target)
    if p.is_file():
        try:
            d = json.loads(p.read_text(encoding="utf-8"))["params"]
            # files from before a parameter existed keep the built-in value for it
            return PerfParams(**{k: float(d.get(k, DEFAULT_PARAMS[k])) for k in DEFAULT_PARAMS},
                              source=f"calibrated ({p})")
        except (OSError, KeyError, ValueError, TypeError):
            pass  # a damaged file: fall back to the built-in numbers
    if target.arch != "x86_64":
        return PerfParams(source=f"built-in, UNCALIBRATED for {target.name} (fitted on x86 AVX-512): run "
                                 f"`tvmprune calibrate --target {target.name} --tracker HOST:PORT --key KEY` on a board")
    return PerfParams()


@dataclass(frozen=True)
class LayerCost:
    """The roofline terms of one layer on one target.

    flops: dense FLOPs; density: nonzero fraction of the weight; act_bytes: input + output
    activation bytes; w_bytes: dense weight bytes; peak: FLOP/s the dense kernels reach;
    bw: memory bandwidth in bytes/s.
    """

    flops: float
    density: float
    act_bytes: float
    w_bytes: float
    peak: float
    bw: float


def layer_cost(info: "LayerInfo", target: NamedTarget, prm: PerfParams) -> LayerCost:
    """:class:`LayerCost` of a conv / linear layer."""
    from ..kernels.format import LayerOp

    if info.op == LayerOp.CONV2D:
        s = info.spec
        act_bytes = 4 * (s.batch * s.in_h * s.in_w * s.cin + s.batch * s.out_h * s.out_w * s.cout)
    else:
        act_bytes = 4 * info.batch * (info.weight.shape[0] + info.weight.shape[1])
    return LayerCost(flops=info.dense_flops, density=info.density, act_bytes=act_bytes, w_bytes=4 * info.weight.size,
                     peak=target.peak_gflops * 1e9 * prm.dense_efficiency, bw=target.mem_bandwidth_gbs * 1e9)


def dense_ms(c: LayerCost) -> float:
    """Dense time: max(FLOPs / throughput, bytes / bandwidth), in ms."""
    return max(c.flops / c.peak, (c.act_bytes + c.w_bytes) / c.bw) * 1e3


def sparse_ms(c: LayerCost, alpha: float, n: int, lanes_fill: float = 1.0) -> float:
    """Sparse time of a register-blocked kernel (1xN over output channels, sparse linear):
    FLOPs scaled by density x ``alpha`` / the fraction of a vector filled, weight bytes by
    density x (value + index shared by ``n`` values), in ms."""
    t_c = alpha * c.density * c.flops / (c.peak * lanes_fill)
    t_m = (c.act_bytes + c.w_bytes * c.density * (1 + 1 / n)) / c.bw
    return max(t_c, t_m) * 1e3


def spatial_ms(spec: "ConvSpec", c: LayerCost, n: int, target: NamedTarget, alpha: float,
               flat: bool = False) -> float:
    """Spatially vectorised sparse conv (1xN-spatial, and CSR with ``n`` = 1), in ms.

    Block FMAs over the pixels the kernel computes -- whole vectors per output row, or with
    ``flat`` the flat-pixel grid of :func:`~tvmprune.kernels.channel_major.flat_geometry` (full
    lanes whatever N is) -- bounded by traffic, plus the channel-major copy of the input (read
    NHWC, write the padded copy), which runs before as its own pass; ``flat`` adds the pass of
    its NHWC epilogue over the accumulators.
    """
    from ..kernels.channel_major import channel_major_geometry, computed_pixels, flat_geometry

    lanes = target.vector_lanes
    geo = flat_geometry(spec, lanes) if flat else None
    hp, owp, wx = channel_major_geometry(spec, lanes) if geo is None else geo
    pixels = computed_pixels(spec, lanes, geo is not None)
    tile_vecs = owp // lanes if geo is None else max(1, min(4, owp // lanes))
    nnz_per_row = max(c.density * spec.cin * spec.kh * spec.kw, 1e-3)
    overhead = 1.0 + NONZERO_OVERHEAD_FMAS / (n * tile_vecs) + ROW_OVERHEAD_FMAS / (n * nnz_per_row)
    if spec.stride[1] > 1:
        overhead *= STRIDE_PENALTY
    t_c = alpha * c.density * c.flops * (pixels / (spec.out_h * spec.out_w)) * overhead / c.peak
    in_bytes = 4 * spec.batch * spec.in_h * spec.in_w * spec.cin
    copy_bytes = 4 * spec.batch * spec.cin * hp * wx
    out_bytes = 4 * spec.batch * spec.out_h * spec.out_w * spec.cout
    epilogue_bytes = 0 if geo is None else 4 * spec.batch * pixels * spec.cout * 2  # write + read acc
    t_m = (copy_bytes + out_bytes + c.w_bytes * c.density * (1 + 1 / n)) / c.bw
    return (max(t_c, t_m) + (in_bytes + copy_bytes + epilogue_bytes) / c.bw) * 1e3


def probe_cost(spec: "ConvSpec", density: float, target: NamedTarget, peak: float) -> LayerCost:
    """:class:`LayerCost` of a calibration probe conv at nominal ``density`` and measured ``peak``."""
    return LayerCost(flops=spec.dense_flops, density=density, act_bytes=0.0, w_bytes=4 * spec.cout * spec.cin *
                     spec.kh * spec.kw, peak=peak, bw=target.mem_bandwidth_gbs * 1e9)


def fit_compute_alpha(spec: "ConvSpec", density: float, measured_ms: float, n: int, target: NamedTarget,
                      peak: float) -> float:
    """``alpha`` of a compute-bound sparse kernel: measured time over the dense time of its useful FLOPs.

    A sparse FMA never costs less than a dense one: a smaller fit is measurement noise (clamped to 1).
    """
    return max(1.0, (measured_ms * 1e-3) * peak / (density * spec.dense_flops))


def fit_spatial_alpha(spec: "ConvSpec", density: float, measured_ms: float, n: int, target: NamedTarget,
                      peak: float) -> float:
    """``alpha`` of :func:`spatial_ms` (linear in alpha while compute-bound: t = t0 + alpha (t1 - t0))."""
    c = probe_cost(spec, density, target, peak)
    t0 = spatial_ms(spec, c, n, target, 1e-9)
    t1 = spatial_ms(spec, c, n, target, 1.0)
    return max(1.0, (measured_ms - t0) / max(t1 - t0, 1e-9))
