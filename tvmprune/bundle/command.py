"""CLI glue of runtime bundles: ``compile --bundle`` and the ``tvmprune run`` sub-command."""

from __future__ import annotations

import argparse
from typing import Any, Callable

from ..console import CommandResult, add_output_flags
from ..target import NamedTarget


def add_bundle_argument(p: argparse.ArgumentParser) -> None:
    """``--bundle`` on ``tvmprune compile``."""
    p.add_argument("--bundle", action="store_true",
                   help="also write lib/ (TVM's runtime, cross-built for the target) and bin/tvmprune-run, so the "
                        "directory runs on a board with no TVM or Python (builds the runtime once, a few minutes)")


def write_bundle_for_cli(out_dir: Any, target: NamedTarget) -> str:
    """Add the bundle to a compiled directory (progress printed); returns what to copy and run."""
    from .bundle import write_bundle

    entry = write_bundle(out_dir, target, log=lambda s: print("  " + s))
    lines = [f"wrote the {entry['triple']} runtime bundle: {', '.join(entry['files'])} "
             f"({entry['bytes'] / 1e6:.1f} MB with model.so)",
             f"  on the board: copy {out_dir}/ and run {out_dir}/bin/tvmprune-run {out_dir}/model.so "
             "--input x.npy --output y.npy"]
    if not target.runs_on_host:
        lines.append(f"  here: tvmprune run {out_dir} --input x.npy --output y.npy --emulate   "
                     "(qemu; timings mean nothing)")
    return "\n".join(lines)


def add_run_parser(sub: Any) -> Callable[[argparse.Namespace], int]:
    p = sub.add_parser("run", help="run a compiled directory on an input .npy (ARM bundles under qemu)")
    p.add_argument("module_dir", help="directory written by `tvmprune compile -o` (with --bundle for ARM targets)")
    p.add_argument("--input", required=True, help="float32 NCHW .npy of the model's input shape (see meta.json)")
    p.add_argument("--output", default=None, help="write the first output here as .npy")
    p.add_argument("--emulate", action="store_true",
                   help="run a bundle for another architecture under qemu user mode (timings mean nothing)")
    p.add_argument("--bundle-runner", action="store_true",
                   help="for this machine's architecture: use the bundle's bin/tvmprune-run, not TVM's Python runtime")
    p.add_argument("--repeat", type=int, default=None, help="timed runs after one warm-up (default 10; 3 emulated)")
    p.add_argument("--threads", type=int, default=None, help="TVM threads of tvmprune-run (default: its own)")
    add_output_flags(p)
    return run_run


def run_run(args: argparse.Namespace) -> CommandResult:
    """Run the module on the input; the result: the latency JSON (``--json``) or two lines."""
    from .run import run_module_dir

    repeat = args.repeat if args.repeat is not None else (3 if args.emulate else 10)
    res = run_module_dir(args.module_dir, args.input, args.output, emulate=args.emulate,
                         bundle_runner=args.bundle_runner, repeat=repeat, threads=args.threads)
    how = {"python": "TVM's Python runtime", "bundle": "bin/tvmprune-run",
           "qemu": "bin/tvmprune-run under " + " ".join((res.command or [])[:3])}[res.how]
    lat = res.latency
    lines = [f"ran {args.module_dir} with {how}: input {lat.get('input_shape')}, output {lat.get('output_shape')}"
             + (f" -> {args.output}" if args.output else ""),
             f"  median {lat['median_ms']:.3f} ms, spread (IQR) {lat['spread_ms']:.3f} ms over {lat['repeats']} runs"]
    if res.emulated:
        lines.append("  EMULATED: these timings mean nothing about the board; use them only to see that it runs")
    return CommandResult(res.latency, "\n".join(lines))
