"""IP vs SP accuracy on the built-in digits at the same rate and fine-tuning budget.

    PYTHONPATH=$PWD python scripts/interspace_accuracy.py --rates 0.9,0.95,0.98 --epochs 1 --seeds 0

Trains the built-in DigitsCNN (as `tvmprune compare` does: 4 epochs), then for each rate prunes a
copy with unstructured@RATE (SP) and interspace@RATE (IP), fine-tunes each with the same SGD
loop (tvmprune.prune.finetune, lr 0.02, --epochs) and prints top-1 on the validation split.
"""

from __future__ import annotations

import argparse
import copy
import json

import torch


def main() -> None:
    from tvmprune.data import DigitsCNN
    from tvmprune.dataset import DIGITS_INPUT_SHAPE, evaluate, load_dataset, train
    from tvmprune.prune import finetune, prune_model
    from tvmprune.prune.interspace import interspace_prune

    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="0.9,0.95,0.98")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--seeds", default="0")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        ds = load_dataset("builtin", DIGITS_INPUT_SHAPE, batch_size=32, seed=seed)
        torch.manual_seed(seed)
        dense = DigitsCNN().eval()
        train(dense, ds.train, 4, seed=seed)
        acc_dense = evaluate(dense, ds.val)
        print(f"seed {seed}: dense {acc_dense:.4f}", flush=True)
        ex = torch.zeros(DIGITS_INPUT_SHAPE)
        for rate in [float(r) for r in args.rates.split(",")]:
            out = {"seed": seed, "rate": rate, "dense": acc_dense}
            for label, res in (("SP", prune_model(dense, f"unstructured@{rate}", ex)),
                               ("IP", interspace_prune(dense, rate, ex))):
                torch.manual_seed(seed + 1)  # same batch order for both
                before = evaluate(res.model, ds.val)
                finetune(res.model, res.masks, ds.train, epochs=args.epochs, lr=args.lr, progress=False)
                out[label] = evaluate(res.model, ds.val)
                out[label + "_before"] = before
                out[label + "_sparsity"] = round(res.sparsity, 4)
            rows.append(out)
            print(json.dumps(out), flush=True)
    for rate in sorted({r["rate"] for r in rows}):
        sel = [r for r in rows if r["rate"] == rate]
        sp = sum(r["SP"] for r in sel) / len(sel)
        ip = sum(r["IP"] for r in sel) / len(sel)
        print(f"rate {rate}: SP {sp:.4f}  IP {ip:.4f}  (mean of {len(sel)} seeds, {args.epochs} fine-tune epochs)")


if __name__ == "__main__":
    main()
