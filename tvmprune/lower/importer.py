"""PyTorch -> Relax import.

``torch.export`` traces the model, ``from_exported_program`` builds Relax with the
weights bound as constants (so later passes can inspect them), BatchNorm is folded into
the preceding conv (in PyTorch, with ``torch.fx`` conv+BN fusion, before export), and
the graph is converted once to NHWC activations / OHWI weights, the layout every
tvmprune kernel uses (see :mod:`tvmprune.kernels.base`). The model's input and output
stay NCHW / as PyTorch has them: a transpose sits at the boundary.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch

from ..errors import InvalidInputShapeError, TraceError


@dataclass
class ImportedModel:
    """A Relax module plus what the import learned about the model.

    Attributes:
        mod: IRModule whose ``main(x: [N,C,H,W] float32)`` returns a tuple of outputs.
        input_shape: the NCHW input shape.
        layer_names: PyTorch module names of the weights of conv / linear ops, in graph
            order (``layer1.0.conv1``, ...), used to label layers in reports.
        bn_folded: whether conv+BN fusion succeeded.
    """

    mod: object
    input_shape: tuple[int, ...]
    layer_names: list[str]
    bn_folded: bool


def fold_batchnorm(model: torch.nn.Module) -> tuple[torch.nn.Module, bool]:
    """Return an eval-mode copy of ``model`` with every Conv2d->BatchNorm2d pair fused.

    Falls back to the unfused model (returning False) when ``torch.fx`` cannot trace it;
    BatchNorm then runs as its own op.
    """
    from torch.fx.experimental.optimization import fuse

    model = copy.deepcopy(model).eval()
    try:
        return fuse(model), True
    except Exception:  # fx cannot trace: keep BN as a separate op
        return model, False


def _layer_names(ep) -> list[str]:
    params = ep.graph_signature.inputs_to_parameters
    names = []
    for n in ep.graph.nodes:
        if n.op == "call_function" and any(k in str(n.target) for k in ("conv2d", "linear")):
            w = n.args[1] if len(n.args) > 1 else None
            pname = params.get(getattr(w, "name", ""), "")
            names.append(pname[: -len(".weight")] if pname.endswith(".weight") else pname or str(n.name))
    return names


def _drop_transposes_around_elementwise(mod):
    """ConvertLayout has no layout rule for ``clip`` (ReLU6): it wraps each one in
    NHWC->NCHW->NHWC transposes. Elementwise ops do not care about layout, so
    ``permute(clip(permute(x, p)), p^-1)`` becomes ``clip(x)``."""
    from tvm import relax
    from tvm.relax.dpl import is_op, wildcard, rewrite_call

    x, lo, hi = wildcard(), wildcard(), wildcard()
    inner = is_op("relax.permute_dims")(x)
    clip = is_op("relax.clip")(inner, lo, hi)
    outer = is_op("relax.permute_dims")(clip)

    def rewriter(expr, matches):
        a_in = [int(v) for v in matches[inner].attrs.axes]
        a_out = [int(v) for v in matches[outer].attrs.axes]
        if [a_in[i] for i in a_out] != list(range(len(a_in))):
            return expr
        return relax.op.clip(matches[x], matches[lo], matches[hi])

    for gv, f in list(mod.functions.items()):
        if isinstance(f, relax.Function):
            mod[gv] = rewrite_call(outer, rewriter, f)
    return relax.transform.DeadCodeElimination()(mod)


def import_model(model: torch.nn.Module, input_shape: tuple[int, ...], fold_bn: bool = True) -> ImportedModel:
    """Trace ``model`` at ``input_shape`` (NCHW) and return it as a Relax module in NHWC.

    Raises:
        InvalidInputShapeError: the model does not accept the shape.
        TraceError: ``torch.export`` or the Relax frontend cannot handle the model.
    """
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    model = model.eval()
    bn_folded = False
    if fold_bn:
        model, bn_folded = fold_batchnorm(model)
    x = torch.zeros(tuple(input_shape))
    try:
        with torch.no_grad():
            model(x)
    except Exception as e:
        raise InvalidInputShapeError(
            f"input shape {'x'.join(map(str, input_shape))} does not fit the model: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}"
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ep = torch.export.export(model, (x,))
    except Exception as e:
        raise TraceError(f"torch.export cannot trace the model: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    try:
        mod = from_exported_program(ep, keep_params_as_input=False)
    except Exception as e:
        raise TraceError(
            f"TVM's Relax frontend cannot import the model: {type(e).__name__}: {str(e).splitlines()[0]}"
        ) from None
    mod = relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "OHWI"]})(mod)
    mod = _drop_transposes_around_elementwise(mod)
    mod = relax.transform.FoldConstant()(mod)
    mod = relax.transform.Normalize()(mod)
    return ImportedModel(mod=mod, input_shape=tuple(input_shape), layer_names=_layer_names(ep), bn_folded=bn_folded)
