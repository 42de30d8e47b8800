"""Interleaved A/B of the interspace kernel: this checkout's version vs the one at a git ref.

    PYTHONPATH=$PWD nice -n 10 python scripts/interspace_ab.py --old HEAD --layers 64@56,512@7 --rounds 15

The old kernel modules (``interspace_conv2d.py`` and the helpers named by ``--modules``) are read
from ``git show REF:path``, loaded as private copies inside ``tvmprune.kernels`` (their imports of
each other rewritten to the copies), and built on the same random coefficients, basis and mask
as the new ones; SP's CSR direct conv on the same mask is the third candidate. Each round times
old, new and SP once each (order rotated per round); the report gives per-layer medians and the
median of the per-round ratios new/old and new/SP (the issue's target: IP/SP <= 1.3).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KERNELS = "tvmprune/kernels"


def _load_old(ref: str, modules: list[str]):
    """The ``interspace_conv2d`` module at ``ref``, with ``modules`` (names under tvmprune/kernels)
    also taken from ``ref``."""
    names = {m: f"_ab_old_{m}" for m in modules}
    loaded = None
    for m in modules + ["interspace_conv2d"]:
        src = subprocess.run(["git", "show", f"{ref}:{KERNELS}/{m}.py"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
        for orig, new in names.items():
            src = src.replace(f"from .{orig} import", f"from .{new} import")
        path = Path(f"/tmp/_ab_old_{m}.py")
        path.write_text(src)
        full = f"tvmprune.kernels._ab_old_{m}"
        spec = importlib.util.spec_from_file_location(full, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[full] = mod
        spec.loader.exec_module(mod)
        loaded = mod
    return loaded


def main() -> None:
    from tvmprune.kernels.base import ConvSpec
    from tvmprune.kernels.direct_sparse_conv2d import direct_sparse_conv2d
    from tvmprune.kernels.interspace_conv2d import interspace_conv2d
    from tvmprune.measure.kernel import compile_kernel, time_compiled
    from tvmprune.target import get_target

    ap = argparse.ArgumentParser()
    ap.add_argument("--old", default="HEAD")
    ap.add_argument("--modules", default="channel_major", help="helper modules also taken from --old")
    ap.add_argument("--layers", default="64@56,512@7")
    ap.add_argument("--density", type=float, default=0.1)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--n", type=int, default=1)
    args = ap.parse_args()
    old = _load_old(args.old, [m for m in args.modules.split(",") if m])
    t = get_target("x86")
    for item in args.layers.split(","):
        cin, hw = (int(v) for v in item.split("@"))
        rng = np.random.default_rng(0)
        spec = ConvSpec(1, hw, hw, cin, cin, 3, 3, padding=(1, 1, 1, 1))
        basis = rng.standard_normal((9, 3, 3)).astype("float32")
        c = (rng.standard_normal((cin, cin, 9)) * (rng.random((cin, cin, 9)) < args.density)).astype("float32")
        ks = {"old": old.interspace_conv2d(spec, c, basis, None, t, n=args.n),
              "new": interspace_conv2d(spec, c, basis, None, t, n=args.n),
              "sp": direct_sparse_conv2d(spec, c.reshape(cin, cin, 3, 3), None, t)}
        print(f"{item}: old {ks['old'].info['layout']}\n        new {ks['new'].info['layout']}", flush=True)
        libs = {k: compile_kernel(v, t) for k, v in ks.items()}
        times: dict[str, list[float]] = {k: [] for k in ks}
        order = list(ks)
        for r in range(args.rounds):
            for k in order[r % 3:] + order[:r % 3]:
                times[k].append(time_compiled(libs[k], ks[k], spec.in_shape, repeat=3, min_repeat_ms=10))
        med = {k: float(np.median(v)) for k, v in times.items()}
        no = [a / b for a, b in zip(times["new"], times["old"])]
        ns = [a / b for a, b in zip(times["new"], times["sp"])]
        os_ = [a / b for a, b in zip(times["old"], times["sp"])]
        print(f"  medians ms: " + ", ".join(f"{k} {v:.3f}" for k, v in med.items()))
        print(f"  new/old median {np.median(no):.3f} (q25 {np.quantile(no, .25):.3f} q75 {np.quantile(no, .75):.3f}); "
              f"new/sp {np.median(ns):.3f}; old/sp {np.median(os_):.3f}")
        mn = {k: float(np.min(v)) for k, v in times.items()}
        print(f"  minima ms: " + ", ".join(f"{k} {v:.3f}" for k, v in mn.items())
              + f"; new/old {mn['new'] / mn['old']:.3f}, new/sp {mn['new'] / mn['sp']:.3f}, "
              f"old/sp {mn['old'] / mn['sp']:.3f}", flush=True)


if __name__ == "__main__":
    main()
