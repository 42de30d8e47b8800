"""IP vs SP accuracy on the built-in digits at the same rate and fine-tuning budget.

    PYTHONPATH=$PWD python scripts/interspace_accuracy.py --rates 0.9,0.95,0.98 --epochs 1 --seeds 0

Trains the built-in DigitsCNN (as `tvmprune compare` does: 4 epochs), then for each rate prunes a
copy with unstructured@RATE (SP) and interspace@RATE (IP), fine-tunes each with the same SGD
loop (tvmprune.prune.finetune, lr 0.02, --epochs) and prints top-1 on the validation split.
``--dct`` adds an IP variant whose filter basis starts as the orthonormal 2-D DCT-II basis instead of
the spatial one (coefficients = the filters in that basis, so the model is unchanged; magnitude
pruning then ranks frequency coefficients): an experiment, not a library option.
"""

from __future__ import annotations

import argparse
import copy
import json

import torch


def dct_basis(k: int) -> torch.Tensor:
    """``[k*k, k, k]`` orthonormal 2-D DCT-II filters."""
    n = torch.arange(k, dtype=torch.float64)
    d = torch.cos(torch.pi * (n[None, :] + 0.5) * n[:, None] / k) * (2.0 / k) ** 0.5
    d[0] /= 2 ** 0.5
    return torch.einsum("ai,bj->abij", d, d).reshape(k * k, k, k).float()


def interspace_prune_dct(dense, rate: float, example_input):
    """``interspace_prune`` with every layer's basis switched to the DCT one before the coefficients are ranked."""
    from tvmprune.prune.interspace import prune as ip_prune

    original = ip_prune.to_interspace

    def to_dct(model, names):
        out = original(model, names)
        for m in ip_prune.interspace_layers(model).values():
            with torch.no_grad():
                kh, kw = m.kernel_size
                basis = dct_basis(kh).reshape(kh * kw, -1)  # rows orthonormal: c = w . B^T
                w = torch.einsum("oij,jk->oik", m.coefficients, m.basis.reshape(kh * kw, -1))
                m.coefficients.copy_(w @ basis.T)
                m.basis.copy_(basis.reshape(kh * kw, kh, kw))
        return out

    ip_prune.to_interspace = to_dct
    try:
        return ip_prune.interspace_prune(dense, rate, example_input)
    finally:
        ip_prune.to_interspace = original


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
    ap.add_argument("--dct", action="store_true", help="also IP with a DCT-initialised basis (IP-dct)")
    ap.add_argument("--basis-grad-scale", type=float, default=1.0,
                    help="scale of the basis gradients in IP fine-tuning (an effective basis learning rate)")
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
            variants = [("SP", prune_model(dense, f"unstructured@{rate}", ex)), ("IP", interspace_prune(dense, rate, ex))]
            if args.dct:
                variants.append(("IP-dct", interspace_prune_dct(dense, rate, ex)))
            for label, res in variants:
                torch.manual_seed(seed + 1)  # same batch order for both
                before = evaluate(res.model, ds.val)
                if label.startswith("IP") and args.basis_grad_scale != 1.0:
                    for name, p in res.model.named_parameters():
                        if name.endswith("basis"):
                            p.register_hook(lambda g, k=args.basis_grad_scale: g * k)
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
        dct = f"  IP-dct {sum(r['IP-dct'] for r in sel) / len(sel):.4f}" if args.dct else ""
        print(f"rate {rate}: SP {sp:.4f}  IP {ip:.4f}{dct}  (mean of {len(sel)} seeds, {args.epochs} fine-tune epochs)")


if __name__ == "__main__":
    main()
