"""Predicted vs measured kernel times: how well the roofline model ranks formats on this machine.

For a set of ResNet / MobileNet / VGG layer shapes and densities, times the dense, 1xN,
1xN-spatial and CSR kernels (default schedules) side by side and prints, per layer, the
predicted and measured speedup over the TVM dense kernel and whether the model's pick was
the measured fastest.

    python scripts/check_perf_model.py [--target x86] [--quick]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from tvmprune.reports.tables import format_table  # noqa: E402
from tvmprune.kernels.base import ConvSpec  # noqa: E402
from tvmprune.kernels.format import LayerOp  # noqa: E402
from tvmprune.plan.calibrate import probe_families, probe_weight, time_family  # noqa: E402
from tvmprune.plan.layer import LayerInfo  # noqa: E402
from tvmprune.plan.planners import predict_ms  # noqa: E402
from tvmprune.target import get_target  # noqa: E402

LAYERS = {
    "r50 3x3 64 @56": ConvSpec(1, 56, 56, 64, 64, 3, 3, padding=(1, 1, 1, 1)),
    "r50 3x3 256 @14": ConvSpec(1, 14, 14, 256, 256, 3, 3, padding=(1, 1, 1, 1)),
    "r50 3x3 512 @7": ConvSpec(1, 7, 7, 512, 512, 3, 3, padding=(1, 1, 1, 1)),
    "r50 1x1 256->64 @56": ConvSpec(1, 56, 56, 256, 64, 1, 1),
    "r50 1x1 1024->256 @14": ConvSpec(1, 14, 14, 1024, 256, 1, 1),
    "mbv2 1x1 96->576 @14": ConvSpec(1, 14, 14, 96, 576, 1, 1),
}


def main(argv: list[str] | None = None) -> int:
    from tvmprune.runtime_threads import use_usable_cores

    use_usable_cores()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="x86")
    ap.add_argument("--quick", action="store_true", help="density 0.2 only, three layers")
    ap.add_argument("--json", default=None, help="write the rows (with layer specs) to this file")
    args = ap.parse_args(argv)
    t = get_target(args.target)
    rng = np.random.default_rng(0)
    densities = [0.2] if args.quick else [0.3, 0.2, 0.1]
    layers = dict(list(LAYERS.items())[:3]) if args.quick else LAYERS
    dense, *sparse = probe_families()  # the kernel families calibration measures, dense first
    rows, hits = [], 0
    for name, spec in layers.items():
        t_dense = time_family(dense, spec, probe_weight(spec, 1.0, 0, rng), 0, t)
        for d in densities:
            for fam in sparse:
                n = fam.probe.block_n(t)
                w = probe_weight(spec, d, n, rng)
                key, label = fam.format, fam.format.label(n)
                pred = predict_ms(LayerInfo(0, name, LayerOp.CONV2D, w, spec=spec), t)
                measured = time_family(fam, spec, w, n, t)
                ok = (pred[key] < pred["dense"]) == (measured < t_dense)
                hits += ok
                rows.append({"layer": name, "density": d, "kernel": label, "format": str(key), "spec": list(
                                 map(str, [spec.in_h, spec.cin, spec.cout, spec.kh])),
                             "pred_x": pred["dense"] / pred[key], "meas_x": t_dense / measured,
                             "dense_ms": t_dense, "ms": measured, "agree": "yes" if ok else "NO"})
                print(f"  {name} d={d} {label}: predicted {pred['dense'] / pred[key]:.2f}x, "
                      f"measured {t_dense / measured:.2f}x", flush=True)
    print(format_table(rows, [("layer", "layer"), ("density", "density"), ("kernel", "kernel"),
                              ("dense_ms", "dense ms"), ("ms", "sparse ms"), ("pred_x", "pred x"),
                              ("meas_x", "meas x"), ("agree", "sparse-vs-dense call right")]))
    print(f"\nsparse-vs-dense decision right in {hits}/{len(rows)} cases")
    if args.json:
        import json

        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
