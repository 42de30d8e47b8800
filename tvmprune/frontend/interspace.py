"""Compiling interspace-pruned models: dense filters at import, and the interspace kernel per layer.

:func:`prepare_interspace` is the compiler's one hook. For a model with
:class:`tvmprune.prune.interspace.InterspaceConv2d` layers it returns

* the model with every interspace layer reconstructed as an ``nn.Conv2d`` (``w = c * B``), so
  import, BN folding and the existing planner see ordinary, spatially dense weights (the
  default: the dense kernel runs them);
* a planner that, per interspace layer, also predicts the interspace form (basis conv +
  sparse 1x1 over ``Cin*K²`` channels, :func:`tvmprune.interspace_perf.predict_interspace_ms`)
  and picks it when it is predicted faster (``auto``), always when coefficients are pruned
  (``sparse``), never (``dense``);
* a kernel builder that builds :func:`tvmprune.kernels.interspace_conv2d.interspace_conv2d`
  for those plans and defers to the default one otherwise.

BN folding scales each output channel of the imported weight; the coefficients are
scaled to match (per-channel least squares against the reconstructed filters, then checked:
a layer whose imported weight is not ``scale * (c * B)`` keeps the base plan).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..target import NamedTarget
from ..kernels.registry import build_kernel
from ..plan.layer import LayerInfo, LayerPlan, Planner

__all__ = ["InterspaceFactors", "InterspaceLayerPlan", "prepare_interspace", "interspace_factors",
           "folded_coefficients"]


@dataclass
class InterspaceFactors:
    """One interspace layer: masked ``coefficients [Cout, Cin, K²]``, ``basis [K², KH, KW]``, block ``n``."""

    coefficients: np.ndarray
    basis: np.ndarray
    n: int = 1

    @property
    def density(self) -> float:
        return float(np.count_nonzero(self.coefficients)) / max(self.coefficients.size, 1)


@dataclass
class InterspaceLayerPlan(LayerPlan):
    """A plan of format ``interspace`` (CSR 1x1) or ``interspace-1xN``, with the folded factors."""

    coefficients: np.ndarray | None = None
    basis: np.ndarray | None = None

    @property
    def format_label(self) -> str:
        return f"interspace+1x{self.n}" if self.fmt == "interspace-1xN" else "interspace"


def _block_n(coefficients: np.ndarray) -> int:
    from ..plan.layer import detect_block_n

    return detect_block_n(coefficients.reshape(coefficients.shape[0], -1)) or 1


def interspace_factors(model: Any) -> dict[str, InterspaceFactors]:
    """``{layer name: factors}`` of the model's interspace layers (groups 1 only)."""
    from ..prune.interspace import interspace_layers

    out = {}
    for name, m in interspace_layers(model).items():
        if m.groups != 1 or tuple(m.dilation) != (1, 1):
            continue
        coef = m.masked_coefficients().detach().cpu().numpy().astype(np.float32)
        out[name] = InterspaceFactors(coef, m.basis.detach().cpu().numpy().astype(np.float32), _block_n(coef))
    return out


def folded_coefficients(info: LayerInfo, f: InterspaceFactors) -> np.ndarray | None:
    """Coefficients scaled per output channel so that ``c' * B`` equals the imported weight, or None."""
    w = info.weight.reshape(info.weight.shape[0], -1).astype(np.float64)
    rec = np.einsum("oij,jhw->oihw", f.coefficients, f.basis).reshape(w.shape[0], -1).astype(np.float64)
    if rec.shape != w.shape:
        return None
    norm = (rec * rec).sum(axis=1)
    scale = np.where(norm > 0, (w * rec).sum(axis=1) / np.where(norm > 0, norm, 1.0), 1.0)
    err = np.abs(rec * scale[:, None] - w).max()
    if err > 1e-4 * max(float(np.abs(w).max()), 1e-12) + 1e-7:
        return None
    return (f.coefficients * scale[:, None, None]).astype(np.float32)


def _wrap_planner(base: Planner, factors: dict[str, InterspaceFactors], mode: str) -> Planner:
    from ..interspace_perf import predict_interspace_ms

    def plan(info: LayerInfo, target: NamedTarget) -> LayerPlan:
        p = base(info, target)
        f = factors.get(info.name)
        if f is None or info.op != "conv2d" or info.spec is None or info.spec.groups != 1 or mode == "dense":
            return p
        coef = folded_coefficients(info, f)
        if coef is None:
            p.reason += "; interspace factors do not match the imported weight: kept the dense filters"
            return p
        fmt, key = ("interspace-1xN", f"interspace+1x{f.n}") if f.n > 1 else ("interspace", "interspace")
        pred = dict(p.predicted_ms)
        pred[key] = predict_interspace_ms(info.spec, f.density, f.n, target)
        others = {k: v for k, v in pred.items() if k != key}
        if mode == "auto" and others and min(others.values()) <= pred[key]:
            best = min(others, key=others.get)
            p.predicted_ms = pred
            p.reason += f"; interspace form predicted {pred[key]:.3f} ms vs {best} {others[best]:.3f} ms"
            return p
        if mode == "sparse" and f.density >= 1.0:
            return p
        why = (f"interspace: basis conv + sparse 1x1 over {info.spec.cin}x{info.spec.kh * info.spec.kw} channels, "
               f"coefficient density {f.density:.2f}, predicted {pred[key]:.3f} ms")
        return InterspaceLayerPlan(info, fmt, n=f.n if f.n > 1 else 0, reason=why, predicted_ms=pred,
                                   coefficients=coef, basis=f.basis)

    return plan


def _make_kernel(plan: LayerPlan, target: NamedTarget):
    if isinstance(plan, InterspaceLayerPlan):
        from ..kernels.interspace_conv2d import interspace_conv2d

        info = plan.info
        return interspace_conv2d(info.spec, plan.coefficients, plan.basis, info.bias, target, n=max(plan.n, 1))
    return build_kernel(plan, target)


def reconstruct_for_import(model: Any) -> Any:
    """``model`` with every interspace layer as a dense ``nn.Conv2d`` (``w = c * B``); unchanged without any."""
    from ..prune.interspace import has_interspace_layers, reconstruct_dense

    return reconstruct_dense(model).eval() if has_interspace_layers(model) else model


def prepare_interspace(model: Any, planner: Planner, mode: str = "auto") -> tuple[Any, Planner, Callable | None]:
    """``(model to import, planner, kernel builder or None)``; unchanged when ``model`` has no interspace layers.

    ``mode``: ``auto`` (predicted times decide), ``sparse`` (interspace form wherever coefficients are
    pruned), ``dense`` (reconstructed dense filters only).
    """
    from ..prune.interspace import has_interspace_layers, reconstruct_dense

    if not has_interspace_layers(model):
        return model, planner, None
    factors = interspace_factors(model)
    return reconstruct_dense(model).eval(), _wrap_planner(planner, factors, mode), _make_kernel
