"""ONNX -> Relax import with TVM's ONNX frontend (``tvm.relax.frontend.onnx.from_onnx``).

Initializers become Relax constants, then :func:`~.importer.to_kernel_conventions` gives
the same module a PyTorch model gets (NHWC / OHWI, BatchNorm folded, bias adds after convs),
so the chain matcher finds the conv / linear layers and their zeros pick sparse kernels.
``onnx`` is an optional dependency (``pip install -e '.[onnx]'``).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from ..errors import InvalidInputShapeError, MissingDependencyError, TraceError, UnknownModelError
from .importer import ImportedModel, has_batch_norm, to_kernel_conventions

INSTALL_HINT = "pip install -e '.[onnx]'"
LAYER_NODE_TYPES = ("Conv", "Gemm", "MatMul")


def require_onnx() -> Any:
    """The ``onnx`` module, or a :class:`MissingDependencyError` naming the install command."""
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError(
            f"reading ONNX models needs the optional onnx package: {INSTALL_HINT} (or pip install onnx)"
        ) from None
    return onnx


def load_onnx(path: str) -> Any:
    """Read and check ``path`` (an ``onnx.ModelProto``, external data loaded from beside it).

    Raises:
        MissingDependencyError: ``onnx`` is not installed.
        UnknownModelError: missing or unreadable file, or a model the ONNX checker rejects.
    """
    onnx = require_onnx()
    if not os.path.isfile(path):
        raise UnknownModelError(f"ONNX file {path!r} does not exist")
    try:
        proto = onnx.load(path)
        onnx.checker.check_model(proto)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise UnknownModelError(f"cannot read ONNX file {path!r}: {type(e).__name__}: {first}") from None
    return proto


def _graph_inputs(proto: Any) -> list[Any]:
    """Graph inputs that are not initializers (older exporters list weights as inputs too)."""
    inits = {i.name for i in proto.graph.initializer}
    return [i for i in proto.graph.input if i.name not in inits]


def onnx_input_shape(proto: Any) -> tuple[int | None, ...]:
    """The NCHW shape of the model's one input; None for a dynamic (named or unset) dimension.

    Raises:
        InvalidInputShapeError: not exactly one input, or not 4-D.
    """
    inputs = _graph_inputs(proto)
    if len(inputs) != 1:
        raise InvalidInputShapeError(f"the ONNX model has {len(inputs)} inputs; tvmprune compiles models with one "
                                     "NCHW tensor input")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims)
    if len(shape) != 4:
        raise InvalidInputShapeError(f"the ONNX model's input {inputs[0].name!r} has {len(shape)} dimensions, "
                                     "expected 4 (NCHW)")
    return shape


def resolve_onnx_shape(proto: Any, requested: tuple[int, ...] | None) -> tuple[int, ...]:
    """The input shape to compile for: ``requested`` where the model's dims allow it, else the model's own.

    Raises:
        InvalidInputShapeError: ``requested`` contradicts a static dim, or a dim is dynamic and no
            shape was requested.
    """
    own = onnx_input_shape(proto)
    text = "x".join("?" if d is None else str(d) for d in own)
    if requested is None:
        if any(d is None for d in own):
            raise InvalidInputShapeError(f"the ONNX model's input shape {text} is dynamic: give --input-shape")
        return tuple(int(d) for d in own)
    if len(requested) != 4 or any(d is not None and d != r for d, r in zip(own, requested)):
        raise InvalidInputShapeError(f"input shape {'x'.join(map(str, requested))} does not fit the ONNX model's "
                                     f"input {text}")
    return tuple(int(r) for r in requested)


def module_name_of_node(node_name: str) -> str:
    """``/layer1/layer1.0/conv1/Conv`` (a PyTorch exporter's scoped node name) -> ``layer1.0.conv1``."""
    parts = [p for p in node_name.split("/") if p][:-1]
    full: list[str] = []
    for p in parts:
        if full and p.startswith(full[-1] + "."):  # "layer1" then "layer1.0": the child spelled in full
            full[-1] = p
        else:
            full.append(p)
    return ".".join(full)


def onnx_layer_names(proto: Any) -> list[str]:
    """Names of the Conv / Gemm / MatMul nodes in graph order: the weight's ``X.weight`` prefix,
    else the module path in the node's name, else the node name."""
    names = []
    for n in proto.graph.node:
        if n.op_type not in LAYER_NODE_TYPES:
            continue
        w = n.input[1] if len(n.input) > 1 else ""
        if w.endswith(".weight"):
            names.append(w[: -len(".weight")])
        else:
            names.append(module_name_of_node(n.name) or n.name or f"{n.op_type}{len(names)}")
    return names


def import_onnx(proto: Any, input_shape: tuple[int, ...] | None = None) -> ImportedModel:
    """Import an ONNX model (``onnx.ModelProto``) as a Relax module in tvmprune's conventions.

    ``input_shape``: NCHW shape to compile for (defaults to the model's static input shape).

    Raises:
        InvalidInputShapeError: see :func:`resolve_onnx_shape`.
        TraceError: TVM's ONNX frontend cannot import the model.
    """
    require_onnx()
    from tvm.relax.frontend.onnx import from_onnx

    shape = resolve_onnx_shape(proto, input_shape)
    name = _graph_inputs(proto)[0].name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # input renames (input.1 -> input_1)
            mod = from_onnx(proto, shape_dict={name: list(shape)}, keep_params_in_input=False)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise TraceError(f"TVM's ONNX frontend cannot import the model: {type(e).__name__}: {first}") from None
    mod = to_kernel_conventions(mod)
    return ImportedModel(mod=mod, input_shape=shape, layer_names=onnx_layer_names(proto),
                         bn_folded=not has_batch_norm(mod))
