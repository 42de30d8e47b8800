"""``tvmprune tune``: tune a (pruned) model's kernels with MetaSchedule.

Examples::

    tvmprune tune --model resnet50 --prune 1x16@0.8 --target x86 --trials 2000
    tvmprune tune --pruned out/resnet18-1x4 --target aarch64 --tracker 127.0.0.1:9190 --key rpi4 \\
        --trials 500 --time-budget 3600
    tvmprune compile --pruned out/resnet18-1x4 --target aarch64 --tuning-log tuning_logs/resnet18-1x4-aarch64 -o m/

The database (``--log``, default ``tuning_logs/<model>-<pattern>-<target>/``) is appended
per measured candidate; run the same command again to resume.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any, Callable

from ..console import CommandResult, add_output_flags


def add_tune_parser(sub: Any) -> Callable[[argparse.Namespace], int]:
    p = sub.add_parser(
        "tune",
        help="autotune a model's kernels with MetaSchedule (resumable JSON database)",
        description="Tune the conv / linear kernels of a (pruned) model with MetaSchedule (XGBoost cost model, "
                    "evolutionary search over each kernel's schedule space), locally or on an RPC board. "
                    "Records go to a JSON database in --log; run again to resume; apply with "
                    "`tvmprune compile --tuning-log DIR`.",
    )
    p.add_argument("--model", help="torchvision model name, tiny_cnn, path/to/file.py:factory_function, "
                                   "model.onnx or program.pt2")
    p.add_argument("--input-shape", default=None, help="NCHW input shape, default 1x3x224x224")
    p.add_argument("--pruned", default=None, help="directory written by `tvmprune prune -o`")
    p.add_argument("--prune", default=None, metavar="PATTERN", help="prune on the fly: 1x16@0.8, unstructured@0.9 ...")
    p.add_argument("--target", default="x86", help="x86 (default), x86-avx2, x86-avx512, arm_cpu, aarch64, or TVM JSON")
    p.add_argument("--trials", type=int, default=2000, help="measurement budget over all kernels (default 2000; "
                   "records already in the log count)")
    p.add_argument("--time-budget", type=float, default=None, metavar="SEC",
                   help="stop searching after SEC seconds (between measurement batches); run again to continue")
    p.add_argument("--log", default=None, metavar="DIR",
                   help="tuning database directory (default tuning_logs/<model>-<pattern>-<target>/)")
    p.add_argument("--tracker", default=None, metavar="HOST:PORT", help="RPC tracker of the board to measure on")
    p.add_argument("--key", default=None, help="RPC device key registered at the tracker")
    p.add_argument("--rpc-timeout", type=float, default=60.0, metavar="SEC",
                   help="bound on every wait on the network: reach the tracker, get a session on the board, upload "
                        "(default 60); a board that stays silent this long is given up and the run stops")
    p.add_argument("--run-timeout", type=float, default=None, metavar="SEC",
                   help="bound on running one candidate on the board (default: 50x the default schedule's "
                        "measuring time, at least 10 s); a candidate over it is recorded as failed")
    p.add_argument("--session-timeout", type=int, default=600, help="the RPC server ends a session older than this (s)")
    p.add_argument("--connect-timeout", type=float, default=15.0, help="give up reaching the tracker after this (s)")
    p.add_argument("--emulated", action="store_true",
                   help="the RPC board is emulated (qemu): times are marked as meaningless")
    p.add_argument("--trials-per-iter", type=int, default=16, help="candidates built and measured per batch")
    p.add_argument("--population", type=int, default=64, help="evolutionary search population size")
    p.add_argument("--formats", choices=["auto", "predicted", "dense", "sparse"], default="auto",
                   help="layer formats, as in `compile` (tune what you will compile): auto (default), predicted, dense, sparse")
    p.add_argument("--dense", action="store_true", help=argparse.SUPPRESS)  # old spelling of --formats dense
    p.add_argument("--no-e2e", action="store_true", help="skip compiling and timing the whole model default vs tuned")
    p.add_argument("--sparse-only", action="store_true",
                   help="tune only the sparse kernels (1xN, CSR, interspace), as before every kernel was a task; "
                        "dense / depthwise / grouped / linear layers keep their default schedules")
    p.add_argument("--seed", type=int, default=0)
    add_output_flags(p)
    return run_tune


def default_log_dir(model: str, pattern: str, target: str) -> Path:
    def safe(s: str) -> str:
        s = Path(s.split(":")[0]).stem if (":" in s or "/" in s) else s
        return re.sub(r"[^A-Za-z0-9_.@-]+", "_", s).strip("_") or "model"

    return Path("tuning_logs") / f"{safe(model)}-{safe(pattern)}-{safe(target)}"


def _is_sparse(kernel: Any) -> bool:
    from ..kernels.format import Format

    return kernel.format in (Format.BSR, Format.BSR_SPATIAL, Format.CSR, Format.INTERSPACE)


def _remote_from_args(args: argparse.Namespace) -> Any:
    """The RemoteSpec of ``--tracker/--key`` (checked: the tracker answers, boards counted), or a local one."""
    from ..errors import TuningError
    from .measure import RemoteSpec, check_tracker, parse_hostport

    if not (args.tracker or args.key):
        return RemoteSpec()
    if not (args.tracker and args.key):
        raise TuningError("give both --tracker HOST:PORT and --key KEY to measure on an RPC board")
    host, port = parse_hostport(args.tracker)
    if args.rpc_timeout <= 0 or (args.run_timeout is not None and args.run_timeout <= 0):
        raise TuningError("--rpc-timeout and --run-timeout must be positive (seconds)")
    remote = RemoteSpec(host, port, args.key, session_timeout_sec=args.session_timeout,
                        rpc_timeout=args.rpc_timeout, run_timeout=args.run_timeout)
    info = check_tracker(remote, timeout=args.connect_timeout)
    remote.boards = max(1, int(info["servers"]))
    print(f"RPC: tracker {host}:{port}, {info['servers']} server(s) with key {args.key}: {info['device']}"
          f"; {remote.boards} candidate(s) measured at once")
    return remote


def _summary(args: argparse.Namespace, req: Any, target: Any, report: Any) -> dict[str, Any]:
    return {"model": req.spec, "pattern": req.pattern, "target": target.to_json(), "trials": args.trials,
            "sparse_only": bool(args.sparse_only), **report.to_json(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def run_tune(args: argparse.Namespace) -> CommandResult:
    """Tune; progress is printed, the result is the report (also written to LOG/report.json)."""
    from ..errors import TuningError
    from ..model_request import resolve_model
    from ..target import get_target
    from ..compiler import lower, plan
    from ..plan.planners import PLANNERS
    from .console import stderr_to_file
    from .tasks import extract_tasks
    from .tuner import format_report, tune_tasks

    t0 = time.time()
    deadline = t0 + args.time_budget if args.time_budget else None
    quiet = bool(getattr(args, "quiet", False) or getattr(args, "json", False))  # the tuner: no bar, no per-task lines
    say = (lambda s: None) if getattr(args, "quiet", False) else print  # under --json: to stderr (tvmprune.console)
    if args.trials <= 0:
        raise TuningError("--trials must be positive")
    target = get_target(args.target)
    remote = _remote_from_args(args)
    emulated = args.emulated or bool(args.key and "emul" in args.key)
    req = resolve_model(args.model, args.input_shape, args.pruned, args.prune, target=target)
    log_dir = Path(args.log) if args.log else default_log_dir(req.spec, req.pattern, target.name)
    say(f"tuning {req.spec} ({req.pattern}) for {target.name}: {args.trials} trials"
        + (f", time budget {args.time_budget:.0f} s" if args.time_budget else "") + f"; log {log_dir}")
    from .db import open_log_dir

    with stderr_to_file(open_log_dir(log_dir)):
        planned = plan(lower(req.model, req.input_shape), target, PLANNERS["dense" if args.dense else args.formats])
        tasks = extract_tasks(planned.plans, kinds=_is_sparse if args.sparse_only else None)
        if not tasks and args.sparse_only:
            raise TuningError("--sparse-only: the model has no sparse kernels (prune it, or tune without the flag)")
        say(f"  {len(planned.plans)} conv/linear layers -> {len(tasks)} distinct kernel(s)"
            + (" (sparse only)" if args.sparse_only else "") + f" ({time.time() - t0:.0f} s)")
        e2e = None
        if not args.no_e2e and target.runs_on_host and not remote.is_rpc:
            from .end_to_end import EndToEnd

            e2e = EndToEnd(planned, say)
        elif not args.no_e2e:
            say("  end-to-end timing skipped: the target does not run on this machine (compile with "
                f"--tuning-log {log_dir} and run `tvmprune bench` on the board)")
        report = tune_tasks(tasks, target, log_dir, args.trials, remote=remote, trials_per_iter=args.trials_per_iter,
                            population=args.population, seed=args.seed, emulated=emulated, quiet=quiet,
                            deadline=deadline, reserve_s=e2e.reserve_s if e2e else 0.0)
        report.emulated, report.time_budget_s = emulated, args.time_budget
        if e2e is not None:
            try:
                report.model_default_ms, report.model_tuned_ms = e2e.compare(log_dir)
            except Exception as e:  # noqa: BLE001 - the tuning itself succeeded
                print(f"  warning: end-to-end timing failed: {str(e).strip().splitlines()[-1]}")
    report.wall_s = time.time() - t0
    summary = _summary(args, req, target, report)
    (log_dir / "report.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    text = f"\n{format_report(report)}\n\napply with: tvmprune compile ... --target {args.target} --tuning-log {log_dir}"
    return CommandResult(summary | {"log": str(log_dir)}, text)
