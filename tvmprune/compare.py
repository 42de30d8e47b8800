"""``tvmprune compare``: prune, compile, (tune,) time and (fine-tune and) evaluate several patterns.

For every pattern (``dense,unstructured@0.8,1x4@0.8,filter@0.5`` ...) of one model:

1. prune a copy of the (trained) dense model (:func:`tvmprune.prune.prune_model`);
2. with a data set, fine-tune it ``--finetune-epochs`` epochs with the masks kept applied
   and measure top-1 accuracy on the validation split;
3. compile it for the target (the planner picks a dense / 1xN / CSR kernel per layer),
   tuning the kernels first when ``--trials N > 0`` and tuning support is installed;
4. time it: on this machine for host targets — every pattern side by side in interleaved
   rounds after all are compiled, with ``--vs pytorch,ort,openvino,deepsparse`` next to the same
   pruned weights in those engines ("best engine ÷ tvmprune" > 1: tvmprune is faster) — over RPC
   (``--tracker``/``--key``) for a board, or not at all (latency ``null``) for a board without a tracker.

Writes ``compare.json``, ``compare.csv`` and ``compare.png`` into ``-o`` (default
``results/``) and prints a table.  With no ``--model`` it runs the built-in job: the small
:class:`tvmprune.data.DigitsCNN` trained on the bundled digits, then the patterns of
``DEFAULT_PATTERNS`` with one fine-tuning epoch each.

FLOPs are counted over conv / linear layers (2 x multiply-accumulates):
``flops_dense`` is the unpruned model's count (the dense-equivalent work), ``flops_effective``
counts only the MACs of nonzero weights of the pruned model (a filter-pruned model is
physically smaller, so both of its reductions show there).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .console import CommandResult, add_output_flags, progress, progress_enabled
from .errors import PruneConfigError, RPCConnectionError, TvmpruneError
from .tune.measure import call_with_timeout, parse_hostport
from .plan.layer import formats_summary

DEFAULT_PATTERNS = "dense,unstructured@0.8,1x4@0.8,1x4@0.8+norearrange,filter@0.5"
BUILTIN_MODEL = "digits"
BUILTIN_TRAIN_EPOCHS = 4
JSON_FILE, CSV_FILE, PNG_FILE = "compare.json", "compare.csv", "compare.png"
CSV_COLUMNS = (
    "pattern", "kind", "n", "rate", "rearrange", "params_nonzero", "params_total", "weights_nonzero",
    "weights_total", "flops_dense", "flops_effective", "latency_median_ms", "latency_spread_ms", "speedup",
    "accuracy", "accuracy_before_finetune", "finetune_epochs", "trials", "formats", "tvm_max_abs_err",
    "best_engine", "best_engine_ms", "best_engine_over_tvmprune",
)


# --------------------------------------------------------------------------- arguments

def add_compare_parser(sub: Any) -> Callable[[argparse.Namespace], CommandResult]:
    """Register ``tvmprune compare``; returns its runner."""
    p = sub.add_parser(
        "compare", help="prune, compile and time several pruning patterns side by side (with accuracy)",
        description="Prune one model with each pattern, compile it for the target, time it, and (with a data "
                    "set) fine-tune and measure accuracy. Without --model: the built-in digits CNN and data set.",
    )
    p.add_argument("--model", default=None,
                   help=f"'{BUILTIN_MODEL}' (built-in CNN for the bundled digits; the default), a torchvision name "
                        "(resnet18, ...), tiny_cnn, or path/to/file.py:factory")
    p.add_argument("--patterns", default=None,
                   help=f"comma-separated pruning patterns (default for the built-in job: {DEFAULT_PATTERNS}; "
                        "otherwise dense,unstructured@0.8,1x4@0.8,1x8@0.8,1x16@0.8,filter@0.5)")
    p.add_argument("--target", default="x86", help="x86 (default), x86-avx2, x86-avx512, arm_cpu, aarch64, or TVM JSON")
    p.add_argument("--input-shape", default=None,
                   help="NCHW input shape (default 1x1x16x16 for the built-in model, else 1x3x224x224)")
    p.add_argument("--dataset", default=None,
                   help="measure accuracy on: 'builtin' (bundled digits), an ImageFolder directory, or "
                        "path/to/file.py:factory returning (train_loader, val_loader); default: builtin for "
                        f"--model {BUILTIN_MODEL}, none otherwise")
    p.add_argument("--finetune-epochs", type=int, default=1, help="fine-tuning epochs per pruned pattern (default 1)")
    p.add_argument("--finetune-lr", type=float, default=0.02, help="fine-tuning SGD learning rate (default 0.02)")
    p.add_argument("--train-epochs", type=int, default=None,
                   help=f"train the dense model first (default {BUILTIN_TRAIN_EPOCHS} for the built-in model, 0 "
                        "otherwise: a factory is expected to load trained weights)")
    p.add_argument("--batch-size", type=int, default=32, help="training / fine-tuning batch size (default 32)")
    p.add_argument("--trials", type=int, default=0, help="tuning trials per pattern (0: default schedules)")
    p.add_argument("--tuning-log", default=None, help="tuning database directory to apply (see `tvmprune tune`)")
    p.add_argument("--no-shipped-schedules", action="store_true",
                   help="do not fall back to the pre-tuned schedules shipped in schedules/<target>/")
    p.add_argument("--tracker", default=None, metavar="HOST:PORT", help="RPC tracker to time a board's modules")
    p.add_argument("--key", default=None, help="device key registered at the RPC tracker")
    p.add_argument("--rpc-timeout", type=float, default=60.0,
                   help="seconds to wait for the tracker / a free device (default 60)")
    p.add_argument("--emulated", action="store_true",
                   help="the RPC board is emulated (qemu, e.g. scripts/emulated_board.py): its times are marked "
                        "as meaningless (implied by a --key containing 'emul')")
    p.add_argument("--vs", default=None, metavar="ENGINES",
                   help="also time each pattern's pruned model in these engines, side by side: comma list of "
                        "pytorch, ort (onnxruntime), openvino, deepsparse (install: bash scripts/install_peers.sh)")
    p.add_argument("--repeat", type=int, default=30, help="timed runs per pattern (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed for model init, data split and training")
    p.add_argument("-o", "--output", default="results", help="output directory (default results/)")
    p.add_argument("--no-plot", action="store_true", help="do not write compare.png")
    add_output_flags(p)
    return run


# --------------------------------------------------------------------------- counting

def count_model(model: Any, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Parameters and conv / linear FLOPs of ``model`` on one input of ``input_shape``.

    Returns params_total, params_nonzero (all parameters), weights_total, weights_nonzero
    (conv / linear weights), flops (dense 2 x MACs of those layers) and flops_nonzero
    (2 x MACs of nonzero weights only).
    """
    import torch
    from torch import nn

    out = {"params_total": 0, "params_nonzero": 0, "weights_total": 0, "weights_nonzero": 0, "flops": 0,
           "flops_nonzero": 0}
    for p in model.parameters():
        out["params_total"] += p.numel()
        out["params_nonzero"] += int((p != 0).sum())
    hooks = []

    from .prune.interspace import InterspaceConv2d

    def hook(mod: Any, inp: Any, outp: Any) -> None:
        # interspace layers count their coefficients (the sparse part; the K² x K² basis is not counted)
        w = (mod.masked_coefficients() if isinstance(mod, InterspaceConv2d) else mod.weight).detach()
        out["weights_total"] += w.numel()
        out["weights_nonzero"] += int((w != 0).sum())
        if isinstance(mod, (nn.Conv2d, InterspaceConv2d)):
            positions = outp.shape[0] * outp.shape[2] * outp.shape[3]  # per output channel
            out["flops"] += 2 * positions * w.numel()
            out["flops_nonzero"] += 2 * positions * int((w != 0).sum())
        else:
            rows = outp.numel() // outp.shape[-1]
            out["flops"] += 2 * rows * w.numel()
            out["flops_nonzero"] += 2 * rows * int((w != 0).sum())

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, InterspaceConv2d)):
            hooks.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(input_shape))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return out




