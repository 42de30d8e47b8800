"""Planners: pick each layer's format from the kernel family registry.

* ``auto`` (:func:`.measured.auto_format`): the roofline model proposes, and a predicted sparse
  format is kept only where it is measured faster than dense on this machine (with the build's
  schedules); cross-compiled targets: the prediction with a conservative margin;
* ``predicted`` (:func:`choose_format`): the format with the smallest roofline prediction;
* ``dense`` (:func:`dense_only`): every layer dense (the dense baseline);
* ``sparse`` (:func:`sparse_where_pruned`): a sparse kernel wherever the weight has zeros;
* ``measured`` (:func:`.measured.measured_format`): dense and the best predicted sparse kernels of
  each pruned layer timed on this machine, the fastest kept (never slower than dense per layer).

Grouped convs are decided by shape: depthwise ones stay dense, other grouped ones have no
kernel and stay Relax ops.
"""

from __future__ import annotations

from ..kernels.format import Format
from ..kernels.registry import families, family
from ..target import NamedTarget
from .layer import LayerInfo, LayerPlan, Planner
from .roofline import PerfParams, params_for


def predict_ms(info: LayerInfo, target: NamedTarget, params: PerfParams | None = None) -> dict[Format, float]:
    """Predicted milliseconds per candidate format of one layer (``dense``, ``1xN``, ``1xN-spatial``,
    ``csr`` for convs; ``dense``, ``1xN``, ``csr`` for linear layers; only ``dense`` for grouped convs).

    Each registered family predicts its own time (``KernelFamily.predict``); families that cannot
    take the layer (no 1xN blocks, grouped conv ...) are left out.
    """
    prm = params or params_for(target)
    out: dict[Format, float] = {}
    for fam in families(info.op):
        ms = fam.predict(info, target, prm) if fam.predict is not None else None
        if ms is not None:
            out[fam.format] = ms
    return out


def _grouped_plan(info: LayerInfo, target: NamedTarget, reason: str, with_prediction: bool) -> LayerPlan:
    if info.is_depthwise:
        return LayerPlan(info, Format.DEPTHWISE, reason=reason,
                         predicted_ms=predict_ms(info, target) if with_prediction else {})
    return LayerPlan(info, Format.GROUPED, reason=f"grouped conv (groups={info.groups}): grouped NHWC kernel",
                     predicted_ms=predict_ms(info, target) if with_prediction else {})


def _plan_for(info: LayerInfo, fmt: Format, reason: str, pred: dict[Format, float]) -> LayerPlan:
    return LayerPlan(info, fmt, n=info.block_n if fmt.blocked else 0, reason=reason, predicted_ms=pred)


def choose_format(info: LayerInfo, target: NamedTarget) -> LayerPlan:
    """Pick the format with the smallest roofline prediction for one layer."""
    if info.groups > 1:
        return _grouped_plan(info, target, "depthwise convs stay dense", with_prediction=True)
    pred = predict_ms(info, target)
    best = min(pred, key=pred.get)
    if best == Format.DENSE:
        why = "dense predicted fastest" if info.density < 1.0 else "no zeros"
        if Format.INTERSPACE in pred:  # the zeros are in the coefficients: say what their form costs
            why = (f"dense filters c*B predicted faster ({pred[best]:.3f} ms vs interspace "
                   f"{pred[Format.INTERSPACE]:.3f} ms)")
        return LayerPlan(info, Format.DENSE, reason=why, predicted_ms=pred)
    return _plan_for(info, best, family(best, info.op).reason(info), pred)


def dense_only(info: LayerInfo, target: NamedTarget) -> LayerPlan:
    """Planner that keeps every layer dense (the dense baseline)."""
    if info.groups > 1:
        return _grouped_plan(info, target, "depthwise", with_prediction=False)
    return LayerPlan(info, Format.DENSE, reason="dense baseline")


def sparse_where_pruned(info: LayerInfo, target: NamedTarget) -> LayerPlan:
    """Planner that uses a sparse kernel for every layer with zeros (1xN when block-structured,
    else CSR), whatever the model predicts: for measuring sparse kernels against the model."""
    if info.groups > 1:
        return dense_only(info, target)
    pred = predict_ms(info, target)
    if info.interspace is not None:  # the zeros are in the coefficients, not in the reconstructed weight
        return LayerPlan(info, Format.INTERSPACE, reason="forced sparse (interspace coefficients)", predicted_ms=pred)
    if info.density >= 1.0:
        return LayerPlan(info, Format.DENSE, reason="no zeros", predicted_ms=pred)
    if info.block_n:
        return _plan_for(info, Format.BSR, "forced sparse (1xN blocks)", pred)
    return LayerPlan(info, Format.CSR, reason="forced sparse (unstructured)", predicted_ms=pred)


def _measured(info: LayerInfo, target: NamedTarget, schedule_source=None) -> LayerPlan:
    from .measured import measured_format  # imports this module

    return measured_format(info, target, schedule_source=schedule_source)


def _auto(info: LayerInfo, target: NamedTarget, schedule_source=None) -> LayerPlan:
    from .measured import auto_format  # imports this module

    return auto_format(info, target, schedule_source=schedule_source)


_measured.uses_schedule_source = _auto.uses_schedule_source = True  # type: ignore[attr-defined]

PLANNERS: dict[str, Planner] = {"auto": _auto, "predicted": choose_format, "dense": dense_only,
                                "sparse": sparse_where_pruned, "measured": _measured}
