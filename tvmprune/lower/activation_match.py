"""Recognise the activation that follows a conv / linear, whatever elementwise ops spell it.

``torch.export`` decomposes activations: SiLU is ``x * sigmoid(x)``, hardswish is
``x * clip(clip(x + 3, 0, inf), -inf, 6) / 6``, hardsigmoid ``clip(x + 3, ...) / 6``, GELU stays
``nn.gelu``. Rather than one structural pattern per spelling, :func:`match_activation` takes the
elementwise region that reads only the layer's output and scalar constants, evaluates it on probe
values, and names the activation of :data:`tvmprune.kernels.base.ACTIVATIONS` it equals (to 1e-7).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from .relax_graph import UseDef, const_value, is_const, op_name, prim_value, shape_of, vars_in

MAX_REGION = 8  # bindings; hardswish takes 5

_UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relax.sigmoid": torch.sigmoid,
    "relax.tanh": torch.tanh,
    "relax.erf": torch.special.erf,
    "relax.exp": torch.exp,
    "relax.negative": torch.neg,
    "relax.nn.relu": torch.relu,
    "relax.nn.relu6": lambda x: torch.clamp(x, 0.0, 6.0),
    "relax.nn.silu": torch.nn.functional.silu,
    "relax.nn.gelu": torch.nn.functional.gelu,
    "relax.nn.gelu_tanh": lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
}
_BINARY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "relax.add": torch.add, "relax.subtract": torch.sub, "relax.multiply": torch.mul,
    "relax.divide": torch.div, "relax.maximum": torch.maximum, "relax.minimum": torch.minimum,
}

# What each kernel epilogue computes (kernels/base.py apply_activation), in float64.
REFERENCE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "relu6": lambda x: torch.clamp(x, 0.0, 6.0),
    "silu": torch.nn.functional.silu,
    "sigmoid": torch.sigmoid,
    "gelu": torch.nn.functional.gelu,
    "gelu_tanh": lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
    "hardswish": lambda x: x * torch.clamp(x + 3.0, 0.0, 6.0) / 6.0,
    "hardsigmoid": lambda x: torch.clamp(x + 3.0, 0.0, 6.0) / 6.0,
}

PROBE = torch.cat([torch.linspace(-9.0, 9.0, 181, dtype=torch.float64),
                   torch.tensor([-3.0, 3.0, 0.0, 6.0, -6.0, 1e-3, -1e-3], dtype=torch.float64)])


def _scalar(expr: Any) -> float | None:
    """The value of a scalar Relax constant or PrimValue, None for anything else."""
    if is_const(expr):
        try:
            v = const_value(expr)
        except Exception:
            return None
        return float(v.reshape(())) if v.size == 1 else None
    if type(expr).__name__ in ("FloatImm", "IntImm", "PrimValue"):
        return prim_value(expr)
    return None


def _is_var(expr: Any) -> bool:
    return type(expr).__name__ in ("Var", "DataflowVar")


def _evaluable(value: Any, inside: set) -> bool:
    """An elementwise op reading only region vars and scalar constants."""
    name = op_name(value)
    if name not in _UNARY and name not in _BINARY and name != "relax.clip":
        return False
    args = list(value.args)
    tensors = [a for a in args if _is_var(a)]
    if not tensors or any(a not in inside for a in tensors):
        return False
    return all(_is_var(a) or _scalar(a) is not None for a in args)


def _evaluate(value: Any, env: dict) -> torch.Tensor:
    def arg(a: Any) -> Any:
        return env[a] if _is_var(a) else torch.tensor(_scalar(a), dtype=torch.float64)

    name = op_name(value)
    args = [arg(a) for a in value.args]
    if name == "relax.clip":
        return torch.clamp(args[0], min=float(args[1]), max=float(args[2]))
    if name in _UNARY:
        return _UNARY[name](args[0])
    return _BINARY[name](args[0], args[1])


def _classify(var: Any, region: list[Any]) -> str | None:
    env = {var: PROBE}
    for b in region:
        env[b.var] = _evaluate(b.value, env)
    out = env[region[-1].var]
    for name, ref in REFERENCE.items():
        want = ref(PROBE)
        if out.shape == want.shape and bool(torch.all(torch.abs(out - want) <= 1e-7 * (1.0 + torch.abs(want)))):
            return name
    return None


def _closed(ud: UseDef, var: Any, prefix: list[Any]) -> bool:
    """Every read of ``var`` and of the prefix's inner results happens inside the prefix."""
    reads: dict[Any, int] = {}
    for b in prefix:
        for v in vars_in(b.value):
            reads[v] = reads.get(v, 0) + 1
    inner = [var] + [b.var for b in prefix[:-1]]
    return all(ud.uses.get(v, 0) == reads.get(v, 0) for v in inner)


def match_activation(ud: UseDef, var: Any, claimed: set) -> tuple[list[Any], str] | None:
    """The bindings computing ``act(var)`` for a kernel-epilogue activation ``act``, and its name.

    Returns None when what reads ``var`` is not such an activation (or ``var`` has other readers).
    """
    start = next((i for i, b in enumerate(ud.bindings) if b.var.same_as(var)), None)
    if start is None:
        return None
    inside, region = {var}, []
    for b in ud.bindings[start + 1:]:
        if not any(v in inside for v in vars_in(b.value)):
            continue
        if len(region) >= MAX_REGION or b.var in claimed or not _evaluable(b.value, inside):
            break
        region.append(b)
        inside.add(b.var)
    for k in range(len(region), 0, -1):
        prefix = region[:k]
        if shape_of(prefix[-1].var) != shape_of(var) or not _closed(ud, var, prefix):
            continue
        act = _classify(var, prefix)
        if act is not None:
            return prefix, act
    return None
