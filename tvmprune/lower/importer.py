"""PyTorch -> Relax import, and the conventions every imported model is brought to.

``torch.export`` traces the model, ``from_exported_program`` builds Relax with the
weights bound as constants (so later passes can inspect them), BatchNorm is folded into
the preceding conv (in PyTorch, with ``torch.fx`` conv+BN fusion, before export), and
the graph is converted once to NHWC activations / OHWI weights, the layout every
tvmprune kernel uses (see :mod:`tvmprune.kernels.base`). The model's input and output
stay NCHW / as PyTorch has them: a transpose sits at the boundary.

A saved ``torch.export`` program (``.pt2``) enters at ``from_exported_program``
(:func:`import_exported_program`), an ONNX file at TVM's ONNX frontend
(:mod:`.onnx_import`); both then go through :func:`to_kernel_conventions`, which also folds
the BatchNorms those graphs still carry into their convs (in Relax).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch

from ..errors import InvalidInputShapeError, TraceError
from .relax_graph import op_name


@dataclass
class ImportedModel:
    """A Relax module plus what the import learned about the model.

    Attributes:
        mod: IRModule whose ``main(x: [N,C,H,W] float32)`` returns a tuple of outputs.
        input_shape: the NCHW input shape.
        layer_names: PyTorch module names of the weights of conv / linear ops, in graph
            order (``layer1.0.conv1``, ...), used to label layers in reports.
        bn_folded: whether no BatchNorm is left as an op of its own (folded into convs, or a constant
            per-channel scale and shift where no conv precedes it).
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


def _batch_norm_to_scale_shift(mod):
    """An inference BatchNorm that no conv could absorb (DenseNet's pre-activation BN of a concat,
    ResNet-v2 style blocks) becomes ``x * scale + shift`` with constant per-channel ``scale`` and
    ``shift``: legalised as is, it evaluates ``(x - mean) / sqrt(var + eps) * gamma + beta`` for
    every element. Only BNs whose four statistics are constants are rewritten."""
    import numpy as np
    from tvm import relax
    from tvm.relax.dpl import is_const, is_op, is_tuple_get_item, wildcard, rewrite_call

    x = wildcard()
    stats = [is_const() for _ in range(4)]
    bn = is_op("relax.nn.batch_norm")(x, *stats)
    out = is_tuple_get_item(bn, 0)

    def rewriter(expr, matches):
        call = matches[bn]
        attrs = call.attrs
        rank = int(call.ty.fields[0].ndim)
        if bool(attrs.training) or rank == 0:
            return expr
        g, b, mean, var = (matches[c].value.numpy().astype("float64") for c in stats)
        if not bool(attrs.scale):
            g = np.ones_like(g)
        if not bool(attrs.center):
            b = np.zeros_like(b)
        scale = g / np.sqrt(var + float(attrs.epsilon))
        shape = [1] * rank
        shape[int(attrs.axis) % rank] = scale.size
        dtype = str(call.ty.fields[0].dtype)
        s_c = relax.const(scale.reshape(shape).astype(dtype))
        t_c = relax.const((b - mean * scale).reshape(shape).astype(dtype))
        return relax.op.add(relax.op.multiply(matches[x], s_c), t_c)

    for gv, f in list(mod.functions.items()):
        if isinstance(f, relax.Function):
            mod[gv] = rewrite_call(out, rewriter, f)
    return relax.transform.DeadCodeElimination()(mod)


def to_kernel_conventions(mod):
    """Bring an imported Relax module (NCHW, constants bound) to what the chain matcher expects.

    conv2d -> batch_norm pairs with constant operands are folded into the conv's weight and a
    bias add; then NHWC / OHWI layout, elementwise ops without layout transposes around them, the
    remaining constant BatchNorms as a per-channel scale and shift, constants folded (permuted
    weights and biases become plain constants).
    """
    from tvm import relax

    mod = relax.transform.FoldBatchnormToConv2D()(mod)
    # the fold leaves the scaled weight as an expression; ConvertLayout segfaults on such a
    # conv (TVM 0.27), so fold it to a constant first
    mod = relax.transform.FoldConstant()(mod)
    mod = relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "OHWI"]})(mod)
    mod = _drop_transposes_around_elementwise(mod)
    mod = _batch_norm_to_scale_shift(mod)
    mod = relax.transform.FoldConstant()(mod)
    return relax.transform.Normalize()(mod)