def _fmt_formats(fm: dict[str, int] | None) -> str:
    return ", ".join(f"{v} {k}" for k, v in fm.items()) if fm else ""


# --------------------------------------------------------------------------- tuning

def _schedule_source(args: argparse.Namespace, target: Any, say: Callable[[str], None]) -> Any:
    """Tuned schedules to apply: --tuning-log, else the shipped ones (unless --no-shipped-schedules)."""
    from .tune.apply import schedule_source_for

    return schedule_source_for(args.tuning_log, target, use_shipped=not args.no_shipped_schedules, log=say)


def _tune_api() -> Callable[..., Any] | None:
    """The tuning entry point (:func:`_tune`); None means tuning is unavailable (tests use this seam)."""
    return _tune


def _tune(planned: Any, trials: int, log_dir: str, args: argparse.Namespace,
          say: Callable[[str], None]) -> tuple[Any, int]:
    """Tune the planned model's kernels (``trials`` in all, appended to ``log_dir``).

    Returns (schedule source for the schedule stage, trials recorded in the database).
    """
    from .tune.apply import schedule_source_for
    from .tune.measure import RemoteSpec
    from .tune.tasks import extract_tasks
    from .tune.tuner import tune_tasks

    remote = RemoteSpec()
    if args.tracker:
        host, port = parse_hostport(args.tracker)
        remote = RemoteSpec(host, port, args.key, session_timeout_sec=int(max(60, args.rpc_timeout)))
    target = planned.target
    rep = tune_tasks(extract_tasks(planned.plans), target, log_dir, trials, remote=remote, measure_tuned=False,
                     log=lambda s: say("    " + s))
    used = sum(t.trials for t in rep.tasks) if rep.tasks else rep.new_trials
    return schedule_source_for(log_dir, target, use_shipped=not args.no_shipped_schedules, log=None), used


