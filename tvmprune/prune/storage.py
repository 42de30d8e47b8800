"""A pruned model on disk: ``DIR/weights.safetensors`` (state_dict) and ``DIR/pruning.json``.

Directories written before safetensors hold ``DIR/weights.pt`` instead; it still loads, with
``torch.load(weights_only=True)`` (tensors only, no pickled code).  ``model_spec`` names the
dense model: a torchvision name or ``path/to/file.py:function`` -- loading the directory runs
that file and nothing else (:func:`tvmprune.frontend.model_source.load_model`).

``pruning.json`` holds ``format``, ``model_spec``, ``input_shape``, ``config`` (the
:attr:`PruneResult.config`: common entries plus the method's own, e.g. ``masks``,
``permutations``, ``filter_keep``) and ``layers`` (the per-layer report).  Loading rebuilds
the dense model from ``model_spec``, lets the method named by ``config["kind"]`` reshape it
(:meth:`~tvmprune.prune.registry.PruningMethod.restore`) and loads the weights.
"""

from __future__ import annotations

import json
import os

import torch
from torch import nn

from ..errors import OutputDirError, PruneConfigError, WeightsFileError
from ..user_code import absolute_factory_spec
from ..safetensors_file import read_safetensors, write_safetensors
from .bits import decode_bits
from .block import block_mask_from_map
from .context import LoadContext
from .registry import get_method
from .result import PruneResult

__all__ = ["FORMAT", "WEIGHTS_FILE", "LEGACY_WEIGHTS_FILE", "save_pruned", "load_pruned", "masks_from_config"]

FORMAT = "tvmprune-pruned/1"
WEIGHTS_FILE = "weights.safetensors"
LEGACY_WEIGHTS_FILE = "weights.pt"  # read only: directories written before safetensors


def masks_from_config(config: dict) -> dict[str, torch.Tensor]:
    """Decode the per-layer keep-masks stored in a pruning config (1xN block maps / unstructured masks)."""
    out = {}
    n = int(config.get("n", 1))
    for name, enc in (config.get("masks") or {}).items():
        shape = tuple(enc["shape"])
        if "blockmap" in enc:
            out[name] = block_mask_from_map(enc["blockmap"], shape, n)
        else:
            out[name] = decode_bits(enc["mask"], shape)
    return out


def save_pruned(result: PruneResult, directory: str, model_spec: str, input_shape: tuple[int, ...]) -> None:
    """Write ``directory/weights.safetensors`` (state_dict) and ``directory/pruning.json``."""
    if not isinstance(result, PruneResult):
        raise PruneConfigError(f"save_pruned needs a PruneResult, got {type(result).__name__}")
    try:
        os.makedirs(directory, exist_ok=True)
        write_safetensors(os.path.join(directory, WEIGHTS_FILE), dict(result.model.state_dict()),
                          metadata={"format": FORMAT})
        stale = os.path.join(directory, LEGACY_WEIGHTS_FILE)
        if os.path.isfile(stale):  # an older save here: loading would still prefer the new file, but do not leave it
            os.remove(stale)
        meta = {
            "format": FORMAT,
            "model_spec": absolute_factory_spec(str(model_spec)),  # loading runs exactly this file
            "input_shape": [int(d) for d in input_shape],
            "config": result.config,
            "layers": [r.to_dict() for r in result.layers],
        }
        with open(os.path.join(directory, "pruning.json"), "w") as f:
            json.dump(meta, f, indent=1)
    except (OSError, WeightsFileError) as e:
        raise OutputDirError(f"cannot write pruned model to {directory!r}: {e}") from None


def _read_meta(directory: str) -> dict:
    jpath = os.path.join(directory, "pruning.json")
    if not os.path.isdir(directory):
        raise PruneConfigError(f"pruned model directory {directory!r} does not exist (write one with tvmprune prune -o DIR)")
    if not os.path.isfile(jpath):
        raise PruneConfigError(f"{directory!r} is not a pruned model directory: pruning.json is missing")
    if _weights_path(directory) is None:
        raise PruneConfigError(f"{directory!r} is not a pruned model directory: {WEIGHTS_FILE} is missing")
    try:
        with open(jpath) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise PruneConfigError(f"cannot read {jpath}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise PruneConfigError(f"{jpath} is not a tvmprune pruning config (expected format {FORMAT!r})")
    for key in ("model_spec", "input_shape", "config"):
        if key not in meta:
            raise PruneConfigError(f"{jpath} lacks the {key!r} entry")
    return meta


def _weights_path(directory: str) -> str | None:
    """``weights.safetensors``, else the legacy ``weights.pt``, else None."""
    for name in (WEIGHTS_FILE, LEGACY_WEIGHTS_FILE):
        p = os.path.join(directory, name)
        if os.path.isfile(p):
            return p
    return None


def _read_state(wpath: str) -> dict:
    if wpath.endswith(".safetensors"):
        try:
            return read_safetensors(wpath)[0]
        except WeightsFileError as e:
            raise PruneConfigError(f"cannot load {wpath}: {e}") from None
    try:
        return torch.load(wpath, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise PruneConfigError(f"cannot load {wpath}: {type(e).__name__}: {first}") from None


def _load_weights(model: nn.Module, wpath: str, jpath: str, spec: str) -> None:
    state = _read_state(wpath)
    if not isinstance(state, dict):
        raise PruneConfigError(f"{wpath} does not hold a state_dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()
        raise PruneConfigError(
            f"weights in {wpath} do not fit model {spec!r} rebuilt from {jpath}: {' '.join(first[:3])[:500]}"
        ) from None


def load_pruned(directory: str) -> tuple[nn.Module, dict]:
    """Rebuild a model saved by :func:`save_pruned`; returns ``(model in eval mode, pruning.json dict)``.

    Raises:
        PruneConfigError: missing directory / files, damaged JSON or weights, an unknown
            pruning kind, or weights that do not fit the rebuilt architecture.
    """
    from ..frontend.model_source import load_model

    meta = _read_meta(directory)
    jpath = os.path.join(directory, "pruning.json")
    cfg = meta["config"]
    if not isinstance(cfg, dict):
        raise PruneConfigError(f"{jpath}: 'config' is not an object")
    try:
        method = get_method(cfg.get("kind", "dense"))
    except PruneConfigError as e:
        raise PruneConfigError(f"{jpath}: {e} (written by a newer tvmprune?)") from None
    model = load_model(meta["model_spec"])
    model = method.restore(model, cfg, LoadContext(jpath, meta["model_spec"], meta["input_shape"]))
    _load_weights(model, _weights_path(directory), jpath, meta["model_spec"])
    return model.eval(), meta
