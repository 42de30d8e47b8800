"""The evolutionary search's mutators (tvmprune/tune/mutators.py): MutateCategorical changes exactly
one categorical decision of a real kernel trace, the mutated trace replays to a schedule that equals
PyTorch, and the tuner's space generator carries it (MutateUnroll, which never matches our
``pragma_*`` unroll annotations, is left out unless a trace has its ``meta_schedule.unroll_*`` keys)."""

from __future__ import annotations

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from tvmprune.kernels import ConvSpec, block_direct_sparse_conv2d  # noqa: E402
from tvmprune.kernels.depthwise_conv2d import depthwise_conv2d  # noqa: E402
from tvmprune.kernels.dense_conv2d import dense_conv2d  # noqa: E402
from tvmprune.target import get_target  # noqa: E402
from tvmprune.tune.mutators import (  # noqa: E402
    categorical_decisions,
    decision_counts,
    make_mutate_categorical,
    mutate_categorical,
    mutator_probs,
)
from tvmprune.tune.tasks import design_trace, postprocess, space_generator  # noqa: E402

from conv_reference import torch_conv  # noqa: E402
from test_kernels import _run, _weight  # noqa: E402

X86 = get_target("x86")
SPEC = ConvSpec(1, 9, 10, 16, 20, 3, 3, (1, 1), (1, 1, 1, 1), bias=True, activation="relu")


def _spatial_kernel():
    rng = np.random.default_rng(1)
    w = _weight(SPEC, 0.3, 4, 1)
    b = rng.standard_normal(SPEC.cout).astype(np.float32)
    return block_direct_sparse_conv2d(SPEC, w, b, 4, X86), w, b


def _decisions(trace):
    return [(inst.kind.name, str(trace.decisions[inst])) for inst in trace.insts if inst in trace.decisions]


def _one_categorical_changed(old, new) -> int:
    """Index (among the decisions) of the single changed decision; asserts it is a categorical."""
    a, b = _decisions(old), _decisions(new)
    assert [k for k, _ in a] == [k for k, _ in b]
    changed = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    assert len(changed) == 1, (a, b)
    assert a[changed[0]][0] == "SampleCategorical"
    return changed[0]


def _replay(kernel, trace):
    sch = tvm.s_tir.Schedule(kernel.func)
    trace.apply_to_schedule(sch, remove_postproc=True)
    postprocess(sch)
    return sch.mod["main"].with_attr("global_symbol", kernel.name)


def test_mutated_spatial_trace_differs_in_one_categorical_and_matches_torch():
    kernel, w, b = _spatial_kernel()
    trace = design_trace(kernel, seed=3)
    found = categorical_decisions(trace)
    assert len(found) >= 4  # pixel tile rows / cols and two unroll knobs at least
    rng = np.random.default_rng(2)
    x = rng.standard_normal(SPEC.in_shape).astype(np.float32)
    ref = torch_conv(SPEC, w, b, x, None)
    changed = set()
    for seed in range(4):
        new = mutate_categorical(trace, seed)
        i = _one_categorical_changed(trace, new)
        changed.add(i)
        inst = [t for t in new.insts if t in new.decisions][i]
        assert 0 <= int(new.decisions[inst]) < len(inst.attrs[0])
        if seed < 2:  # compile two of them
            got = _run(kernel, _replay(kernel, new), [x, *kernel.consts], SPEC.out_shape)
            np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
    assert len(changed) >= 2  # not always the same knob


def test_pymutator_object_mutates_through_metaschedule():
    kernel, _, _ = _spatial_kernel()
    trace = design_trace(kernel, seed=5)
    mutator = make_mutate_categorical()
    from tvm.s_tir.meta_schedule.mutator import Mutator

    assert isinstance(mutator, Mutator)
    new = mutator.apply(trace)  # through the FFI, as the evolutionary search calls it
    _one_categorical_changed(trace, new)
    assert isinstance(mutator.clone(), Mutator)


def test_dense_stem_mutates_its_unroll_depth():
    stem = ConvSpec(1, 32, 32, 3, 16, 7, 7, (2, 2), (3, 3, 3, 3), bias=True, activation="relu")
    rng = np.random.default_rng(0)
    kernel = dense_conv2d(stem, rng.standard_normal(stem.weight_shape).astype(np.float32),
                          np.zeros(16, np.float32), X86)
    trace = design_trace(kernel)
    (inst, current, probs), = categorical_decisions(trace)  # only the unroll depth is categorical
    assert [int(c) for c in inst.attrs[0]] == [0, 16, 64, 512]
    new = mutate_categorical(trace, 1)
    _one_categorical_changed(trace, new)
    assert int(new.decisions[[t for t in new.insts if t.kind.name == "SampleCategorical"][0]]) != current


def test_tuner_space_generator_carries_the_mutator():
    kernel, _, _ = _spatial_kernel()
    probs = {m: float(p) for m, p in space_generator(kernel).mutator_probs.items()}
    trace = design_trace(kernel, seed=2)
    counts = decision_counts(trace)
    # through the FFI map a Python mutator is a _PyMutator: tell it by what it does
    (ours, p_ours), = [(m, p) for m, p in probs.items() if type(m).__name__ == "_PyMutator"]
    assert {type(m).__name__ for m in probs} == {"_PyMutator", "MutateTileSize"}
    _one_categorical_changed(trace, ours.apply(trace))
    assert p_ours == pytest.approx(counts["categorical"] / (counts["categorical"] + counts["tile"]))
    assert sum(probs.values()) == pytest.approx(1.0)


def test_depthwise_space_also_gets_compute_location_mutator():
    spec = ConvSpec(1, 10, 10, 16, 16, 3, 3, (1, 1), (1, 1, 1, 1), groups=16, bias=True)
    rng = np.random.default_rng(0)
    kernel = depthwise_conv2d(spec, rng.standard_normal(spec.weight_shape).astype(np.float32),
                              np.zeros(16, np.float32), X86)
    names = {type(m).__name__ for m in mutator_probs(design_trace(kernel))}
    assert {"MutateCategorical", "MutateTileSize", "MutateComputeLocation"} <= names


def test_metaschedule_unroll_categoricals_are_left_to_mutate_unroll():
    from tvm import te

    a = te.placeholder((64,), name="A")
    c = te.compute((64,), lambda i: a[i] * 2.0, name="C")
    sch = tvm.s_tir.Schedule(te.create_prim_func([a, c]), seed=1)
    (loop,) = sch.get_loops(sch.get_sblock("C"))
    step = sch.sample_categorical([0, 16, 64], [1 / 3] * 3)
    sch.annotate(sch.get_sblock("C"), "meta_schedule.unroll_explicit", step)
    other = sch.sample_categorical([1, 2, 4], [1 / 3] * 3)
    sch.split(loop, factors=[None, other])
    trace = sch.trace
    assert [int(d) for _, d, _ in categorical_decisions(trace)] == [int(trace.decisions[trace.insts[-2]])]
    assert decision_counts(trace)["ms_unroll"] == 1
    names = {type(m).__name__ for m in mutator_probs(trace)}
    assert names == {"MutateCategorical", "MutateUnroll"}
    for seed in range(3):  # the unroll decision is never touched
        new = mutate_categorical(trace, seed)
        assert _decisions(new)[0] == _decisions(trace)[0]
