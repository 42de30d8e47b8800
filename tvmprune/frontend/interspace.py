"""Compiling interspace-pruned models: dense filters at import, the interspace factors on the layers.

The lower stage (:func:`tvmprune.lower.lower`) calls the two hooks here for a model with
:class:`tvmprune.prune.interspace.InterspaceConv2d` layers:

* :func:`reconstruct_for_import` -- every interspace layer becomes an ``nn.Conv2d`` with
  ``w = c * B``, so import, BN folding and every kernel family see ordinary, spatially dense
  weights;
* :func:`attach_interspace_factors` -- each such layer's :class:`~tvmprune.plan.layer.LayerInfo`
  gets its :class:`~tvmprune.kernels.interspace_conv2d.InterspaceFactors` (masked coefficients
  scaled like the imported weight, the basis, the 1xN block height), which the interspace
  kernel family (:mod:`tvmprune.kernels.interspace_conv2d`) predicts and builds from. The
  planner then weighs (a) the reconstructed dense filters against (b) the interspace form by
  predicted time, like any other pair of formats.

BN folding scales each output channel of the imported weight; the coefficients are scaled to
match (per-channel least squares against the reconstructed filters, then checked: a layer
whose imported weight is not ``scale * (c * B)`` gets no factors and keeps the dense filters).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..kernels.interspace_conv2d import InterspaceFactors
from ..plan.layer import LayerInfo, detect_block_n

if TYPE_CHECKING:
    from ..lower.chains import LayerMatch

__all__ = ["InterspaceFactors", "interspace_factors", "folded_coefficients", "attach_interspace_factors",
           "reconstruct_for_import"]


def _block_n(coefficients: np.ndarray) -> int:
    return detect_block_n(coefficients.reshape(coefficients.shape[0], -1)) or 1


def interspace_factors(model: Any) -> dict[str, InterspaceFactors]:
    """``{layer name: factors}`` of the model's interspace layers (groups 1, no dilation), as trained."""
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
    rec = np.einsum("oij,jhw->oihw", f.coefficients, f.basis).reshape(f.coefficients.shape[0], -1).astype(np.float64)
    if rec.shape != w.shape:
        return None
    norm = (rec * rec).sum(axis=1)
    scale = np.where(norm > 0, (w * rec).sum(axis=1) / np.where(norm > 0, norm, 1.0), 1.0)
    err = np.abs(rec * scale[:, None] - w).max()
    if err > 1e-4 * max(float(np.abs(w).max()), 1e-12) + 1e-7:
        return None
    return (f.coefficients * scale[:, None, None]).astype(np.float32)


def attach_interspace_factors(layers: list["LayerMatch"], factors: dict[str, InterspaceFactors]) -> int:
    """Set ``info.interspace`` (BN-folded factors) on the layers named in ``factors``; returns how many.

    A layer whose imported weight does not match its factors (not ``scale * (c * B)``) is left
    without: it compiles from the dense filters like any other conv.
    """
    count = 0
    for m in layers:
        f = factors.get(m.info.name)
        if f is None or m.unsupported or m.info.spec is None or m.info.spec.groups != 1:
            continue
        coef = folded_coefficients(m.info, f)
        if coef is not None:
            m.info.interspace = InterspaceFactors(coef, f.basis, f.n)
            count += 1
    return count


def reconstruct_for_import(model: Any) -> Any:
    """``model`` with every interspace layer as a dense ``nn.Conv2d`` (``w = c * B``); unchanged without any."""
    from ..prune.interspace import has_interspace_layers, reconstruct_dense

    return reconstruct_dense(model).eval() if has_interspace_layers(model) else model
