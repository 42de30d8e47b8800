"""``tvmprune prune``: prune a model and write ``weights.safetensors`` + ``pruning.json``.

Examples::

    tvmprune prune --model resnet50 --pattern 1xN --n 8 --rate 0.8 -o pruned/
    tvmprune prune --model resnet50 --pattern 1x8@0.8 -o pruned/
    tvmprune prune --model vgg16 --pattern filter --rate 0.5 --input-shape 1x3x64x64 -o pruned/
"""

from __future__ import annotations

import argparse
import time

import torch

from ..console import CommandResult, add_output_flags
from ..errors import PruneConfigError
from .criteria import BLOCK_SIZES, check_block_size
from .pattern import PrunePattern, parse_pattern
from .selection import check_rate

__all__ = ["add_prune_parser", "run_prune", "pattern_from_args"]


def _kinds_help() -> str:
    from .registry import all_methods

    return ", ".join(m.kind for m in all_methods())


def add_prune_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "prune",
        help="prune a model (1xN blocks, unstructured, L1 filters) and save it",
        description="Prune a model and write DIR/weights.safetensors (state_dict) and DIR/pruning.json. "
        "Prints the per-layer table.",
    )
    p.add_argument("--model", default="resnet18",
                   help="torchvision model name, tiny_cnn, or path/to/file.py:factory (default resnet18)")
    p.add_argument("--pattern", default="1xN",
                   help=f"{_kinds_help()}, or a full pattern string such as 1x8@0.8, "
                   "unstructured@0.9+global (default 1xN)")
    p.add_argument("--n", type=int, default=None, help=f"block size N for 1xN, one of {list(BLOCK_SIZES)} (default 8)")
    p.add_argument("--rate", type=float, default=None, help="pruning rate in [0, 1) (default 0.8 for 1xN/unstructured, 0.5 for filter)")
    p.add_argument("--no-rearrange", action="store_true", help="1xN: do not rearrange filters by L1 first")
    p.add_argument("--global", dest="global_", action="store_true",
                   help="rank blocks / weights / filters across all layers (per-layer cap 0.95)")
    p.add_argument("--input-shape", default=None, help="example input N x C x H x W for tracing (default 1x3x224x224)")
    p.add_argument("--dataset", default=None,
                   help="training data for patterns that learn (gator@): builtin (digits), an ImageFolder directory, "
                        "or path/to/file.py:factory")
    p.add_argument("--target", default="x86",
                   help="compile target whose performance model +guided patterns follow (default x86, the host)")
    p.add_argument("-o", "--output", default=None, help="output directory (default: print only, save nothing)")
    add_output_flags(p)  # --quiet: the summary lines only, not the per-layer table
    p.set_defaults(func=run_prune, command="prune")
    return p


def _shorthand(low: str):
    """``(method, n from the name or None)`` for a bare ``--pattern`` name such as ``1x16`` or ``filter``."""
    from .registry import all_methods, match_head

    for method in all_methods():
        if method.takes_rate and (low == method.kind.lower() or low in method.aliases):
            return method, None
    found = match_head(low)
    if found is not None and found[0].takes_rate:
        return found[0], (found[0].n_from_head(found[1]) if found[0].uses_n else None)
    return None, None


def _from_shorthand(text: str, n, rate) -> PrunePattern:
    method, head_n = _shorthand(text.lower())
    if method is None:
        return parse_pattern(text)  # raises with the accepted syntax
    if n is not None and not method.uses_n:
        raise PruneConfigError(f"--n only applies to block patterns such as 1xN, not {text}")
    if head_n is not None and n is not None and n != head_n:
        raise PruneConfigError(f"--pattern {text} conflicts with --n {n}")
    rate = method.default_rate if rate is None else rate
    check_rate(rate, "--rate")
    if method.uses_n:
        n = head_n if head_n is not None else (8 if n is None else n)
        check_block_size(n, "--n")
    return PrunePattern(method.kind, rate, n if method.uses_n else 1)


def pattern_from_args(args) -> PrunePattern:
    """The pattern of ``--pattern`` (full string or bare name) with ``--n`` / ``--rate`` / flags."""
    text = str(args.pattern).strip()
    if "@" in text or text.lower() == "dense":
        if args.n is not None or args.rate is not None:
            raise PruneConfigError(f"--pattern {text!r} already fixes N and the rate; drop --n / --rate")
        pat = parse_pattern(text)
    else:
        pat = _from_shorthand(text, args.n, args.rate)
    extra = tuple(o for o, on in (("norearrange", args.no_rearrange), ("global", args.global_)) if on)
    return pat.with_options(*extra) if extra else pat


def _prune_data(result, model, shape, spec: str, output: str | None) -> dict:
    """``--json`` result of ``prune``: pattern, parameter counts, per-layer report, files written."""
    return {"model": spec, "pattern": result.config["pattern"], "input_shape": list(shape),
            "params": sum(p.numel() for p in result.model.parameters()),
            "params_before": sum(p.numel() for p in model.parameters()),
            "layers": [r.to_dict() for r in result.layers],
            "coupled_groups": result.config.get("coupled_groups", []), "output": output}


def run_prune(args) -> CommandResult:
    """Prune; progress and the per-layer table are printed, the summary lines are the result."""
    from ..console import progress_enabled
    from ..frontend.model_source import check_input_shape, load_model, parse_input_shape
    from . import format_layer_table, format_summary, prune_model, save_pruned

    from ..model_request import default_input_shape, training_data

    pat = pattern_from_args(args)
    dataset = getattr(args, "dataset", None)
    shape = parse_input_shape(args.input_shape) if args.input_shape else default_input_shape(args.model, dataset)
    t0 = time.time()
    model = load_model(args.model)
    check_input_shape(model, shape)
    result = prune_model(model, pat, torch.zeros(shape), data=training_data(dataset, shape),
                         target=getattr(args, "target", None), progress=progress_enabled())
    dt = time.time() - t0
    print(format_layer_table(result.layers))
    print()
    if getattr(result, "plan", None) is not None:  # +guided: bounds, chosen density, predicted speedup
        from .guided import format_plan_table

        print(format_plan_table(result.plan))
        print()
    groups = result.config.get("coupled_groups", [])
    if groups:
        print("coupled channel groups (residual adds):")
        for g in groups:
            print(f"  {len(g)} producers: {', '.join(g)}")
    lines = [format_summary(result, model)]
    if args.output:
        save_pruned(result, args.output, args.model, shape)
        lines.append(f"wrote {args.output}/weights.safetensors and {args.output}/pruning.json ({dt:.1f}s)")
    else:
        lines.append(f"pruned in {dt:.1f}s (nothing saved; use -o DIR)")
    data = _prune_data(result, model, shape, args.model, args.output) | {"seconds": round(dt, 2)}
    return CommandResult(data, "\n".join(lines))


def main(argv=None) -> int:  # pragma: no cover - convenience: python -m tvmprune.prune.command
    parser = argparse.ArgumentParser(prog="tvmprune")
    sub = parser.add_subparsers(dest="command", required=True)
    add_prune_parser(sub)
    args = parser.parse_args(argv)
    from ..console import run_command

    return run_command(args.func, args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
