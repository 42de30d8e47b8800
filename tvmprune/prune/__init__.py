"""Pruning: patterns, dependency graph, 1xN / unstructured / filter pruning, save and load.

Top-level API::

    result = prune_model(model, parse_pattern("1x8@0.8"), example_input)
    print(format_layer_table(result.layers))
    save_pruned(result, "pruned/", "resnet50", (1, 3, 224, 224))
    model, meta = load_pruned("pruned/")

Defaults (documented choices):

* 1xN and unstructured pruning skip the first conv (any layer consuming the model input),
  depthwise convs and grouped convs; everything else, including the final Linear, is
  pruned.  Skipped layers appear in the layer table with their reason.
* 1xN pruning with ``rearrange`` (default) first permutes each channel group's filters by
  descending L1 (see :mod:`.rearrange`); the model function is unchanged by that step.
* Global modes cap each layer at ``max_layer_rate`` (0.95) of its blocks / weights / filters.
* Filter pruning returns a physically smaller model; coupled residual groups are pruned
  together by summed L1 (``skip_coupled=True`` leaves them dense).
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..errors import OutputDirError, PruneConfigError
from .block import (MAX_LAYER_RATE, block_map, check_block_size, check_rate, decode_bits, encode_bits,
                    expand_block_mask, global_block_masks, block_mask)
from .filter import filter_keep_indices, filter_mask, filter_prune, sensitivity_scan
from .finetune import finetune
from .graph import DependencyGraph, build_graph, is_depthwise
from .masks import apply_masks, attach_masks, detach_masks
from .pattern import BLOCK_SIZES, PrunePattern, parse_pattern, parse_patterns
from .rearrange import rearrange_filters
from .unstructured import global_magnitude_masks, magnitude_mask

__all__ = [
    "PrunePattern", "parse_pattern", "parse_patterns", "BLOCK_SIZES", "MAX_LAYER_RATE",
    "LayerReport", "PruneResult", "prune_model", "save_pruned", "load_pruned", "format_layer_table",
    "format_summary", "masks_from_config", "build_graph", "DependencyGraph", "rearrange_filters",
    "filter_keep_indices", "filter_prune", "filter_mask", "sensitivity_scan", "finetune",
    "apply_masks", "attach_masks", "detach_masks", "block_mask", "magnitude_mask",
]

FORMAT = "tvmprune-pruned/1"


@dataclass
class LayerReport:
    name: str
    kind: str  # 'conv' | 'linear'
    shape: tuple
    density: float
    pattern: str
    skipped_reason: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


@dataclass
class PruneResult:
    model: nn.Module
    layers: list[LayerReport]
    config: dict
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    graph: DependencyGraph | None = None

    @property
    def sparsity(self) -> float:
        """Fraction of zero weights over the pruned (non-skipped) conv / linear layers."""
        mods = dict(self.model.named_modules())
        tot = nz = 0
        for r in self.layers:
            if r.skipped_reason is None and r.name in mods:
                w = mods[r.name].weight
                tot += w.numel()
                nz += int((w != 0).sum())
        return 1.0 - nz / tot if tot else 0.0


def _skip_reason(graph: DependencyGraph, name: str, mod: nn.Module) -> str | None:
    if name in graph.input_consumers:
        return "first layer (consumes the model input)"
    if is_depthwise(mod):
        return "depthwise conv"
    if isinstance(mod, nn.Conv2d) and mod.groups != 1:
        return "grouped conv"
    return None


def _validate(model, pattern, example_input) -> PrunePattern:
    if not isinstance(model, nn.Module):
        raise PruneConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(pattern, str):
        pattern = parse_pattern(pattern)
    if not isinstance(pattern, PrunePattern):
        raise PruneConfigError(f"pattern must be a PrunePattern or a pattern string, got {type(pattern).__name__}")
    check_rate(pattern.rate, "pattern rate")
    if pattern.kind == "1xN":
        check_block_size(pattern.n, "pattern block size N")
    if example_input is not None and not isinstance(example_input, torch.Tensor):
        raise PruneConfigError(f"example_input must be a torch.Tensor or None, got {type(example_input).__name__}")
    return pattern


def prune_model(model: nn.Module, pattern: PrunePattern | str, example_input: torch.Tensor | None = None, *,
                max_layer_rate: float = MAX_LAYER_RATE, skip_coupled: bool = False) -> PruneResult:
    """Prune a copy of ``model`` with ``pattern``; the input model is not modified.

    ``example_input`` (default ``1xCx224x224`` zeros) is used to trace shapes.  Returns a
    :class:`PruneResult` whose ``.model`` is in eval mode: the original architecture with
    zeros for ``1xN`` / ``unstructured``, a physically smaller model for ``filter``.

    Raises:
        PruneConfigError: bad pattern, rate or block size (naming the argument / layer).
        TraceError: the model cannot be traced with torch.fx.
    """
    pattern = _validate(model, pattern, example_input)
    m = copy.deepcopy(model).eval()
    graph = build_graph(m, example_input)
    mods = dict(m.named_modules())
    config: dict = {
        "pattern": pattern.label,
        "kind": pattern.kind,
        "n": pattern.n,
        "rate": pattern.rate,
        "rearrange": pattern.rearrange if pattern.kind == "1xN" else False,
        "global": pattern.global_,
        "max_layer_rate": max_layer_rate,
        "coupled_groups": [g.producers for g in graph.coupled_groups()],
    }
    orig_shapes = {n: tuple(mods[n].weight.shape) for n in graph.layers}
    skipped = {n: _skip_reason(graph, n, mods[n]) for n in graph.layers}
    targets = [n for n in graph.layers if skipped[n] is None]
    masks: dict[str, torch.Tensor] = {}

    if pattern.kind == "1xN":
        if pattern.rearrange:
            perms = rearrange_filters(m, graph)
            config["permutations"] = {graph.groups[g].name: p.tolist() for g, p in perms.items()}
        weights = {n: mods[n].weight for n in targets}
        if pattern.global_:
            masks = global_block_masks(weights, pattern.n, pattern.rate, max_layer_rate)
        else:
            masks = {n: block_mask(w, pattern.n, pattern.rate, n) for n, w in weights.items()}
        apply_masks(m, masks)
        config["masks"] = {
            n: {"shape": list(orig_shapes[n]), "blockmap": encode_bits(block_map(k, pattern.n))}
            for n, k in masks.items()
        }
    elif pattern.kind == "unstructured":
        weights = {n: mods[n].weight for n in targets}
        if pattern.global_:
            masks = global_magnitude_masks(weights, pattern.rate, max_layer_rate)
        else:
            masks = {n: magnitude_mask(w, pattern.rate, n) for n, w in weights.items()}
        apply_masks(m, masks)
        config["masks"] = {n: {"shape": list(orig_shapes[n]), "mask": encode_bits(k)} for n, k in masks.items()}
    elif pattern.kind == "filter":
        keep = filter_keep_indices(m, graph, pattern.rate, pattern.global_, skip_coupled=skip_coupled,
                                   max_layer_rate=max_layer_rate)
        config["filter_keep"] = {graph.groups[g].name: {"size": graph.groups[g].size, "keep": k.tolist()}
                                 for g, k in keep.items()}
        config["skip_coupled"] = skip_coupled
        m = filter_prune(m, graph, keep)
        mods = dict(m.named_modules())
        touched = {mem.module for g in keep for mem in graph.groups[g].members}
        skipped = {}
        for n in graph.layers:
            if n in touched:
                skipped[n] = None
            else:
                g = graph.out_group(n)
                if g is not None and g.frozen:
                    skipped[n] = f"frozen channels ({g.reason})"
                elif g is not None and skip_coupled and g.coupled:
                    skipped[n] = "coupled residual group"
                else:
                    skipped[n] = "no filter removed"

    layers = []
    for n in graph.layers:
        mod = mods[n]
        w = mod.weight
        kind = "linear" if isinstance(mod, nn.Linear) else "conv"
        if pattern.kind == "filter":
            dens = w.numel() / max(1, int(torch.tensor(orig_shapes[n]).prod()))
            pat = "filter" if skipped[n] is None else "dense"
        else:
            dens = float((w != 0).sum()) / w.numel()
            pat = pattern.label if (skipped[n] is None and pattern.kind != "dense") else "dense"
        layers.append(LayerReport(n, kind, tuple(w.shape), dens, pat, skipped[n]))
    return PruneResult(m.eval(), layers, config, masks, graph)


def masks_from_config(config: dict) -> dict[str, torch.Tensor]:
    """Decode the per-layer keep-masks stored in a pruning config (1xN / unstructured)."""
    out = {}
    n = int(config.get("n", 1))
    for name, enc in (config.get("masks") or {}).items():
        shape = tuple(enc["shape"])
        if "blockmap" in enc:
            k = 1
            for d in shape[1:]:
                k *= d
            g = -(-shape[0] // n)
            bm = decode_bits(enc["blockmap"], (g, k))
            out[name] = expand_block_mask(bm, (shape[0], k), n).reshape(shape)
        else:
            out[name] = decode_bits(enc["mask"], shape)
    return out


def format_layer_table(layers: list[LayerReport]) -> str:
    """Per-layer table: name, kind, shape, density, pattern (and why a layer was skipped)."""
    rows = [("layer", "kind", "shape", "density", "pattern")]
    for r in layers:
        pat = r.pattern if r.skipped_reason is None else f"{r.pattern} ({r.skipped_reason})"
        rows.append((r.name, r.kind, "x".join(map(str, r.shape)), f"{r.density:.3f}", pat))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for j, row in enumerate(rows):
        lines.append("  ".join(c.ljust(widths[i]) if i != 3 else c.rjust(widths[i]) for i, c in enumerate(row[:4]))
                     + "  " + row[4])
        if j == 0:
            lines.append("-" * (sum(widths) + 8 + max(len(r[4]) for r in rows)))
    return "\n".join(lines)


def format_summary(result: PruneResult, original: nn.Module | None = None) -> str:
    mods = dict(result.model.named_modules())
    tot = sum(mods[r.name].weight.numel() for r in result.layers)
    nz = sum(int((mods[r.name].weight != 0).sum()) for r in result.layers)
    pruned = [r for r in result.layers if r.skipped_reason is None]
    s = (f"pattern {result.config['pattern']}: {len(pruned)}/{len(result.layers)} layers pruned, "
         f"nonzero conv/linear weights {nz:,}/{tot:,}")
    if original is not None:
        p0 = sum(p.numel() for p in original.parameters())
        p1 = sum(p.numel() for p in result.model.parameters())
        s += f"; parameters {p1:,} (was {p0:,})"
    if result.config["kind"] in ("1xN", "unstructured"):
        s += f"; sparsity of pruned layers {result.sparsity:.3f}"
    ncg = len(result.config.get("coupled_groups", []))
    s += f"; {ncg} coupled channel groups"
    return s


def save_pruned(result: PruneResult, directory: str, model_spec: str, input_shape: tuple[int, ...]) -> None:
    """Write ``directory/weights.pt`` (state_dict) and ``directory/pruning.json``."""
    if not isinstance(result, PruneResult):
        raise PruneConfigError(f"save_pruned needs a PruneResult, got {type(result).__name__}")
    try:
        os.makedirs(directory, exist_ok=True)
        torch.save(result.model.state_dict(), os.path.join(directory, "weights.pt"))
        meta = {
            "format": FORMAT,
            "model_spec": str(model_spec),
            "input_shape": [int(d) for d in input_shape],
            "config": result.config,
            "layers": [r.to_dict() for r in result.layers],
        }
        with open(os.path.join(directory, "pruning.json"), "w") as f:
            json.dump(meta, f, indent=1)
    except OSError as e:
        raise OutputDirError(f"cannot write pruned model to {directory!r}: {e}") from None


def load_pruned(directory: str) -> tuple[nn.Module, dict]:
    """Rebuild a model saved by :func:`save_pruned`; returns ``(model in eval mode, pruning.json dict)``.

    Raises:
        PruneConfigError: missing directory / files, damaged JSON or weights, or weights that
            do not fit the rebuilt architecture.
    """
    from ..frontend.model_source import load_model

    jpath = os.path.join(directory, "pruning.json")
    wpath = os.path.join(directory, "weights.pt")
    if not os.path.isdir(directory):
        raise PruneConfigError(f"pruned model directory {directory!r} does not exist (write one with tvmprune prune -o DIR)")
    for p in (jpath, wpath):
        if not os.path.isfile(p):
            raise PruneConfigError(f"{directory!r} is not a pruned model directory: {os.path.basename(p)} is missing")
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
    cfg = meta["config"]
    model = load_model(meta["model_spec"])
    keep_cfg = cfg.get("filter_keep") or {}
    if keep_cfg:
        try:
            shape = tuple(int(d) for d in meta["input_shape"])
        except (TypeError, ValueError):
            raise PruneConfigError(f"{jpath}: bad input_shape {meta['input_shape']!r}") from None
        graph = build_graph(model, torch.zeros(shape))
        keep = {}
        for name, ent in keep_cfg.items():
            g = graph.group_by_name(name)
            if g is None or g.size != ent.get("size") or not g.prunable:
                raise PruneConfigError(f"{jpath}: filter group {name!r} does not match model {meta['model_spec']!r}")
            idx = torch.tensor(ent["keep"], dtype=torch.long)
            if idx.numel() == 0 or int(idx.min()) < 0 or int(idx.max()) >= g.size:
                raise PruneConfigError(f"{jpath}: bad kept channel indices for group {name!r}")
            keep[g.gid] = idx
        graph.apply_channel_index(model, keep)
    if cfg.get("kind") == "interspace":  # KxK convs saved in interspace form (coefficients, basis, mask)
        from .interspace import rebuild_interspace_layers

        rebuild_interspace_layers(model, cfg)
    try:
        state = torch.load(wpath, map_location="cpu", weights_only=True)
    except Exception as e:
        raise PruneConfigError(f"cannot load {wpath}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    if not isinstance(state, dict):
        raise PruneConfigError(f"{wpath} does not hold a state_dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()
        raise PruneConfigError(
            f"weights in {wpath} do not fit model {meta['model_spec']!r} rebuilt from {jpath}: "
            f"{' '.join(first[:3])[:500]}"
        ) from None
    return model.eval(), meta
