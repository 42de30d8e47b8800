"""The ``tvmprune`` command line.

Each sub-command has an ``_add_<name>`` (arguments) and a ``_run_<name>`` (action);
``prune``, ``tune`` and ``compare`` live next to their packages and are registered here.
Each runner returns a :class:`~tvmprune.console.CommandResult`; :func:`tvmprune.console.run_command`
prints it as the mode of ``--quiet`` / ``--json`` says (the same on every command). Errors a user can
cause (:class:`tvmprune.errors.TvmpruneError`) are printed as one ``error:`` line, without a
traceback, and exit with status 2 (under ``--json`` also ``{"error": ...}`` on stdout).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from .console import CommandResult, add_output_flags, run_command
from .errors import TvmpruneError


def _add_targets(sub: Any) -> Callable[[argparse.Namespace], int]:
    p = sub.add_parser("targets", help="list the named compilation targets")
    add_output_flags(p)
    return _run_targets


def _run_targets(args: argparse.Namespace) -> CommandResult:
    from .reports.tables import format_table
    from .target import list_targets

    ts = list_targets()

    rows = [
        {"name": t.name, "lanes": t.vector_lanes, "cc": t.cross_compiler or "(host cc)", "desc": t.description,
         "llvm": f"{t.target_dict.get('mtriple')} {t.target_dict.get('mcpu')}"}
        for t in ts
    ]
    text = format_table(rows, [("name", "target"), ("lanes", "fp32 lanes"), ("llvm", "LLVM triple / cpu"),
                               ("cc", "linker"), ("desc", "description")])
    text += ("\n\nAny other CPU: pass a TVM target JSON, e.g. --target "
             "'{\"kind\": \"llvm\", \"mtriple\": \"aarch64-linux-gnu\", \"mcpu\": \"cortex-a53\"}'")
    return CommandResult([t.to_json() | {"description": t.description} for t in ts], text)


def _add_model_args(p: argparse.ArgumentParser, required_target: bool = True) -> None:
    p.add_argument("--model", help="torchvision model name (resnet18, resnet50, mobilenet_v2, vgg16, alexnet, ...), "
                                   "tiny_cnn, path/to/file.py:factory_function (runs that file), model.onnx "
                                   "(needs pip install -e '.[onnx]') or program.pt2 (torch.export.save)")
    p.add_argument("--input-shape", default=None,
                   help="NCHW input shape, default 1x3x224x224 (for .onnx / .pt2: the file's own)")
    p.add_argument("--pruned", default=None, help="directory written by `tvmprune prune -o`")
    p.add_argument("--prune", default=None, metavar="PATTERN",
                   help="prune on the fly: dense, unstructured@0.8, 1x8@0.8, filter@0.5, gator@0.5")
    p.add_argument("--dataset", default=None,
                   help="training data for --prune patterns that learn (gator@): builtin (digits), an ImageFolder "
                        "directory, or path/to/file.py:factory")
    p.add_argument("--target", default="x86", help="x86 (default), x86-avx2, x86-avx512, arm_cpu, aarch64, or TVM JSON")


def _add_compile(sub: Any) -> Callable[[argparse.Namespace], int]:
    p = sub.add_parser("compile", help="compile a (pruned) model into a deployable module")
    _add_model_args(p)
    p.add_argument("-o", "--output", required=True, help="output directory (model.so + meta.json)")
    p.add_argument("--explain", action="store_true", help="print per layer: shape, density, format, predicted time")
    p.add_argument("--formats", choices=["auto", "measured", "predicted", "dense", "sparse"], default="auto",
                   help="auto (default): the performance model proposes, and a sparse kernel is kept only where it is "
                        "timed faster than the dense one here (with the schedules the build applies; cached per "
                        "target); cross-compiled targets: the prediction with a conservative margin; measured: the "
                        "same timing for every pruned layer; predicted: the performance model alone; dense: keep every "
                        "layer dense; sparse: a sparse kernel for every layer that has zeros")
    p.add_argument("--tuning-log", default=None, help="tuning database directory written by `tvmprune tune`")
    p.add_argument("--no-shipped-schedules", action="store_true",
                   help="do not fall back to the pre-tuned schedules shipped in schedules/<target>/")
    from .bundle.command import add_bundle_argument  # runtime bundles (tvmprune/bundle)

    add_bundle_argument(p)
    add_output_flags(p)
    return _run_compile


def _schedule_source(args: argparse.Namespace, target: Any) -> Any:
    """The tuning records to apply: --tuning-log, else shipped schedules for the target."""
    from .tune.apply import schedule_source_for

    return schedule_source_for(args.tuning_log, target, use_shipped=not getattr(args, "no_shipped_schedules", False),
                               log=print)


def _run_compile(args: argparse.Namespace) -> CommandResult:
    """Compile; the result: the directory written, the layer formats and (``--explain``) the plan."""
    from .compiler import compile_model, ensure_writable_dir
    from .model_request import resolve_model
    from .plan.planners import PLANNERS
    from .target import get_target

    target = get_target(args.target)
    ensure_writable_dir(args.output)
    req = resolve_model(args.model, args.input_shape, args.pruned, args.prune, dataset=args.dataset,
                        target=target)
    print(f"compiling {req.spec} ({req.pattern}) for {target.name}, input {'x'.join(map(str, req.input_shape))}")
    cm = compile_model(
        req.model, req.input_shape, target,
        planner=PLANNERS[args.formats],
        schedule_source=_schedule_source(args, target),
        model_spec=req.spec, pattern=req.pattern, extra_meta={"pruned_dir": req.pruned_dir},
        log=lambda s: print("  " + s),
    )
    lines = []
    if args.explain:
        from .explain import explain_table, op_schedule_table

        lines += [explain_table(cm.plans, target), op_schedule_table(cm.op_schedules)]
    out = cm.export(args.output)
    from .plan.layer import formats_summary

    formats = formats_summary(cm.plans)
    lines.append(f"wrote {out}/model.so and {out}/meta.json  (layers: "
                 + ", ".join(f"{v} {k}" for k, v in formats.items()) + ")")
    if not target.runs_on_host:
        lines.append(f"  cross-compiled with {target.cross_compiler}: copy {out} to the board and load it with "
                     "tvm.runtime.load_module + relax.VirtualMachine")
    data = {"output": str(out), "model": req.spec, "pattern": req.pattern, "target": target.name,
            "input_shape": list(req.input_shape), "formats": dict(formats)}
    if args.explain:
        data["layers"] = [pl.to_json() for pl in cm.plans]
    if args.bundle:  # runtime bundle: lib/ + bin/tvmprune-run (tvmprune/bundle)
        from .bundle.command import write_bundle_for_cli

        print("\n".join(lines))  # the bundle takes minutes: show the compile result first
        lines = [write_bundle_for_cli(out, target)]
        data["bundle"] = True
    return CommandResult(data, "\n".join(lines))


def _add_bench(sub: Any) -> Callable[[argparse.Namespace], int]:
    p = sub.add_parser("bench", help="time a compiled module (optionally next to PyTorch / other engines)")
    p.add_argument("module_dir", help="directory written by `tvmprune compile -o`")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--vs-torch", action="store_true", help="also time the same PyTorch model (same as --vs pytorch)")
    p.add_argument("--vs", default=None, metavar="ENGINES",
                   help="also time the same weights in these engines, interleaved: comma list of pytorch, ort "
                        "(onnxruntime), openvino, deepsparse (install: bash scripts/install_peers.sh)")
    p.add_argument("--threads", type=int, default=None, help="threads of the other engines (default: TVM's)")
    add_output_flags(p)
    return _run_bench


def _bench_engines(args: argparse.Namespace, lm: Any) -> tuple[list[Any], list[str]]:
    """Runners of the module's PyTorch model in the ``--vs`` engines (checked before any timing)."""
    import tempfile

    from .measure.side_by_side import EngineSet, engine_runners, parse_vs
    from .frontend.model_file import model_file_kind
    from .model_request import torch_reference

    names = parse_vs(args.vs) + (["pytorch"] if args.vs_torch else [])
    if not names:
        return [], []
    es = EngineSet.find(list(dict.fromkeys(names)))
    threads = args.threads or int(lm.meta.get("target", {}).get("target", {}).get("num-cores", 0)) or 1
    if model_file_kind(str(lm.meta.get("model") or "")) == "onnx":  # no PyTorch form: the peers run the file
        return _onnx_file_engines(es, lm, threads, args.warmup)
    ref = torch_reference(lm.meta | {"input_shape": list(lm.input_shape)})
    print(f"reference model: {'pruned model from ' + ref.pruned_dir if ref.pruned_dir else ref.spec} "
          f"({ref.pattern})")  # a note: stderr under --json, nothing under --quiet
    import torch

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="tvmprune_bench_") as d:
        runners, notes = engine_runners(es, ref.model.eval(), str(lm.meta.get("pattern")), lm.input_shape,
                                        threads, d, args.warmup)
    return runners, notes + list(es.missing.values())


