"""Random NHWC conv cases and their PyTorch reference, shared by the kernel-space tests."""

from __future__ import annotations

import numpy as np
import torch

from tvmprune.kernels.base import ConvSpec

ACTS = {None: lambda y: y, "relu": torch.relu, "relu6": lambda y: y.clamp(0, 6),
        "silu": torch.nn.functional.silu, "gelu": torch.nn.functional.gelu}


def conv_arrays(spec: ConvSpec, seed: int) -> tuple:
    """``(w [Cout, Cin/groups, KH, KW], bias [Cout] | None, x NHWC, residual NHWC | None)``."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(spec.weight_shape).astype("float32")
    b = rng.standard_normal(spec.cout).astype("float32") if spec.bias else None
    x = rng.standard_normal(spec.in_shape).astype("float32")
    res = rng.standard_normal(spec.out_shape).astype("float32") if spec.residual else None
    return w, b, x, res


def torch_conv(spec: ConvSpec, w, b, x, res) -> np.ndarray:
    """``act(conv(x, w) + b + res)`` by PyTorch, NHWC, as the kernels compute it."""
    pt, pl, pb, pr = spec.padding
    xt = torch.nn.functional.pad(torch.from_numpy(x).permute(0, 3, 1, 2), (pl, pr, pt, pb))
    y = torch.nn.functional.conv2d(xt, torch.from_numpy(w), None if b is None else torch.from_numpy(b),
                                   stride=spec.stride, groups=spec.groups).permute(0, 2, 3, 1)
    if res is not None:
        y = y + torch.from_numpy(res)
    return ACTS[spec.activation](y).numpy()
