"""One interleaved side-by-side: interspace kernel vs SP CSR direct conv vs dense, two ResNet 3x3 layers.

    PYTHONPATH=$PWD python scripts/interspace_latency.py 0.1
"""
import numpy as np, sys
from tvmprune.kernels.base import ConvSpec
from tvmprune.kernels.interspace_conv2d import interspace_conv2d
from tvmprune.kernels.direct_sparse_conv2d import direct_sparse_conv2d
from tvmprune.kernels.dense_conv2d import dense_conv2d
from tvmprune.kernels.timing import time_kernel
from tvmprune.target import get_target
t = get_target("x86")
rng = np.random.default_rng(0)
dens = float(sys.argv[1]) if len(sys.argv) > 1 else 0.1
for cin, hw in [(64, 56), (256, 14)]:
    spec = ConvSpec(1, hw, hw, cin, cin, 3, 3, padding=(1, 1, 1, 1))
    c = rng.standard_normal((cin, cin, 9)).astype("float32") * (rng.random((cin, cin, 9)) < dens)
    B = rng.standard_normal((9, 3, 3)).astype("float32")
    w_sp = c.reshape(cin, cin, 3, 3)
    ip = interspace_conv2d(spec, c, B, None, t)
    sp = direct_sparse_conv2d(spec, w_sp, None, t)
    dn = dense_conv2d(spec, np.einsum("oij,jhw->oihw", c, B), None, t)
    r = {"ip": [], "sp": [], "dense": []}
    for _ in range(3):
        r["sp"].append(time_kernel(sp, spec.in_shape, t))
        r["ip"].append(time_kernel(ip, spec.in_shape, t))
        r["dense"].append(time_kernel(dn, spec.in_shape, t))
    ratios = [a / b for a, b in zip(r["ip"], r["sp"])]
    print(f"3x3 {cin}->{cin} @{hw} density {dens}: " + ", ".join(f"{k} {np.median(v):.3f} ms" for k, v in r.items())
          + f"; IP/SP per round {['%.2f' % x for x in ratios]}", flush=True)