def _onnx_file_engines(es: Any, lm: Any, threads: int, warmup: int) -> tuple[list[Any], list[str]]:
    """``--vs`` runners of a module compiled from ``--model m.onnx``: the peers run that file."""
    import os
    import tempfile

    from .errors import NoTorchReferenceError
    from .measure.side_by_side import onnx_file_runners

    path = str(lm.meta["model"])
    if not os.path.isfile(path):
        raise NoTorchReferenceError(f"no reference for --vs: this module was compiled from the ONNX file {path}, "
                                    "which is gone; restore it, or run bench without --vs")
    print(f"reference model: the ONNX file {path} (checked against this module's output)")
    with tempfile.TemporaryDirectory(prefix="tvmprune_bench_") as d:
        runners, notes = onnx_file_runners(es, path, str(lm.meta.get("pattern")), lm.input_shape, threads, d,
                                           lm.run, warmup)
    return runners, notes + list(es.missing.values())


def _run_bench(args: argparse.Namespace) -> CommandResult:
    """Time the module (and ``--vs`` engines, interleaved); the result: one row per runtime."""
    from .compiler import load_compiled
    from .measure.runners import TvmRunner, time_interleaved
    from .reports.tables import format_table

    if args.repeat < 1 or args.warmup < 0:
        raise TvmpruneError("--repeat must be >= 1 and --warmup >= 0")
    lm = load_compiled(args.module_dir)
    meta = lm.meta
    others, notes = _bench_engines(args, lm)  # before timing: a module without a reference fails fast
    runners = [TvmRunner(lm, str(meta.get("pattern")), lm.input_shape, args.warmup)] + others
    try:
        stats = time_interleaved(runners, args.repeat)
    finally:
        for r in runners:
            r.close()
    rows = [{"runtime": "tvm" if i == 0 else r.runtime, "model": meta.get("model"), "pattern": meta.get("pattern"),
             **st} for i, (r, st) in enumerate(zip(runners, stats))]
    if others:
        best = min(rows[1:], key=lambda r: r["median_ms"])
        for row in rows:
            row["best_engine_over_this"] = best["median_ms"] / row["median_ms"]
            if any(r["runtime"] == "pytorch" for r in rows):
                row["speedup_vs_torch"] = next(r for r in rows if r["runtime"] == "pytorch")["median_ms"] / row["median_ms"]
    cols = [("runtime", "runtime"), ("model", "model"), ("pattern", "pattern"), ("median_ms", "median ms"),
            ("spread_ms", "IQR ms"), ("min_ms", "min ms"), ("max_ms", "max ms"), ("repeats", "runs")]
    if others:
        cols += [("speedup_vs_torch", "x vs torch")] if "speedup_vs_torch" in rows[0] else []
        cols.append(("best_engine_over_this", "best other engine ÷ this"))
    for n in notes:
        print(f"note: {n}")
    return CommandResult(rows, format_table(rows, cols))