# --------------------------------------------------------------------------- timing

class RemoteTimer:
    """Times exported modules on a board reached through an RPC tracker."""

    def __init__(self, tracker: str, key: str | None, timeout: float = 60.0) -> None:
        if not key:
            raise RPCConnectionError("--tracker needs --key (the device key the board registered with)")
        self.host, self.port = parse_hostport(tracker)
        self.key, self.timeout = key, timeout
        try:
            with socket.create_connection((self.host, self.port), timeout=min(timeout, 10.0)):
                pass
        except OSError as e:
            raise RPCConnectionError(f"cannot reach the RPC tracker at {self.host}:{self.port} ({e}); start it "
                                     "with `python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port PORT`") from None
        self._check_key()

    def _check_key(self) -> None:
        """Fail early (before pruning and compiling) when no board registered ``key``."""
        from tvm import rpc

        try:
            summary = call_with_timeout(lambda: rpc.connect_tracker(self.host, self.port).summary(), self.timeout,
                                    f"asking the RPC tracker {self.host}:{self.port} for its devices")
        except RPCConnectionError:
            raise
        except Exception as e:  # noqa: BLE001
            raise RPCConnectionError(f"{self.host}:{self.port} does not answer as a TVM RPC tracker: "
                                     f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        keys = sorted({str(s.get("key", "")).split(":", 1)[-1] for s in (summary or {}).get("server_info", [])})
        if self.key not in keys:
            raise RPCConnectionError(
                f"no board is registered with key {self.key!r} at the RPC tracker {self.host}:{self.port} "
                f"(registered: {', '.join(keys) or 'none'}); start one with `python -m tvm.exec.rpc_server "
                f"--tracker {self.host}:{self.port} --key {self.key}`")

    def _session(self) -> Any:
        from tvm import rpc

        def connect() -> Any:
            tr = rpc.connect_tracker(self.host, self.port)
            return tr.request(self.key, priority=1, session_timeout=max(60, int(self.timeout * 10)), max_retry=2)

        try:
            return call_with_timeout(connect, self.timeout, f"requesting device {self.key!r} from {self.host}:{self.port}")
        except RPCConnectionError as e:
            raise RPCConnectionError(f"{e}; is a board registered with key {self.key!r}? check with "
                                     f"`python -m tvm.exec.query_rpc_tracker --port {self.port}`") from None
        except Exception as e:  # noqa: BLE001
            raise RPCConnectionError(f"RPC tracker {self.host}:{self.port} gave no device {self.key!r}: "
                                     f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None

    def time(self, cm: Any, warmup: int, repeat: int) -> dict[str, float]:
        with tempfile.TemporaryDirectory(prefix="tvmprune_rpc_") as d:
            cm.export(d)
            from .tune.board_pool import time_model_on_board  # bounded waits, retries (issue 20)

            return time_model_on_board(self.host, self.port, self.key, os.path.join(d, "model.so"), cm.input_shape,
                                       warmup, repeat, rpc_timeout=self.timeout)


def _check_against_torch(cm: Any, model: Any, input_shape: tuple[int, ...], seed: int) -> float:
    """Max |TVM - PyTorch| on one random input (host targets)."""
    import numpy as np
    import torch

    x = np.random.default_rng(seed + 1).standard_normal(input_shape).astype("float32")
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(x)).numpy()
    return float(np.abs(cm.run(x) - ref).max())


# --------------------------------------------------------------------------- model + data

def _resolve(args: argparse.Namespace) -> tuple[Any, str, tuple[int, ...], Any, int]:
    """(dense model, spec, input shape, dataset or None, train epochs)."""
    import torch

    from .dataset import BUILTIN_NAMES, DIGITS_INPUT_SHAPE, load_dataset
    from .frontend.model_source import check_input_shape, load_model, parse_input_shape

    spec = args.model or BUILTIN_MODEL
    builtin_model = spec.lower() in (BUILTIN_MODEL, "digits_cnn", "digits_resnet")
    dataset_spec = args.dataset if args.dataset is not None else ("builtin" if builtin_model else None)
    if args.dataset is not None and str(args.dataset).lower() in ("none", ""):
        dataset_spec = None
    if args.input_shape:
        shape = parse_input_shape(args.input_shape)
    elif builtin_model or (dataset_spec and str(dataset_spec).lower() in BUILTIN_NAMES):
        shape = DIGITS_INPUT_SHAPE
    else:
        shape = parse_input_shape(None)
    if builtin_model and spec.lower() == "digits_resnet":  # the residual one: channel gating (gator@)
        model = load_model("digits_resnet", seed=args.seed)
    elif builtin_model:
        from .data import DigitsCNN

        torch.manual_seed(args.seed)
        model = DigitsCNN(in_channels=shape[1]).eval()
        spec = BUILTIN_MODEL
    else:
        model = load_model(spec, seed=args.seed)
    check_input_shape(model, shape)
    ds = load_dataset(dataset_spec, shape, batch_size=args.batch_size, seed=args.seed) if dataset_spec else None
    epochs = args.train_epochs if args.train_epochs is not None else (BUILTIN_TRAIN_EPOCHS if builtin_model and ds
                                                                     else 0)
    if epochs < 0:
        raise TvmpruneError("--train-epochs must be >= 0")
    if epochs and ds is None:
        raise TvmpruneError("--train-epochs needs a data set (--dataset)")
    return model, spec, shape, ds, epochs


# --------------------------------------------------------------------------- main

def _check_args(args: argparse.Namespace) -> list[Any]:
    """Validate the numeric options; the parsed, distinct pruning patterns."""
    from .prune import parse_patterns

    for name, low in (("repeat", 1), ("warmup", 0), ("trials", 0), ("finetune_epochs", 0), ("batch_size", 1)):
        if getattr(args, name) < low:
            raise TvmpruneError(f"--{name.replace('_', '-')} must be >= {low}")
    if args.finetune_lr <= 0:
        raise TvmpruneError("--finetune-lr must be > 0")
    default_patterns = DEFAULT_PATTERNS if not args.model or args.model == BUILTIN_MODEL else \
        "dense,unstructured@0.8,1x4@0.8,1x8@0.8,1x16@0.8,filter@0.5"
    patterns = []
    for item in [t for t in str(args.patterns or default_patterns).split(",") if t.strip()]:
        try:
            patterns.extend(parse_patterns(item))
        except PruneConfigError as e:
            raise PruneConfigError(f"--patterns item {item.strip()!r}: {e}") from None
    if not patterns:
        raise PruneConfigError("--patterns is empty; give e.g. dense,1x8@0.8,filter@0.5")
    labels = [p.label for p in patterns]
    if len(set(labels)) != len(labels):
        raise PruneConfigError(f"pattern list repeats a pattern: {','.join(labels)}")
    return patterns


class _Job:
    """What every pattern of one ``compare`` run shares: target, timer, tuning, notes, output."""

    def __init__(self, args: argparse.Namespace, target: Any, out: Path) -> None:
        self.args, self.target, self.out = args, target, out
        self.remote = RemoteTimer(args.tracker, args.key, args.rpc_timeout) if args.tracker else None
        self.notes: list[str] = []
        self.measure = target.runs_on_host or self.remote is not None
        self.tune_fn: Callable[..., Any] | None = None
        self.base_source: Any = None
        self.timed: list[tuple[dict[str, Any], list[Any]]] = []  # (row, [tvmprune runner, --vs runners])
        self.engines: Any = None  # measure.side_by_side.EngineSet for --vs
        self.workdir = tempfile.TemporaryDirectory(prefix="tvmprune_compare_")  # ONNX exports for --vs
        if getattr(args, "vs", None):
            self._find_engines(args.vs)

    def _find_engines(self, vs: str) -> None:
        from .measure.side_by_side import EngineSet, parse_vs

        if self.remote is not None or not self.target.runs_on_host:
            raise TvmpruneError("--vs times the other engines on this machine: use it with a target this "
                                "machine runs (no --tracker)")
        self.engines = EngineSet.find(parse_vs(vs))
        for why in self.engines.missing.values():
            self.note(f"--vs: {why}")

    def say(self, s: str) -> None:
        print(s, flush=True)

    def note(self, msg: str) -> None:
        self.notes.append(msg)
        self.say("note: " + msg)

    def setup_measuring(self) -> None:
        """Decide whether latency is measured and kernels tuned; load the schedules to apply."""
        args, target = self.args, self.target
        if not self.measure:
            self.note(f"latency is not measured: {target.name} code cannot run on this {platform.machine()} "
                      "machine; give --tracker HOST:PORT --key KEY to time it on a board over RPC")
        self.tune_fn = _tune_api() if args.trials > 0 and self.measure else None
        if args.trials > 0 and not self.measure:
            self.note(f"tuning skipped: {target.name} kernels can only be measured on the board (--tracker/--key)")
        elif args.trials > 0 and self.tune_fn is None:
            self.note("tuning is unavailable in this installation (no tvmprune.tune); using default schedules")
        if self.emulated:
            self.note("measured on an EMULATED board (qemu): its latencies and speedups say nothing about real "
                      "hardware; they only show that the code runs there")
        self.base_source = _schedule_source(args, target, lambda s: self.say("  " + s))

    @property
    def emulated(self) -> bool:
        """Timed on an emulated RPC board (``--emulated``, or a key that says so)."""
        args = self.args
        return self.remote is not None and (getattr(args, "emulated", False) or "emul" in (args.key or ""))


def _train_dense(job: _Job, model: Any, spec: str, ds: Any, train_epochs: int) -> None:
    from .dataset import train

    args = job.args
    if ds is not None and train_epochs:
        job.say(f"training the dense model for {train_epochs} epochs ...")
        t0 = time.time()
        train(model, ds.train, train_epochs, seed=args.seed, log=lambda s: job.say("  " + s))
        job.say(f"  trained in {time.time() - t0:.1f} s")
    elif ds is not None and not args.model == BUILTIN_MODEL and args.model and ":" not in args.model:
        job.note(f"{spec} was built with random weights (no --train-epochs): accuracies are not meaningful")


def _prune_and_evaluate(job: _Job, model: Any, pat: Any, ds: Any, example: Any, tag: str,
                        row: dict[str, Any]) -> Any:
    """Prune (and fine-tune, evaluate) one pattern into ``row``; returns the pruned model."""
    from .dataset import evaluate
    from .prune import finetune, prune_model
    from .prune.registry import get_method

    args = job.args
    if pat.kind == "dense":
        pruned, masks, res = model, {}, None
    else:
        job.say(f"{tag}: pruning")
        res = prune_model(model, pat, example, data=ds.train if ds is not None else None, target=job.target,
                          progress=progress_enabled())
        pruned, masks = res.model, res.masks
        for r in res.config.get("gator_rounds") or []:  # gator@ +latency: each round's predicted / measured cost
            meas = f", measured {r['measured_ratio']:.3f} of dense" if r["measured_ratio"] is not None else ""
            job.say(f"{tag}: gate round {r['round']}: aimed at {r['internal_target']:.3f}, "
                    f"predicted {r['predicted_ratio']:.3f}{meas}")
    acc_before = None
    tunes = ds is not None and pat.kind != "dense" and args.finetune_epochs > 0
    if tunes and get_method(pat.kind).fine_tunes:  # a second fine-tune on top of the method's own can only hurt it
        job.say(f"{tag}: fine-tuned by the method itself; --finetune-epochs not applied to it")
        tunes = False
    if ds is not None:
        if tunes:
            acc_before = evaluate(pruned, ds.val)
            job.say(f"{tag}: fine-tuning {args.finetune_epochs} epoch(s) (accuracy before: {acc_before:.4f})")
            if getattr(res, "plan", None) is not None:  # +guided: GSL's training-time form
                from .prune.guided import guided_finetune

                guided_finetune(res, ds.train, epochs=args.finetune_epochs, lr=args.finetune_lr,
                                progress=progress_enabled())
            else:
                finetune(pruned, masks, ds.train, epochs=args.finetune_epochs, lr=args.finetune_lr,
                         progress=progress_enabled())
        job.say(f"{tag}: evaluating")
        row["accuracy"] = evaluate(pruned, ds.val)
    else:
        row["accuracy"] = None
    row["accuracy_before_finetune"] = acc_before
    row["finetune_epochs"] = args.finetune_epochs if tunes else 0
    return pruned


def _count_row(row: dict[str, Any], pruned: Any, shape: tuple[int, ...], dense_counts: dict[str, int]) -> None:
    c = count_model(pruned, shape)
    row.update({"params_nonzero": c["params_nonzero"], "params_total": c["params_total"],
                "weights_nonzero": c["weights_nonzero"], "weights_total": c["weights_total"],
                "nonzeros": c["weights_nonzero"],
                "flops_dense": dense_counts["flops"], "flops_effective": c["flops_nonzero"],
                "flops_ratio": c["flops_nonzero"] / max(dense_counts["flops"], 1)})


def _compile_pattern(job: _Job, pruned: Any, shape: tuple[int, ...], spec: str, pat: Any, tag: str,
                     row: dict[str, Any]) -> Any:
    """Lower once, (tune,) schedule and build one pruned model; fills the row's compile facts."""
    from .compiler import build, lower, plan, schedule

    args = job.args
    planned = plan(lower(pruned, shape), job.target)
    source, trials_used = job.base_source, 0
    if job.tune_fn is not None:
        job.say(f"{tag}: tuning ({args.trials} trials)")
        log_dir = str(job.out / "tuning" / pat.label.replace("@", "_").replace("+", "_"))
        try:
            src, trials_used = job.tune_fn(planned, args.trials, log_dir, args, job.say)
            source = src or job.base_source
        except Exception as e:  # noqa: BLE001 - tuning is optional: keep going with default schedules
            msg = f"{pat.label}: tuning failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
            job.note(msg + "; used default schedules")
    row["trials"] = trials_used
    job.say(f"{tag}: compiling")
    cm = build(schedule(planned, source), model_spec=spec, pattern=pat.label)
    row["formats"] = formats_summary(cm.plans)
    row["layers"] = [{"name": pl.info.name, "shape": pl.info.shape_str, "density": round(pl.info.density, 4),
                      "format": pl.format_label} for pl in cm.plans]
    row["tuned_kernels"] = cm.meta.get("tuned_kernels", 0)
    row["tvm_max_abs_err"] = (_check_against_torch(cm, pruned, shape, args.seed) if job.target.runs_on_host
                              else None)
    return cm


def _set_latency(row: dict[str, Any], lat: dict[str, float] | None) -> None:
    row["latency_median_ms"] = lat["median_ms"] if lat else None
    row["latency_spread_ms"] = lat["spread_ms"] if lat else None
    row["latency_min_ms"] = lat["min_ms"] if lat else None


def _time_pattern(job: _Job, cm: Any, pruned: Any, tag: str, row: dict[str, Any]) -> None:
    """Over RPC: time now. Here: keep the module (and the ``--vs`` engines' runners of the same
    pruned weights) for :func:`_time_interleaved`, which times every pattern side by side."""
    _set_latency(row, None)
    if not job.measure:
        return
    if job.remote is not None:
        job.say(f"{tag}: timing ({job.args.repeat} runs over RPC)")
        _set_latency(row, job.remote.time(cm, job.args.warmup, job.args.repeat))
        return
    from .measure.runners import TvmRunner
    from .measure.side_by_side import engine_runners

    runners = [TvmRunner(cm, row["pattern"], cm.input_shape, job.args.warmup)]
    if job.engines is not None:
        peers, notes = engine_runners(job.engines, pruned.eval(), row["pattern"], cm.input_shape,
                                      job.target.cores, job.workdir.name, job.args.warmup)
        runners += peers
        for n in notes:
            job.note(n)
    job.timed.append((row, runners))


def _time_interleaved(job: _Job) -> None:
    """Every pattern here (and its ``--vs`` engines) timed in interleaved rounds, in one run."""
    from .measure.runners import time_interleaved

    if not job.timed:
        return
    runners = [r for _, rs in job.timed for r in rs]
    job.say(f"timing {len(runners)} modules side by side ({job.args.repeat} runs each, interleaved)")
    stats = iter(time_interleaved(runners, job.args.repeat))
    for row, rs in job.timed:
        _set_latency(row, next(stats))
        engines = {r.runtime: next(stats)["median_ms"] for r in rs[1:]}
        if engines:
            best = min(engines, key=engines.get)
            row.update(engines_ms=engines, best_engine=best, best_engine_ms=engines[best],
                       best_engine_over_tvmprune=engines[best] / row["latency_median_ms"])
        for r in rs:
            r.close()
    job.timed.clear()


def _run_pattern(job: _Job, model: Any, pat: Any, ctx: dict[str, Any], tag: str) -> dict[str, Any]:
    row: dict[str, Any] = {"pattern": pat.label, "kind": pat.kind, "n": pat.n if pat.kind == "1xN" else None,
                           "rate": pat.rate, "rearrange": pat.rearrange if pat.kind == "1xN" else None,
                           "global": pat.global_}
    t0 = time.time()
    pruned = _prune_and_evaluate(job, model, pat, ctx["ds"], ctx["example"], tag, row)
    _count_row(row, pruned, ctx["shape"], ctx["dense_counts"])
    cm = _compile_pattern(job, pruned, ctx["shape"], ctx["spec"], pat, tag, row)
    _time_pattern(job, cm, pruned, tag, row)
    row["seconds"] = round(time.time() - t0, 2)
    done = (f"{row['latency_median_ms']:.3f} ms" if row["latency_median_ms"] is not None
            else "timed with the others at the end" if job.timed else "latency not measured")
    acc = f", accuracy {row['accuracy']:.4f}" if row["accuracy"] is not None else ""
    job.say(f"{tag}: done: {done}{acc} ({row['seconds']:.1f} s)")
    return row


def _speedups(job: _Job, rows: list[dict[str, Any]]) -> None:
    dense_row = next((r for r in rows if r["kind"] == "dense"), None)
    base = dense_row["latency_median_ms"] if dense_row else None
    for r in rows:
        r["speedup"] = (base / r["latency_median_ms"]) if (base and r["latency_median_ms"]) else None
    if dense_row is None and job.measure:
        job.notes.append("no 'dense' pattern in the list: speedups are not computed")


def _report(job: _Job, ctx: dict[str, Any], rows: list[dict[str, Any]], t_start: float) -> dict[str, Any]:
    import torch
    import tvm

    args, ds = job.args, ctx["ds"]
    return {
        "model": ctx["spec"],
        "input_shape": list(ctx["shape"]),
        "target": job.target.to_json(),
        "measured_on": ("rpc:" + f"{args.tracker}/{args.key}" + (" (emulated)" if job.emulated else ""))
                       if job.remote else (f"host {platform.machine()}" if job.measure else None),
        "emulated": job.emulated,
        "dataset": ds.name if ds else None,
        "train_epochs": ctx["train_epochs"],
        "finetune_epochs": args.finetune_epochs if ds else 0,
        "finetune_lr": args.finetune_lr if ds else None,
        "trials": args.trials,
        "repeat": args.repeat,
        "warmup": args.warmup,
        "tvm_version": tvm.__version__,
        "torch_version": torch.__version__,
        "threads": os.cpu_count(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "total_seconds": round(time.time() - t_start, 1),
        "notes": job.notes,
        "results": rows,
    }


def _write_outputs(job: _Job, report: dict[str, Any], rows: list[dict[str, Any]], t_start: float) -> str:
    """Write compare.json / .csv / .png; returns the result text (table, notes, files written)."""
    from .plot import plot_compare
    from .reports.tables import format_table

    out = job.out
    write_json(report, out / JSON_FILE)
    write_csv(rows, out / CSV_FILE)
    wrote = [JSON_FILE, CSV_FILE]
    if not job.args.no_plot:
        plot_compare(report, out / PNG_FILE)
        wrote.append(PNG_FILE)
    vs = any(r.get("best_engine") for r in rows)
    lines = ["", format_table(table_rows(rows), [c for c in TABLE_COLUMNS if vs or c[0] not in ("best_engine", "vs_best")])]
    lines += [f"note: {nt}" for nt in job.notes]
    lines.append(f"\nwrote {', '.join(str(out / w) for w in wrote)} ({time.time() - t_start:.0f} s)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> CommandResult:
    """``tvmprune compare``: every pattern pruned, compiled, timed (see the module docstring);
    the result is the report written to compare.json."""
    import torch

    from .compiler import ensure_writable_dir
    from .target import get_target

    patterns = _check_args(args)
    target = get_target(args.target)
    job = _Job(args, target, ensure_writable_dir(args.output))
    t_start = time.time()
    model, spec, shape, ds, train_epochs = _resolve(args)
    job.say(f"compare {spec} ({'x'.join(map(str, shape))}) on {target.name}: {len(patterns)} patterns"
            + (f", data set {ds.name}" if ds else ", no data set (latency only)"))
    _train_dense(job, model, spec, ds, train_epochs)
    job.setup_measuring()
    ctx = {"spec": spec, "shape": shape, "ds": ds, "train_epochs": train_epochs, "example": torch.zeros(shape),
           "dense_counts": count_model(model, shape)}
    rows = [_run_pattern(job, model, pat, ctx, f"[{i}/{len(patterns)}] {pat.label}")
            for i, pat in enumerate(progress(patterns, desc="patterns", unit="pattern"), 1)]
    _time_interleaved(job)
    job.workdir.cleanup()  # the --vs engines' ONNX exports
    _speedups(job, rows)
    report = _report(job, ctx, rows, t_start)
    return CommandResult(report, _write_outputs(job, report, rows, t_start))


TABLE_COLUMNS = [("pattern", "pattern"), ("formats", "layer formats"), ("params", "params nz/total"),
                 ("mflops", "MFLOPs eff/dense"), ("latency", "latency ms (IQR)"), ("speedup", "speedup"),
                 ("best_engine", "best engine ms"), ("vs_best", "best engine ÷ tvmprune"), ("accuracy", "top-1")]


def _si(v: int) -> str:
    return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.1f}k"


def table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        lat = r.get("latency_median_ms")
        out.append({
            "pattern": r["pattern"],
            "formats": _fmt_formats(r.get("formats")),
            "params": f"{_si(r['params_nonzero'])}/{_si(r['params_total'])}",
            "mflops": f"{r['flops_effective'] / 1e6:.1f}/{r['flops_dense'] / 1e6:.1f}",
            "latency": f"{lat:.3f} ({r['latency_spread_ms']:.3f})" if lat is not None else "n/a",
            "speedup": f"{r['speedup']:.2f}x" if r.get("speedup") else "",
            "best_engine": f"{r['best_engine_ms']:.3f} ({r['best_engine']})" if r.get("best_engine") else "",
            "vs_best": f"{r['best_engine_over_tvmprune']:.2f}x" if r.get("best_engine") else "",
            "accuracy": f"{r['accuracy']:.4f}" if r.get("accuracy") is not None else "",
        })
    return out


def write_json(report: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in rows:
            vals = []
            for k in CSV_COLUMNS:
                v = r.get(k)
                if k == "formats":
                    v = _fmt_formats(v)
                vals.append("" if v is None else v)
            w.writerow(vals)
