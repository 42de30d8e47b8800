"""Time one kernel alone on this machine (per-layer measurements, calibration, benchmarks)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..target import NamedTarget, get_target
from ..kernels.base import KernelInstance


def kernel_arguments(inst: KernelInstance, in_shape: tuple[int, ...], residual: bool, seed: int = 0) -> list[Any]:
    """TVM tensors for ``inst``'s PrimFunc: random data, its consts, zero residual?, zero output."""
    import tvm

    dev = tvm.cpu()
    rng = np.random.default_rng(seed)
    args = [tvm.runtime.tensor(rng.standard_normal(in_shape).astype(np.float32), dev)]
    args += [tvm.runtime.tensor(np.ascontiguousarray(c), dev) for c in inst.consts]
    if residual:
        args.append(tvm.runtime.tensor(np.zeros(inst.out_shape, np.float32), dev))
    args.append(tvm.runtime.tensor(np.zeros(inst.out_shape, np.float32), dev))
    return args


def compile_kernel(inst: KernelInstance, target: "NamedTarget | str", func: Any = None) -> Any:
    """``tvm.compile`` of ``inst`` alone (default schedule, or the scheduled ``func``); host targets only."""
    import tvm

    t = get_target(target)
    if not t.runs_on_host:
        raise ValueError(f"cannot time a {t.name} kernel on this machine")
    f = func if func is not None else inst.scheduled()
    return tvm.compile(tvm.IRModule({inst.name: f.with_attr("global_symbol", inst.name)}), target=t.tvm_target)


def time_compiled(lib: Any, inst: KernelInstance, in_shape: tuple[int, ...], residual: bool = False,
                  number: int = 1, repeat: int = 5, min_repeat_ms: int = 20, seed: int = 0) -> float:
    """Median milliseconds of one call of an already compiled kernel (:func:`compile_kernel`)."""
    import tvm

    args = kernel_arguments(inst, in_shape, residual, seed)
    ev = lib.mod.time_evaluator(inst.name, tvm.cpu(), number=number, repeat=repeat, min_repeat_ms=min_repeat_ms)
    return float(np.median(ev(*args).results)) * 1e3


def time_kernel(
    inst: KernelInstance,
    in_shape: tuple[int, ...],
    target: "NamedTarget | str",
    residual: bool = False,
    func: Any = None,
    repeat: int = 5,
    min_repeat_ms: int = 20,
) -> float:
    """Median milliseconds of one call of ``inst`` (default schedule, or ``func`` if given).

    ``in_shape`` is the shape of the ``data`` argument (NHWC for convs, ``[B, in]`` for
    linear layers). Host targets only.
    """
    lib = compile_kernel(inst, target, func)
    return time_compiled(lib, inst, in_shape, residual, repeat=repeat, min_repeat_ms=min_repeat_ms)