def _add_calibrate(sub: Any) -> Callable[[argparse.Namespace], int]:
    p = sub.add_parser("calibrate", help="measure the performance model's parameters on this machine")
    p.add_argument("--target", default="x86", help="a target this machine runs (default x86)")
    p.add_argument("--density", type=float, default=0.2, help="density of the probe layers (default 0.2)")
    p.add_argument("--tracker", default=None, metavar="HOST:PORT",
                   help="measure on a board registered at this RPC tracker (any target, ARM included)")
    p.add_argument("--key", default=None, help="device key of the board at the tracker")
    p.add_argument("--rpc-timeout", type=float, default=60.0, metavar="SEC", help="bound on every network wait")
    add_output_flags(p)
    return _run_calibrate


def _run_calibrate(args: argparse.Namespace) -> CommandResult:
    """Calibrate; the result: the measured parameters (next to the built-in ones)."""
    from .plan.calibrate import calibrate
    from .plan.roofline import DEFAULT_PARAMS
    from .target import get_target

    if not 0.0 < args.density < 1.0:
        raise TvmpruneError(f"--density must be in (0, 1), got {args.density}")
    t = get_target(args.target)
    remote = None
    if args.tracker or args.key:
        from .tune.measure import RemoteSpec, check_tracker, parse_hostport

        if not (args.tracker and args.key):
            raise TvmpruneError("give both --tracker HOST:PORT and --key KEY to calibrate on an RPC board")
        host, port = parse_hostport(args.tracker)
        remote = RemoteSpec(host, port, args.key, rpc_timeout=args.rpc_timeout)
        info = check_tracker(remote, timeout=min(args.rpc_timeout, 15.0))
        print(f"RPC: tracker {host}:{port}, {info['servers']} board(s) with key {args.key}")
    where = f"board {args.key}" if remote else "this machine"
    print(f"calibrating the performance model for {t.name} on {where} (dense, 1x{t.vector_lanes} and CSR probe layers)")
    prm = calibrate(t, density=args.density, log=print, remote=remote)
    data = {"target": t.name, "where": where, "params": {k: getattr(prm, k) for k in DEFAULT_PARAMS},
            "builtin": dict(DEFAULT_PARAMS)}
    return CommandResult(data, "\n".join(f"  {k:18s} {getattr(prm, k):7.3f}   (built-in {v})"
                                          for k, v in DEFAULT_PARAMS.items()))


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    from . import __version__
    from .bundle.command import add_run_parser
    from .compare import add_compare_parser
    from .prune.command import add_prune_parser
    from .tune.command import add_tune_parser

    parser = argparse.ArgumentParser(
        prog="tvmprune",
        description="Prune CNNs in PyTorch and compile them with Apache TVM into autotuned sparse CPU code.",
    )
    parser.add_argument("--version", action="version", version=f"tvmprune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    runners: dict[str, Callable[[argparse.Namespace], int]] = {}
    runners["targets"] = _add_targets(sub)
    adders = [
        ("prune", add_prune_parser),
        ("compile", _add_compile),
        ("tune", add_tune_parser),
        ("bench", _add_bench),
        ("calibrate", _add_calibrate),
        ("compare", add_compare_parser),
        ("run", add_run_parser),
    ]
    for name, adder in adders:
        run = adder(sub)
        if run is None or isinstance(run, argparse.ArgumentParser):  # runner set via set_defaults(func=...)
            run = sub.choices[name].get_default("func")
        runners[name] = run
    return parser, runners


def main(argv: list[str] | None = None) -> int:
    import os

    from .runtime_threads import use_usable_cores

    # PyTorch's OpenMP threads spin-wait by default and then fight TVM's thread pool (and each
    # other on small machines), which makes `bench --vs-torch` timings erratic. Must be set
    # before torch is imported; a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    use_usable_cores()
    parser, runners = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 1
    return run_command(runners[args.command], args)


if __name__ == "__main__":
    sys.exit(main())