def has_batch_norm(mod) -> bool:
    """Whether a ``relax.nn.batch_norm`` call is left in ``mod["main"]`` (BN not folded)."""
    func = mod["main"]
    return any(op_name(b.value) == "relax.nn.batch_norm" for blk in func.body.blocks for b in blk.bindings)


def import_model(model: torch.nn.Module, input_shape: tuple[int, ...], fold_bn: bool = True) -> ImportedModel:
    """Trace ``model`` at ``input_shape`` (NCHW) and return it as a Relax module in NHWC.

    Raises:
        InvalidInputShapeError: the model does not accept the shape.
        TraceError: ``torch.export`` or the Relax frontend cannot handle the model.
    """
    model = model.eval()
    if fold_bn:
        model, _ = fold_batchnorm(model)
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
    return _from_program(ep, input_shape)


def _from_program(ep: "torch.export.ExportedProgram", input_shape: tuple[int, ...]) -> ImportedModel:
    from tvm.relax.frontend.torch import from_exported_program

    try:
        mod = from_exported_program(ep, keep_params_as_input=False)
    except Exception as e:
        raise TraceError(
            f"TVM's Relax frontend cannot import the model: {type(e).__name__}: {str(e).splitlines()[0]}"
        ) from None
    mod = to_kernel_conventions(mod)
    return ImportedModel(mod=mod, input_shape=tuple(input_shape), layer_names=_layer_names(ep),
                         bn_folded=not has_batch_norm(mod))


def program_input_shape(ep: "torch.export.ExportedProgram") -> tuple[int, ...]:
    """The shape of the program's one tensor input (``x`` of ``forward(x)``).

    Raises:
        InvalidInputShapeError: not exactly one tensor input, or a dynamic (symbolic) dimension.
    """
    from torch.export.graph_signature import InputKind

    user = [s for s in ep.graph_signature.input_specs if s.kind == InputKind.USER_INPUT]
    vals = {n.name: n.meta.get("val") for n in ep.graph.nodes if n.op == "placeholder"}
    shapes = [getattr(vals.get(s.arg.name), "shape", None) for s in user]
    if len(shapes) != 1 or shapes[0] is None:
        raise InvalidInputShapeError(f"the exported program takes {len(shapes)} inputs; tvmprune compiles models "
                                     "with one NCHW tensor input")
    try:
        return tuple(int(d) for d in shapes[0])
    except TypeError:
        raise InvalidInputShapeError(
            f"the exported program has a dynamic input shape {tuple(shapes[0])}: export it again with a static "
            "example input (torch.export.export(model, (x,)) without dynamic_shapes)") from None


def import_exported_program(ep: "torch.export.ExportedProgram",
                            input_shape: tuple[int, ...] | None = None) -> ImportedModel:
    """Import a ``torch.export`` program (e.g. ``torch.export.load("model.pt2")``) as Relax in NHWC.

    ``input_shape`` (NCHW) must be the program's own static input shape, when given.

    Raises:
        InvalidInputShapeError: another shape asked for, or the program's shape is dynamic.
        TraceError: the Relax frontend cannot import the program.
    """
    shape = program_input_shape(ep)
    if input_shape is not None and tuple(input_shape) != shape:
        raise InvalidInputShapeError(
            f"the exported program was traced for input {'x'.join(map(str, shape))}, not "
            f"{'x'.join(map(str, input_shape))}: export it again with an example input of the shape you need")
    return _from_program(ep, shape)
