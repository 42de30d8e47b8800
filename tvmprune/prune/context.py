"""What a pruning method is given besides the model: :class:`PruneContext` (prune) and
:class:`LoadContext` (rebuild a saved pruned model)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

import torch

from ..errors import PruneConfigError
from .selection import MAX_LAYER_RATE

__all__ = ["PruneContext", "LoadContext"]


@dataclass(frozen=True)
class PruneContext:
    """Everything :func:`~tvmprune.prune.prune_model` knows about the request.

    Attributes:
        example_input: NCHW tensor used to trace shapes (zeros are fine).
        data: training batches ``(inputs, targets)`` (e.g. a DataLoader), for methods that
            learn (``needs_data``); None when the caller has none.
        target: the compile target (:class:`tvmprune.target.Target`), for methods that
            optimise for it (``needs_target``); None when not given.
        progress: show progress (tqdm) on long work.
        max_layer_rate: cap of global selection per layer (:mod:`.selection`).
        skip_coupled: filter-like methods leave channel groups coupled by residual adds dense.
        layer_rates: per-layer rates ``{module or group name: rate}`` overriding the pattern's
            rate in layer-wise selection (set by modifiers such as ``+guided``).
    """

    example_input: torch.Tensor
    data: Iterable | None = None
    target: Any = None
    progress: bool = False
    max_layer_rate: float = MAX_LAYER_RATE
    skip_coupled: bool = False
    layer_rates: Mapping[str, float] | None = None

    def with_layer_rates(self, rates: Mapping[str, float]) -> "PruneContext":
        return replace(self, layer_rates=dict(rates))


@dataclass(frozen=True)
class LoadContext:
    """What :func:`~tvmprune.prune.load_pruned` hands a method's ``restore`` hook.

    Attributes:
        source: path of the ``pruning.json`` being read (name it in error messages).
        model_spec: the model spec the dense model was rebuilt from.
        input_shape: the saved NCHW input shape, as stored (validated by :meth:`example_input`).
    """

    source: str
    model_spec: str
    input_shape: Any

    def example_input(self) -> torch.Tensor:
        """Zeros of the saved input shape (for tracing the rebuilt model)."""
        try:
            shape = tuple(int(d) for d in self.input_shape)
        except (TypeError, ValueError):
            raise PruneConfigError(f"{self.source}: bad input_shape {self.input_shape!r}") from None
        return torch.zeros(shape)
