"""Pruning: patterns, criteria, selection, a registry of pruning methods, save and load.

Top-level API::

    result = prune_model(model, parse_pattern("1x8@0.8"), example_input)
    print(format_layer_table(result.layers))
    save_pruned(result, "pruned/", "resnet50", (1, 3, 224, 224))
    model, meta = load_pruned("pruned/")

Layout (see ``docs/architecture.md, section "Pruning"``):

* :mod:`.pattern` -- the ``KIND@RATE+OPTION`` grammar and :class:`PrunePattern`;
* :mod:`.registry` -- :class:`PruningMethod` / :class:`PatternModifier` and the table of
  methods (``dense``, ``unstructured``, ``1xN``, ``filter``), one file each;
* :mod:`.criteria` -- importance scores (L1 of weights, 1xN blocks, filters);
* :mod:`.selection` -- which units go: layer-wise or global with a per-layer cap;
* :mod:`.graph` / :mod:`.channel_index` -- channel dependency graph and channel re-indexing;
* :mod:`.pruner` (``prune_model``), :mod:`.result` (reports), :mod:`.storage` (save / load).

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

from .block import block_mask
from .context import LoadContext, PruneContext
from .criteria import BLOCK_SIZES, BlockL1, FilterL1, WeightL1
from .filter import filter_keep_indices, filter_mask, filter_prune, sensitivity_scan
from .finetune import finetune
from .graph import DependencyGraph, build_graph
from .masks import apply_masks, attach_masks, detach_masks
from .pattern import Option, PrunePattern, parse_pattern, parse_patterns
from .pruner import prune_model
from .rearrange import rearrange_filters
from .registry import PatternModifier, PruningMethod, all_methods, get_method
from .result import LayerReport, PruneResult, format_layer_table, format_summary
from .selection import MAX_LAYER_RATE, select_pruned
from .storage import FORMAT, load_pruned, masks_from_config, save_pruned
from .unstructured import magnitude_mask

__all__ = [
    "PrunePattern", "parse_pattern", "parse_patterns", "Option", "BLOCK_SIZES", "MAX_LAYER_RATE",
    "LayerReport", "PruneResult", "prune_model", "save_pruned", "load_pruned", "format_layer_table",
    "format_summary", "masks_from_config", "build_graph", "DependencyGraph", "rearrange_filters",
    "filter_keep_indices", "filter_prune", "filter_mask", "sensitivity_scan", "finetune",
    "apply_masks", "attach_masks", "detach_masks", "block_mask", "magnitude_mask",
    "PruningMethod", "PatternModifier", "PruneContext", "LoadContext", "get_method", "all_methods",
    "WeightL1", "BlockL1", "FilterL1", "select_pruned", "FORMAT",
]
