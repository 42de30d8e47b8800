"""Targets of issue 15 on the built-in digits + DigitsResNet (run: PYTHONPATH=. python scripts/gator_targets.py [FINETUNE_EPOCHS]); writes gator_targets.json."""
import json, time, sys, copy
import numpy as np, torch
torch.set_num_threads(1)
from tvmprune.data import DigitsResNet
from tvmprune.dataset import digits_loaders, train, evaluate
from tvmprune.prune import prune_model
from tvmprune.prune.gator import gator_prune, GatorOptions
from tvmprune.compiler import compile_model
from tvmprune.measure.model import time_vm
import tvm
from tvm import relax
FT = int(sys.argv[1]) if len(sys.argv) > 1 else 4
t00 = time.time()
ds = digits_loaders(seed=0)
torch.manual_seed(0)
dense = DigitsResNet().eval()
train(dense, ds.train, 8, seed=0)
print("dense trained", evaluate(dense, ds.val), time.time() - t00, flush=True)
x = torch.zeros(1, 1, 16, 16)
models = {"dense": dense}
info = {}
for r in (0.3, 0.5, 0.7):
    res = prune_model(dense, f"filter@{r}", x)
    m = res.model.train(); train(m, ds.train, FT, lr=1e-3, seed=0); models[f"filter@{r}"] = m.eval()
    print(f"filter@{r}", evaluate(m, ds.val), time.time() - t00, flush=True)
for ratio in (0.5, 0.25):
    res = gator_prune(dense, ratio, "latency", x, ds, "x86", progress=False,
                      options=GatorOptions(ratio, "latency", finetune_epochs=FT))
    models[f"gator@{ratio}"] = res.model
    c = res.config
    info[f"gator@{ratio}"] = {k: c[k] for k in ("gator_cost_ratio", "gator_removed", "gator_reached", "gator_steps",
                                                 "gator_epochs", "gator_lambda")}
    info[f"gator@{ratio}"]["open"] = [(e["name"], e["open"], e["size"]) for e in c["gator_edges"]]
    print(f"gator@{ratio}", evaluate(res.model, ds.val), info[f"gator@{ratio}"], time.time() - t00, flush=True)
rows = {}
vms = {}
xs = np.random.default_rng(0).standard_normal((1, 1, 16, 16)).astype("float32")
for k, m in models.items():
    cm = compile_model(m, (1, 1, 16, 16), "x86", model_spec="digits_resnet", pattern=k)
    with torch.no_grad():
        err = float(np.abs(cm.run(xs) - m(torch.from_numpy(xs)).numpy()).max())
    vms[k] = relax.VirtualMachine(cm.executable, tvm.cpu())
    rows[k] = {"accuracy": evaluate(m, ds.val), "tvm_max_abs_err": err,
               "params": sum(p.numel() for p in m.parameters()), "lat": []}
    print("compiled", k, rows[k], flush=True)
for rnd in range(7):
    for k in models:
        rows[k]["lat"].append(time_vm(vms[k], tvm.cpu(), (1, 1, 16, 16), warmup=5, repeat=30)["median_ms"])
for k in rows:
    ratios = [a / b for a, b in zip(rows[k]["lat"], rows["dense"]["lat"])]
    rows[k]["latency_ms_median"] = float(np.median(rows[k]["lat"]))
    rows[k]["latency_ratio_vs_dense_median"] = float(np.median(ratios))
    print(k, {kk: v for kk, v in rows[k].items() if kk != "lat"}, flush=True)
json.dump({"rows": rows, "gator": info, "seconds": time.time() - t00}, open("gator_targets.json", "w"), indent=1)
