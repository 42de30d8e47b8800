"""The evolutionary search's mutators: which decisions of a kernel's trace it may change.

MetaSchedule's stock mutators each recognise their own instructions: ``MutateTileSize`` the
``SamplePerfectTile`` decisions, ``MutateComputeLocation`` the ``SampleComputeLocation`` ones,
and ``MutateUnroll`` only a ``SampleCategorical`` whose value feeds an ``Annotate`` with the key
``meta_schedule.unroll_explicit`` / ``meta_schedule.unroll_implicit``. Our kernel spaces annotate
``pragma_auto_unroll_max_step`` / ``pragma_unroll_explicit`` and draw many other knobs as
categoricals (pixel tile sizes :func:`tvmprune.kernels.sparse_space.factor`, channel-tile rows /
pixels / parallel chunk, unroll depth), so without :class:`MutateCategorical` none of those is
ever mutated: the search can only re-draw them at random, never refine a good point by changing
one of them.

:func:`mutator_probs` gives each mutator a probability proportional to the number of decisions
it can change in the kernel's trace, so every knob is equally likely to be mutated.
"""

from __future__ import annotations

import random
from typing import Any

#: annotation keys whose sampled value ``MutateUnroll`` mutates (TVM's ``attr::meta_schedule_unroll_*``)
MS_UNROLL_KEYS = ("meta_schedule.unroll_explicit", "meta_schedule.unroll_implicit")

#: probability that a categorical moves to an adjacent candidate (a local step) instead of any other one
NEIGHBOUR_PROB = 0.5


def _unroll_outputs(trace: Any) -> list[Any]:
    """The random variables annotated under :data:`MS_UNROLL_KEYS` (what ``MutateUnroll`` owns)."""
    return [inst.inputs[1] for inst in trace.insts
            if inst.kind.name == "Annotate" and str(inst.attrs[0]) in MS_UNROLL_KEYS and len(inst.inputs) == 2]


def _owned(inst: Any, owned: list[Any]) -> bool:
    """``inst`` outputs one of ``owned`` (compared by identity: ``==`` on a PrimExpr builds an expression)."""
    return any(o.same_as(v) for o in inst.outputs for v in owned)


def categorical_decisions(trace: Any) -> list[tuple[Any, int, list[float]]]:
    """The ``SampleCategorical`` decisions of ``trace`` that :class:`MutateCategorical` may change.

    Returns ``(instruction, decision index, candidate probabilities)`` in trace order, for every
    categorical with at least two candidates that ``MutateUnroll`` does not own.
    """
    owned = _unroll_outputs(trace)
    found = []
    for inst in trace.insts:
        if inst.kind.name != "SampleCategorical" or inst not in trace.decisions:
            continue
        if _owned(inst, owned):
            continue
        probs = [float(p) for p in inst.attrs[1]]
        if len(probs) >= 2:
            found.append((inst, int(trace.decisions[inst]), probs))
    return found


def _new_index(current: int, probs: list[float], rng: random.Random) -> int:
    """Another candidate index than ``current``: an adjacent one with :data:`NEIGHBOUR_PROB`,
    else one of the others drawn by their sampling probabilities."""
    others = [i for i in range(len(probs)) if i != current]
    if rng.random() < NEIGHBOUR_PROB:
        return rng.choice([i for i in (current - 1, current + 1) if 0 <= i < len(probs)])
    weights = [probs[i] for i in others]
    if sum(weights) <= 0:
        return rng.choice(others)
    return rng.choices(others, weights=weights)[0]


def mutate_categorical(trace: Any, seed: int) -> Any | None:
    """``trace`` with one categorical decision (chosen uniformly) changed to another candidate.

    Postprocessing instructions are removed (MetaSchedule replays the postprocessors). None when
    the trace has no such decision.
    """
    found = categorical_decisions(trace)
    if not found:
        return None
    rng = random.Random(seed)
    inst, current, probs = found[rng.randrange(len(found))]
    return trace.with_decision(inst, _new_index(current, probs, rng), remove_postproc=True)


def make_mutate_categorical() -> Any:
    """A new :class:`MutateCategorical` (a MetaSchedule ``PyMutator``)."""
    return _mutator_class()()


_CLASS: list[Any] = []


def _mutator_class() -> Any:
    """The ``PyMutator`` subclass, made on first use (TVM is imported lazily)."""
    if _CLASS:
        return _CLASS[0]
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.mutator import PyMutator

    @derived_object
    class MutateCategorical(PyMutator):
        """Changes one ``SampleCategorical`` decision of a trace (:func:`mutate_categorical`).

        MetaSchedule passes its thread's random state by value; it seeds the choice (the state
        moves on between calls: the search draws the trace and the mutator from it first)."""

        def _initialize_with_tune_context(self, context: Any) -> None:
            pass

        def apply(self, trace: Any, rand_state: int) -> Any:
            return mutate_categorical(trace, int(rand_state))

        def clone(self) -> Any:
            return MutateCategorical()

    _CLASS.append(MutateCategorical)
    return MutateCategorical


def decision_counts(trace: Any) -> dict[str, int]:
    """How many decisions of ``trace`` each mutator can change: keys ``tile``, ``categorical``,
    ``compute_location``, ``ms_unroll``."""
    kinds = [inst.kind.name for inst in trace.insts if inst in trace.decisions]
    owned = _unroll_outputs(trace)
    ms_unroll = sum(1 for inst in trace.insts if inst.kind.name == "SampleCategorical"
                    and _owned(inst, owned))
    return {"tile": kinds.count("SamplePerfectTile"), "categorical": len(categorical_decisions(trace)),
            "compute_location": kinds.count("SampleComputeLocation"), "ms_unroll": ms_unroll}


def mutator_probs(trace: Any | None) -> dict[Any, float]:
    """Mutators for a kernel whose sampled design-space trace is ``trace``, each with a probability
    proportional to the decisions it can change (:func:`decision_counts`); mutators with nothing
    to change are left out. ``trace`` None (no space sampled): tile sizes and categoricals alike.
    """
    from tvm.s_tir import meta_schedule as ms

    counts = decision_counts(trace) if trace is not None else {"tile": 1, "categorical": 1}
    makers = {"tile": ms.mutator.MutateTileSize, "categorical": make_mutate_categorical,
              "compute_location": ms.mutator.MutateComputeLocation, "ms_unroll": ms.mutator.MutateUnroll}
    total = sum(counts.values())
    if total == 0:  # nothing sampled: a one-point space; MetaSchedule still wants a mutator
        return {ms.mutator.MutateTileSize(): 1.0}
    return {makers[k](): n / total for k, n in counts.items() if n}
