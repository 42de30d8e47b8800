"""Roofline performance model: predicts dense and sparse time per layer and picks a format.

Park et al. (2016): sparse time is bounded by compute (``alpha`` x the useful FLOPs at
the dense kernel's throughput, where ``alpha`` > 1 is the cost of indirection) and by
memory traffic (input activations + ``beta`` x weight bytes, index included). Dense time
is FLOPs over the throughput the dense kernel reaches. The format with the smaller
prediction wins.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .frontend.lowering import LayerInfo, LayerPlan
from .target import NamedTarget

# Built-in parameters, fitted on x86 AVX-512 (2 threads): our dense conv reaches ~50% of peak;
# 1x16 reaches 6.0x / 4.1x / 2.3x over the best dense at density 0.1 / 0.2 / 0.3 (alpha ~1.6);
# the CSR direct conv and the spatially vectorised 1xN kernel (N < lanes) run their FMAs over
# the output width rounded up to whole vectors, after a channel-major copy of the input
# (_spatial_ms), where CSR on 1x1 layers pays most. `tvmprune calibrate` measures them per target.
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
    root = Path(os.environ.get("TVMPRUNE_CACHE_DIR") or Path.home() / ".cache" / "tvmprune")
    key = hashlib.sha1(json.dumps(target.target_dict, sort_keys=True).encode()).hexdigest()[:8]
    return root / "calibration" / f"{target.name}-{key}.json"


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
    return PerfParams()


def predict_ms(info: LayerInfo, target: NamedTarget, params: PerfParams | None = None) -> dict[str, float]:
    """Predicted milliseconds per candidate format (``dense``, ``1xN``, ``1xN-spatial``, ``csr``) for one layer.

    dense = max(FLOPs / (peak x efficiency), bytes / bandwidth); sparse formats scale the
    FLOPs by density x alpha (1xN also by how much of a vector N fills) and the weight
    bytes by density x (value + index).
    """
    prm = params or params_for(target)
    flops = info.dense_flops
    density = info.density
    peak = target.peak_gflops * 1e9 * prm.dense_efficiency
    bw = target.mem_bandwidth_gbs * 1e9
    if info.op == "conv2d":
        s = info.spec
        act_bytes = 4 * (s.batch * s.in_h * s.in_w * s.cin + s.batch * s.out_h * s.out_w * s.cout)
    else:
        act_bytes = 4 * info.batch * (info.weight.shape[0] + info.weight.shape[1])
    w_bytes = 4 * info.weight.size
    dense = max(flops / peak, (act_bytes + w_bytes) / bw) * 1e3
    out = {"dense": dense}
    if info.op == "conv2d" and info.spec.groups > 1:
        return out
    n = info.block_n
    if n:
        lanes_fill = min(1.0, n / target.vector_lanes)
        t_c = prm.alpha_1xn * density * flops / (peak * lanes_fill)
        t_m = (act_bytes + w_bytes * density * (1 + 1 / n)) / bw
        out["1xN"] = max(t_c, t_m) * 1e3
        if info.op == "conv2d" and n < target.vector_lanes:  # N fills the vector: the 1xN kernel's case
            out["1xN-spatial"] = _spatial_ms(info.spec, density, flops, w_bytes, n, target, prm.alpha_1xn_spatial,
                                             peak, bw)
    one_by_one = info.op == "linear" or (info.spec.kh == 1 and info.spec.kw == 1)
    alpha_csr = prm.alpha_csr_1x1 if one_by_one else prm.alpha_csr_3x3
    if info.op == "conv2d":
        # the CSR direct conv shares the spatial kernel's structure (channel-major input copy,
        # output width rounded up to whole vectors) with one output channel per nonzero
        out["csr"] = _spatial_ms(info.spec, density, flops, w_bytes, 1, target, alpha_csr, peak, bw)
    else:
        t_c = alpha_csr * density * flops / peak
        t_m = (act_bytes + 2 * w_bytes * density) / bw
        out["csr"] = max(t_c, t_m) * 1e3
    return out


def _spatial_ms(spec, density: float, flops: float, w_bytes: float, n: int, target: NamedTarget,
                alpha: float, peak: float, bw: float) -> float:
    """1xN-spatial (and CSR with ``n`` = 1): block FMAs over the output width rounded up to whole vectors (full lanes
    whatever N is), bounded by traffic, plus the channel-major copy of the input (read NHWC,
    write the padded copy) which runs before as its own pass."""
    lanes = target.vector_lanes
    owp = -(-spec.out_w // lanes) * lanes
    nnz_per_row = max(density * spec.cin * spec.kh * spec.kw, 1e-3)
    overhead = 1.0 + NONZERO_OVERHEAD_FMAS / (n * (owp // lanes)) + ROW_OVERHEAD_FMAS / (n * nnz_per_row)
    if spec.stride[1] > 1:
        overhead *= STRIDE_PENALTY
    t_c = alpha * density * flops * (owp / spec.out_w) * overhead / peak
    in_bytes = 4 * spec.batch * spec.in_h * spec.in_w * spec.cin
    hp = spec.in_h + spec.padding[0] + spec.padding[2]
    wx = max(spec.in_w + spec.padding[1] + spec.padding[3], (owp - 1) * spec.stride[1] + spec.kw)
    copy_bytes = 4 * spec.batch * spec.cin * hp * wx
    out_bytes = 4 * spec.batch * spec.out_h * spec.out_w * spec.cout
    t_m = (copy_bytes + out_bytes + w_bytes * density * (1 + 1 / n)) / bw
    return (max(t_c, t_m) + (in_bytes + copy_bytes) / bw) * 1e3


def choose_format(info: LayerInfo, target: NamedTarget) -> LayerPlan:
    """Pick dense / depthwise / 1xN / 1xN-spatial / csr for one layer from the roofline predictions."""
    if info.op == "conv2d" and info.spec.groups > 1:
        if info.spec.groups == info.spec.cin == info.spec.cout:
            return LayerPlan(info, "depthwise", reason="depthwise convs stay dense", predicted_ms=predict_ms(info, target))
        return LayerPlan(info, "grouped", reason=f"grouped conv (groups={info.spec.groups}) stays dense",
                         predicted_ms=predict_ms(info, target))
    pred = predict_ms(info, target)
    best = min(pred, key=pred.get)
    if best == "dense":
        why = "dense predicted fastest" if info.density < 1.0 else "no zeros"
        return LayerPlan(info, "dense", reason=why, predicted_ms=pred)
    if best == "1xN":
        return LayerPlan(info, "1xN", n=info.block_n, reason=f"1x{info.block_n} blocks, density {info.density:.2f}",
                         predicted_ms=pred)
    if best == "1xN-spatial":
        return LayerPlan(info, "1xN-spatial", n=info.block_n,
                         reason=f"1x{info.block_n} blocks, density {info.density:.2f}, vector along output width",
                         predicted_ms=pred)
    return LayerPlan(info, "csr", reason=f"unstructured, density {info.density:.2f}", predicted_ms=pred)


def dense_only(info: LayerInfo, target: NamedTarget) -> LayerPlan:
    """Planner that keeps every layer dense (the dense baseline)."""
    if info.op == "conv2d" and info.spec.groups > 1:
        if info.spec.groups == info.spec.cin == info.spec.cout:
            return LayerPlan(info, "depthwise", reason="depthwise")
        return LayerPlan(info, "grouped", reason=f"grouped conv (groups={info.spec.groups})")
    return LayerPlan(info, "dense", reason="dense baseline")


def sparse_where_pruned(info: LayerInfo, target: NamedTarget) -> LayerPlan:
    """Planner that uses a sparse kernel for every layer with zeros (1xN when block-structured,
    else CSR), whatever the model predicts: for measuring sparse kernels against the model."""
    if info.op == "conv2d" and info.spec.groups > 1:
        return dense_only(info, target)
    pred = predict_ms(info, target)
    if info.density >= 1.0:
        return LayerPlan(info, "dense", reason="no zeros", predicted_ms=pred)
    if info.block_n:
        return LayerPlan(info, "1xN", n=info.block_n, reason="forced sparse (1xN blocks)", predicted_ms=pred)
    return LayerPlan(info, "csr", reason="forced sparse (unstructured)", predicted_ms=pred)


PLANNERS = {"auto": choose_format, "dense": dense_only, "sparse": sparse_where_pruned}


def _probe_weight(spec, density: float, n: int, rng: np.random.Generator) -> np.ndarray:
    w = rng.standard_normal(spec.weight_shape).astype("float32")
    if n > 1:
        blocks = rng.random((spec.cout // n, spec.cin * spec.kh * spec.kw)) < density
        mask = np.repeat(blocks, n, axis=0).reshape(spec.weight_shape)
    else:
        mask = rng.random(spec.weight_shape) < density
    return w * mask


def calibrate(target: NamedTarget, density: float = 0.2, save: bool = True,
              log: Callable[[str], None] | None = None) -> PerfParams:
    """Measure the roofline parameters on this machine with a short probe (~1 min) and store them.

    Times a 3x3 (64->64 @28x28) and a 1x1 (256->64 @14x14) layer dense, 1xN (N = vector
    lanes), 1xN-spatial (N = lanes/4, at least 2) and CSR at ``density``, and solves the
    model's equations for the parameters.
    Only for targets that run on this machine.
    """
    from .errors import TvmpruneError
    from .kernels.base import ConvSpec
    from .kernels.block_direct_conv2d import block_direct_sparse_conv2d
    from .kernels.dense_conv2d import dense_conv2d
    from .kernels.direct_sparse_conv2d import direct_sparse_conv2d
    from .kernels.sparse_conv2d import sparse_conv2d_1xn
    from .kernels.timing import time_kernel

    if not target.runs_on_host:
        raise TvmpruneError(
            f"calibration measures on this machine, which cannot run {target.name} code; run `tvmprune calibrate` "
            "on the board (or keep the built-in parameters)")
    say = log or (lambda s: None)
    rng = np.random.default_rng(0)
    n = min(max(target.vector_lanes, 2), 32)
    n_sp = max(2, target.vector_lanes // 4)
    layers = {
        "3x3": ConvSpec(1, 28, 28, 64, 64, 3, 3, padding=(1, 1, 1, 1)),
        "1x1": ConvSpec(1, 14, 14, 256, 64, 1, 1),
    }
    peak = target.peak_gflops * 1e9
    meas: dict[str, dict[str, float]] = {}
    for key, spec in layers.items():
        wd = rng.standard_normal(spec.weight_shape).astype("float32")
        t_dense = time_kernel(dense_conv2d(spec, wd, None, target), spec.in_shape, target)
        w_blk = _probe_weight(spec, density, n, rng)
        t_1xn = time_kernel(sparse_conv2d_1xn(spec, w_blk, None, n, target), spec.in_shape, target)
        w_sp = _probe_weight(spec, density, n_sp, rng)
        t_sp = time_kernel(block_direct_sparse_conv2d(spec, w_sp, None, n_sp, target), spec.in_shape, target)
        w_uns = _probe_weight(spec, density, 1, rng)
        t_csr = time_kernel(direct_sparse_conv2d(spec, w_uns, None, target), spec.in_shape, target)
        meas[key] = {"dense_ms": t_dense, "1xN_ms": t_1xn, "1xN-spatial_ms": t_sp, "csr_ms": t_csr,
                     "flops": spec.dense_flops}
        say(f"  {key} layer: dense {t_dense:.3f} ms, 1x{n} {t_1xn:.3f} ms, 1x{n_sp}-spatial {t_sp:.3f} ms, "
            f"csr {t_csr:.3f} ms at density {density}")
    eff = float(np.mean([m["flops"] / (m["dense_ms"] * 1e-3) / peak for m in meas.values()]))

    def alpha(m: dict[str, float], key: str) -> float:
        # a sparse FMA never costs less than a dense one: a smaller fit is measurement noise
        return max(1.0, (m[key] * 1e-3) * peak * eff / (density * m["flops"]))

    def alpha_spatial(key: str, measured: str, rows: int) -> float:
        # invert _spatial_ms (linear in alpha while compute-bound): t = t0 + alpha * (t1 - t0)
        spec, m = layers[key], meas[key]
        w_b = 4 * spec.cout * spec.cin * spec.kh * spec.kw
        args = (spec, density, m["flops"], w_b, rows, target)
        bw = target.mem_bandwidth_gbs * 1e9
        t0 = _spatial_ms(*args, 1e-9, peak * eff, bw)
        t1 = _spatial_ms(*args, 1.0, peak * eff, bw)
        return max(1.0, (m[measured] - t0) / max(t1 - t0, 1e-9))

    params = PerfParams(
        dense_efficiency=eff,
        alpha_1xn=float(np.mean([alpha(m, "1xN_ms") for m in meas.values()])),
        alpha_csr_3x3=alpha_spatial("3x3", "csr_ms", 1),
        alpha_csr_1x1=alpha_spatial("1x1", "csr_ms", 1),
        alpha_1xn_spatial=float(np.mean([alpha_spatial(k, "1xN-spatial_ms", n_sp) for k in layers])),
        source="calibrated (this run)",
    )
    if save:
        path = calibration_path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"target": target.to_json(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "density": density,
                "block_n": n, "spatial_block_n": n_sp, "measurements": meas,
                "params": {k: getattr(params, k) for k in DEFAULT_PARAMS}}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=2), encoding="utf-8")
        os.replace(tmp, path)  # atomic: a crash never leaves half a file
        say(f"stored in {path}")
    return params
