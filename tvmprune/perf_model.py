"""Roofline performance model: predicts dense and sparse time per layer and picks a format.

Park et al. (2016): sparse time is bounded by compute (``alpha`` x the useful FLOPs at
the dense kernel's throughput, where ``alpha`` > 1 is the cost of indirection) and by
memory traffic (input activations + ``beta`` x weight bytes, index included). Dense time
is FLOPs over the throughput the dense kernel reaches. The format with the smaller
prediction wins.
"""

from __future__ import annotations

from .frontend.lowering import LayerInfo, LayerPlan
from .target import NamedTarget

# fraction of peak FLOP/s our dense kernels reach (measured on x86 AVX-512: ~245 of 320)
DENSE_EFFICIENCY = 0.6
# Slowdown of a sparse multiply-add against a dense one (index loads, broadcast, tails),
# fitted to scripts/bench_kernels.py --quick on x86 AVX-512 (2 threads): 1x16 reaches
# 6.0x / 4.1x / 2.3x over the best dense at density 0.1 / 0.2 / 0.3 (alpha ~1.5-1.7);
# CSR direct conv 1.2-2.0x at 0.1 (alpha ~5 on 3x3, ~7 on 1x1, where its input transpose
# dominates).
ALPHA_1XN = 1.6
ALPHA_CSR_3X3 = 5.0
ALPHA_CSR_1X1 = 7.0


def predict_ms(info: LayerInfo, target: NamedTarget) -> dict[str, float]:
    """Predicted milliseconds per candidate format for ``info`` on ``target``."""
    flops = info.dense_flops
    density = info.density
    peak = target.peak_gflops * 1e9 * DENSE_EFFICIENCY
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
    lanes_fill = min(1.0, (n or 1) / target.vector_lanes)
    if n:
        t_c = ALPHA_1XN * density * flops / (peak * lanes_fill)
        t_m = (act_bytes + w_bytes * density * (1 + 1 / n)) / bw
        out["1xN"] = max(t_c, t_m) * 1e3
    alpha_csr = ALPHA_CSR_1X1 if info.op == "linear" or (info.spec.kh == 1 and info.spec.kw == 1) else ALPHA_CSR_3X3
    t_c = alpha_csr * density * flops / peak
    t_m = (act_bytes + 2 * w_bytes * density) / bw
    out["csr"] = max(t_c, t_m) * 1e3
    return out


def choose_format(info: LayerInfo, target: NamedTarget) -> LayerPlan:
    """Pick dense / depthwise / 1xN / csr for one layer from the roofline predictions."""
    if info.op == "conv2d" and info.spec.groups > 1:
        if info.spec.groups == info.spec.cin == info.spec.cout:
            return LayerPlan(info, "depthwise", reason="depthwise convs stay dense", predicted_ms=predict_ms(info, target))
        return LayerPlan(info, "relax", reason=f"grouped conv (groups={info.spec.groups}) has no kernel")
    pred = predict_ms(info, target)
    best = min(pred, key=pred.get)
    if best == "dense":
        why = "dense predicted fastest" if info.density < 1.0 else "no zeros"
        return LayerPlan(info, "dense", reason=why, predicted_ms=pred)
    if best == "1xN":
        return LayerPlan(info, "1xN", n=info.block_n, reason=f"1x{info.block_n} blocks, density {info.density:.2f}",
                         predicted_ms=pred)
    return LayerPlan(info, "csr", reason=f"unstructured, density {info.density:.2f}", predicted_ms=pred)


def dense_only(info: LayerInfo, target: NamedTarget) -> LayerPlan:
    """Planner that keeps every layer dense (the dense baseline)."""
    if info.op == "conv2d" and info.spec.groups > 1:
        if info.spec.groups == info.spec.cin == info.spec.cout:
            return LayerPlan(info, "depthwise", reason="depthwise")
        return LayerPlan(info, "relax", reason=f"grouped conv (groups={info.spec.groups}) has no kernel")
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
