#!/usr/bin/env python
"""One pruned model, compiled with several planners (``--formats``), timed side by side.

For each ``model:pattern`` the model is pruned and lowered once, then planned with every planner of
``--planners`` (default ``auto,dense``), scheduled with the shipped schedules and built; the builds
are timed in interleaved rounds in this one process (only their ratio is trusted). Per layer, the
layers where the planners differ are listed with the roofline prediction and the kernel times
measured alone (default schedule; the ``measured`` planner's cached times where it ran).

Usage::

    python scripts/bench_auto_vs_dense.py --cases mobilenet_v2:1x4@0.5,resnet18:1x4@0.5 --repeat 20
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TVM_NUM_THREADS", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def bench_case(name: str, pattern: str, planners: list[str], args: argparse.Namespace) -> None:
    import torch

    from tvmprune.build.build import build
    from tvmprune.frontend.model_source import randomize_batchnorm
    from tvmprune.lower.lower import lower
    from tvmprune.measure.runners import TvmRunner, max_rel_err, random_input, time_interleaved
    from tvmprune.model_request import resolve_model
    from tvmprune.plan.layer import formats_summary
    from tvmprune.plan.plan import plan
    from tvmprune.plan.planners import PLANNERS
    from tvmprune.schedule.schedule import schedule
    from tvmprune.target import get_target
    from tvmprune.tune.apply import schedule_source_for

    shape = tuple(int(s) for s in args.input_shape.split("x"))
    target = get_target(args.target)
    model = randomize_batchnorm(resolve_model(name, shape, prune=pattern).model, seed=0).eval()
    x = random_input(shape)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    lowered = lower(model, shape)
    src = schedule_source_for(None, target, use_shipped=True, log=None)
    runners, plans = [], {}
    for pl in planners:
        t0 = time.time()
        planned = plan(lowered, target, PLANNERS[pl])
        t_plan = time.time() - t0
        cm = build(schedule(planned, src), model_spec=name, pattern=pattern)
        err = max_rel_err(cm.run(x), ref)
        plans[pl] = cm.plans
        log(f"{name} {pattern} --formats {pl}: plan {t_plan:.1f} s, total {time.time() - t0:.1f} s; "
            f"layers {formats_summary(cm.plans)}; rel err {err:.1e}")
        runners.append(TvmRunner(cm, pl, shape))
    stats = time_interleaved(runners, args.repeat)
    base = stats[planners.index("dense")]["median_ms"] if "dense" in planners else None
    for pl, st in zip(planners, stats):
        rel = f"  ({base / st['median_ms']:.2f}x vs dense)" if base else ""
        print(f"  {name} {pattern:18s} {pl:9s} median {st['median_ms']:8.3f} ms  p25 {st['p25_ms']:8.3f} ms{rel}")
    if args.per_layer:
        per_layer(plans, target)


def per_layer(plans: dict, target) -> None:
    """The layers where the planners chose differently: prediction and the kernels timed alone."""
    from tvmprune.kernels.registry import family
    from tvmprune.plan.measured import measured_kernel_ms

    names = list(plans)
    for i, p0 in enumerate(plans[names[0]]):
        labels = [plans[n][i].format_label for n in names]
        if len(set(labels)) == 1 or p0.fmt.value == "relax":
            continue
        info = p0.info
        cells = []
        for n in names:
            p = plans[n][i]
            k = p.kernel or family(p.fmt, info.op).build(info, p.n, target)
            ms = p.measured_ms.get(p.fmt) or measured_kernel_ms(k, info, target)
            pred = p0.predicted_ms.get(p.fmt, float("nan"))
            cells.append(f"{n}={p.format_label} pred {pred:.3f} meas {ms:.3f}")
        print(f"    {info.name:28s} {info.shape_str:32s} d={info.density:.2f}  " + " | ".join(cells))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="mobilenet_v2:1x4@0.5", help="comma list of model:pattern")
    ap.add_argument("--planners", default="auto,dense")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--target", default="x86")
    ap.add_argument("--input-shape", default="1x3x224x224")
    ap.add_argument("--per-layer", action="store_true")
    args = ap.parse_args()
    for case in args.cases.split(","):
        name, pattern = case.split(":", 1)
        bench_case(name, pattern, args.planners.split(","), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
