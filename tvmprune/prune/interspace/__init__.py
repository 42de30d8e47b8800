"""Interspace pruning (Wimmer et al., CVPR 2022): KxK filters as sparse combinations of a learned basis.

Entry point: :func:`interspace_prune`; layer: :class:`InterspaceConv2d`; compile-side helper:
:func:`reconstruct_dense` (spatially dense filters ``w = c * B``).
"""

from .convert import (has_interspace_layers, interspace_layers, interspace_targets, rebuild_interspace_layers,
                      reconstruct_dense, to_interspace)
from .module import InterspaceConv2d, spatial_basis
from .prune import InterspacePruneResult, coefficient_scores, interspace_label, interspace_prune

__all__ = ["InterspaceConv2d", "spatial_basis", "interspace_prune", "InterspacePruneResult", "interspace_label",
           "coefficient_scores", "interspace_targets", "to_interspace", "reconstruct_dense", "interspace_layers",
           "rebuild_interspace_layers", "has_interspace_layers"]
