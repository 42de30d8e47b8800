"""``tvmprune prune``: prune a model and write ``weights.pt`` + ``pruning.json``.

Examples::

    tvmprune prune --model resnet50 --pattern 1xN --n 8 --rate 0.8 -o pruned/
    tvmprune prune --model resnet50 --pattern 1x8@0.8 -o pruned/
    tvmprune prune --model vgg16 --pattern filter --rate 0.5 --input-shape 1x3x64x64 -o pruned/
"""

from __future__ import annotations

import argparse
import time

import torch

from ..errors import PruneConfigError
from .pattern import BLOCK_SIZES, PrunePattern, parse_pattern

__all__ = ["add_prune_parser", "run_prune", "pattern_from_args"]


def add_prune_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "prune",
        help="prune a model (1xN blocks, unstructured, L1 filters) and save it",
        description="Prune a model and write DIR/weights.pt (state_dict) and DIR/pruning.json. "
        "Prints the per-layer table.",
    )
    p.add_argument("--model", default="resnet18",
                   help="torchvision model name, tiny_cnn, or path/to/file.py:factory (default resnet18)")
    p.add_argument("--pattern", default="1xN",
                   help="1xN, unstructured, filter, dense, or a full pattern string such as 1x8@0.8, "
                   "unstructured@0.9+global (default 1xN)")
    p.add_argument("--n", type=int, default=None, help=f"block size N for 1xN, one of {list(BLOCK_SIZES)} (default 8)")
    p.add_argument("--rate", type=float, default=None, help="pruning rate in [0, 1) (default 0.8 for 1xN/unstructured, 0.5 for filter)")
    p.add_argument("--no-rearrange", action="store_true", help="1xN: do not rearrange filters by L1 first")
    p.add_argument("--global", dest="global_", action="store_true",
                   help="rank blocks / weights / filters across all layers (per-layer cap 0.95)")
    p.add_argument("--input-shape", default=None, help="example input N x C x H x W for tracing (default 1x3x224x224)")
    p.add_argument("-o", "--output", default=None, help="output directory (default: print only, save nothing)")
    p.add_argument("--quiet", action="store_true", help="print only the summary, not the per-layer table")
    p.set_defaults(func=run_prune, command="prune")
    return p


def pattern_from_args(args) -> PrunePattern:
    text = str(args.pattern).strip()
    if "@" in text or text.lower() == "dense":
        if args.n is not None or args.rate is not None:
            raise PruneConfigError(f"--pattern {text!r} already fixes N and the rate; drop --n / --rate")
        pat = parse_pattern(text)
    else:
        low = text.lower()
        if low in ("1xn", "block", "1x"):
            n = 8 if args.n is None else args.n
            rate = 0.8 if args.rate is None else args.rate
            pat = parse_pattern(f"1x{n}@{rate}") if n in BLOCK_SIZES else None
            if pat is None:
                raise PruneConfigError(f"--n must be one of {list(BLOCK_SIZES)}, got {n}")
        elif low.startswith("1x") and low[2:].isdigit():
            if args.n is not None and args.n != int(low[2:]):
                raise PruneConfigError(f"--pattern {text} conflicts with --n {args.n}")
            rate = 0.8 if args.rate is None else args.rate
            pat = parse_pattern(f"{low}@{rate}")
        elif low in ("unstructured", "filter"):
            if args.n is not None:
                raise PruneConfigError(f"--n only applies to --pattern 1xN, not {low}")
            rate = (0.8 if low == "unstructured" else 0.5) if args.rate is None else args.rate
            if not (0.0 <= rate < 1.0):
                raise PruneConfigError(f"--rate must be in [0, 1), got {rate}")
            pat = parse_pattern(f"{low}@{rate}")
        else:
            pat = parse_pattern(text)  # raises with the accepted syntax
    if args.no_rearrange or args.global_:
        pat = PrunePattern(pat.kind, pat.rate, pat.n, rearrange=pat.rearrange and not args.no_rearrange,
                           global_=pat.global_ or args.global_)
    return pat


def run_prune(args) -> int:
    from ..frontend.model_source import check_input_shape, load_model, parse_input_shape
    from . import format_layer_table, format_summary, prune_model, save_pruned

    pat = pattern_from_args(args)
    shape = parse_input_shape(args.input_shape)
    t0 = time.time()
    model = load_model(args.model)
    check_input_shape(model, shape)
    result = prune_model(model, pat, torch.zeros(shape))
    dt = time.time() - t0
    if not getattr(args, "quiet", False):
        print(format_layer_table(result.layers))
        print()
    print(format_summary(result, model))
    groups = result.config.get("coupled_groups", [])
    if groups and not getattr(args, "quiet", False):
        print("coupled channel groups (residual adds):")
        for g in groups:
            print(f"  {len(g)} producers: {', '.join(g)}")
    if args.output:
        save_pruned(result, args.output, args.model, shape)
        print(f"wrote {args.output}/weights.pt and {args.output}/pruning.json ({dt:.1f}s)")
    else:
        print(f"pruned in {dt:.1f}s (nothing saved; use -o DIR)")
    return 0


def main(argv=None) -> int:  # pragma: no cover - convenience: python -m tvmprune.prune.command
    import sys

    from ..errors import TvmpruneError

    parser = argparse.ArgumentParser(prog="tvmprune")
    sub = parser.add_subparsers(dest="command", required=True)
    add_prune_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except TvmpruneError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
