"""Guided Sparsity Learning (Park et al., ICLR 2017): the target's performance model decides where to prune.

* :mod:`.bounds`: per-layer breakeven / saturation densities from the perf model.
* :mod:`.planner`: one-shot per-layer densities spending the pattern's pruning budget.
* :mod:`.prune`: the ``+guided`` modifier of ``unstructured`` / ``1xN`` and :func:`guided_prune`.
* :mod:`.training`: GESL / GDNS with GSL rules 3 and 4 (:func:`guided_finetune`).
"""

from .bounds import LayerBounds, LayerGeometry, layer_bounds, layer_geometries
from .planner import GuidedLayer, GuidedPlan, format_plan_table, plan_guided
from .prune import GuidedModifier, GuidedPruneResult, guided_finetune, guided_prune, plan_from_config
from .training import GuidedTraining, TrainingReport, gesl_threshold, guided_train

__all__ = ["LayerBounds", "LayerGeometry", "layer_bounds", "layer_geometries", "GuidedLayer", "GuidedPlan",
           "format_plan_table", "plan_guided", "GuidedPruneResult", "GuidedModifier", "guided_prune",
           "plan_from_config", "guided_finetune", "GuidedTraining", "TrainingReport", "gesl_threshold", "guided_train"]
