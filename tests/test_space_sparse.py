"""Tuning spaces of the sparse kernels (1xN BSR, 1xN-spatial, CSR direct conv, sparse linear):
sampled points compile and equal PyTorch, the spaces are big, their traces replay with other
decisions, and the default schedule is one point of the space."""

from __future__ import annotations

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from tvmprune.kernels import (  # noqa: E402
    ConvSpec,
    block_direct_sparse_conv2d,
    direct_sparse_conv2d,
    sparse_conv2d_1xn,
    sparse_linear,
)
from tvmprune.target import get_target  # noqa: E402
from tvmprune.tune.space_points import count_points, sample_point  # noqa: E402
from tvmprune.tune.tasks import ReplaySafeSchedule, postprocess  # noqa: E402

from conv_reference import torch_conv  # noqa: E402
from test_kernels import _run, _weight  # noqa: E402

X86 = get_target("x86")
AVX512 = get_target("x86-avx512")

FAMILIES = {
    "1xN": lambda spec, w, b, n, t: sparse_conv2d_1xn(spec, w, b, n, t),
    "1xN-spatial": lambda spec, w, b, n, t: block_direct_sparse_conv2d(spec, w, b, n, t),
    "csr": lambda spec, w, b, n, t: direct_sparse_conv2d(spec, w, b, t),
}

# small shapes: stride 1 / 2, epilogues, Cout not a multiple of N, 1x1 and 3x3
SMALL = [
    (ConvSpec(1, 9, 10, 16, 20, 3, 3, (1, 1), (1, 1, 1, 1), bias=True, activation="relu"), 0.3, 4),
    (ConvSpec(1, 11, 12, 16, 24, 3, 3, (2, 2), (1, 1, 1, 1), residual=True, activation="relu6"), 0.2, 8),
    (ConvSpec(2, 8, 8, 24, 16, 1, 1, bias=True, residual=True), 0.5, 4),
]


def _point_matches_torch(kind: str, spec: ConvSpec, density: float, n: int, seed: int | None) -> None:
    """The default (seed None) or one sampled point, shrunk like the tuner does, vs PyTorch."""
    rng = np.random.default_rng(seed or 0)
    n = 1 if kind == "csr" else n
    w = _weight(spec, density, n, seed or 0)
    b = rng.standard_normal(spec.cout).astype(np.float32) if spec.bias else None
    inst = FAMILIES[kind](spec, w, b, n, X86)
    if seed is None:
        func = inst.scheduled()
    else:
        sch = tvm.s_tir.Schedule(inst.func, seed=seed + 1)
        inst.schedule_space(sch)
        postprocess(sch)
        func = sch.mod["main"].with_attr("global_symbol", inst.name)
    x = rng.standard_normal(spec.in_shape).astype(np.float32)
    res = rng.standard_normal(spec.out_shape).astype(np.float32) if spec.residual else None
    got = _run(inst, func, [x, *inst.consts] + ([res] if res is not None else []), spec.out_shape)
    np.testing.assert_allclose(got, torch_conv(spec, w, b, x, res), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", list(FAMILIES))
@pytest.mark.parametrize("case", range(len(SMALL)))
def test_default_and_sampled_points_match_torch(kind, case):
    spec, density, n = SMALL[case]
    for seed in (None, 3 * case, 3 * case + 1):  # 6 sampled points per family over the 3 shapes
        _point_matches_torch(kind, spec, density, n, seed)


@pytest.mark.parametrize("fmt,n,act", [("bsr", 4, "relu"), ("bsr", 16, None), ("csr", 1, "gelu")])
def test_sparse_linear_points_match_torch(fmt, n, act):
    import torch

    rng = np.random.default_rng(5)
    w = rng.standard_normal((40, 48)).astype(np.float32) * (rng.random((40, 48)) < 0.3)
    b = rng.standard_normal(40).astype(np.float32)
    x = rng.standard_normal((2, 48)).astype(np.float32)
    ref = torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b))
    ref = {"relu": torch.relu, "gelu": torch.nn.functional.gelu, None: lambda v: v}[act](ref).numpy()
    inst = sparse_linear(w, b, fmt, n, 2, act, X86)
    funcs = [inst.scheduled()]
    for seed in range(5):
        sch = tvm.s_tir.Schedule(inst.func, seed=seed + 1)
        inst.schedule_space(sch)
        postprocess(sch)
        funcs.append(sch.mod["main"].with_attr("global_symbol", inst.name))
    for func in funcs:
        got = _run(inst, func, [x, *inst.consts], (2, 40))
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)


BIG_256 = ConvSpec(1, 14, 14, 256, 256, 3, 3, (1, 1), (1, 1, 1, 1))
BIG_CSR = ConvSpec(1, 13, 13, 384, 256, 3, 3, (1, 1), (1, 1, 1, 1))


@pytest.mark.slow  # 1100 samples: 11-17 s each on a quiet machine, 50-80 s on the shared one
@pytest.mark.parametrize("kind,spec,density,n", [
    ("1xN", BIG_256, 0.2, 16), ("1xN", BIG_256, 0.2, 4), ("1xN-spatial", BIG_256, 0.2, 4),
    ("csr", BIG_CSR, 0.1, 1)], ids=["1x16", "1x4", "1x4-spatial", "csr"])
def test_big_conv_spaces_hold_1000_points(kind, spec, density, n):
    inst = FAMILIES[kind](spec, _weight(spec, density, n, 0), None, n, AVX512)
    assert count_points(inst, 1100) >= 1000


def test_sparse_linear_space_size():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((1000, 512)).astype(np.float32) * (rng.random((1000, 512)) < 0.1)
    assert count_points(sparse_linear(w, None, "csr", 1, 1, None, AVX512), 400) >= 200


@pytest.mark.parametrize("kind", list(FAMILIES))
def test_space_traces_replay_with_new_decisions(kind):
    """MetaSchedule replays a design-space trace with fresh decisions: the structure must hold,
    and the replays compile."""
    spec, density, n = SMALL[1]
    n = 1 if kind == "csr" else n
    inst = FAMILIES[kind](spec, _weight(spec, density, n, 0), None, n, AVX512)
    _, first = sample_point(inst, 0)
    sch = tvm.s_tir.Schedule(inst.func, seed=1)
    inst.schedule_space(ReplaySafeSchedule(sch))  # as the tuner's space generator does
    seen = {first}
    for seed in range(2, 12):
        fresh = tvm.s_tir.Schedule(inst.func, seed=seed)
        tvm.s_tir.Trace(sch.trace.insts, {}).apply_to_schedule(fresh, remove_postproc=True)
        trace = fresh.trace
        seen.add(tuple(str(trace.decisions[i]) for i in trace.insts if i in trace.decisions))
        postprocess(fresh)
    tvm.compile(tvm.IRModule({"main": fresh.mod["main"]}), target=AVX512.tvm_target)
    assert len(seen) > 5


@pytest.mark.parametrize("kind", list(FAMILIES))
def test_default_is_a_point_of_the_space(kind):
    """Each default knob lies in the range the space samples it from."""
    spec = BIG_256
    n = 1 if kind == "csr" else 4
    inst = FAMILIES[kind](spec, _weight(spec, 0.2, n, 0), None, n, AVX512)
    sched = inst.schedule_default.__self__
    knobs = sched.default_knobs()
    assert 1 <= knobs["rows"] <= spec.out_h
    split = knobs["split"]
    rows_total = spec.cout // (n if kind != "csr" else 1)
    assert len(split) == 3 and int(np.prod(split)) == rows_total
    assert knobs["unroll"][0] in (0, 16, 64, 512) and knobs["unroll"][1] in (0, 1)


def test_flat_pixel_form_chosen_for_narrow_outputs():
    from tvmprune.kernels.channel_major import prefers_flat_pixels

    assert prefers_flat_pixels(ConvSpec(1, 7, 7, 512, 512, 3, 3, padding=(1, 1, 1, 1)), 16)
    assert prefers_flat_pixels(ConvSpec(1, 7, 7, 576, 160, 1, 1), 16)
    assert not prefers_flat_pixels(ConvSpec(1, 14, 14, 96, 576, 1, 1), 16)  # 208 vs 224: not worth its pass
    assert not prefers_flat_pixels(ConvSpec(1, 14, 14, 256, 256, 3, 3, padding=(1, 1, 1, 1)), 16)  # 14+2 = 16
    assert not prefers_flat_pixels(ConvSpec(1, 14, 14, 64, 64, 3, 3, (2, 2), (1, 1, 1, 1)), 16)  # strided


@pytest.mark.parametrize("spec,density,n", [
    (ConvSpec(1, 7, 7, 16, 16, 3, 3, (1, 1), (1, 1, 1, 1), bias=True, activation="relu"), 0.3, 4),
    (ConvSpec(2, 7, 9, 8, 12, 3, 3, (1, 1), (0, 1, 2, 1), residual=True, bias=True), 0.5, 8),  # Cout % N != 0
    (ConvSpec(1, 5, 5, 24, 32, 1, 1, residual=True, activation="relu6"), 0.2, 4),
])
def test_flat_spatial_default_and_points_match_torch(spec, density, n):
    bias = np.zeros(spec.cout, np.float32) if spec.bias else None
    assert block_direct_sparse_conv2d(spec, _weight(spec, density, n, 0), bias, n, X86).info["flat_pixels"]
    for seed in (None, 0, 1):
        _point_matches_torch("1xN-spatial", spec, density, n, seed)


def test_flat_spatial_rejects_stride():
    spec = ConvSpec(1, 8, 8, 16, 16, 3, 3, (2, 2), (1, 1, 1, 1))
    with pytest.raises(ValueError, match="stride 1"):
        block_direct_sparse_conv2d(spec, _weight(spec, 0.3, 4, 0), None, 4, X86, flat=True)


@pytest.mark.slow
def test_flat_spatial_space_holds_1000_points():
    spec = ConvSpec(1, 7, 7, 512, 512, 3, 3, (1, 1), (1, 1, 1, 1))
    inst = block_direct_sparse_conv2d(spec, _weight(spec, 0.2, 4, 0), None, 4, AVX512)
    assert inst.info["flat_pixels"] and count_points(inst, 1100) >= 1000


def _spatial_where_1xn(info, target):
    """Every 1xN-pruned conv on the 1xN-spatial kernel (flat form where it computes fewer pixels)."""
    from tvmprune.plan.layer import LayerPlan
    from tvmprune.plan.planners import sparse_where_pruned

    if info.op == "conv2d" and info.groups == 1 and info.block_n and 0 < info.density < 1:
        return LayerPlan(info, "1xN-spatial", n=info.block_n, reason="test: 1xN-spatial")
    return sparse_where_pruned(info, target)


@pytest.mark.slow  # ~45 s on the shared machine
def test_resnet18_1x4_at_64_compiles_equal_to_torch_with_flat_spatial():
    import torch

    from test_sparse_lowering import _pruned
    from tvmprune.compiler import compile_model

    shape = (1, 3, 64, 64)
    model = _pruned("resnet18", "1x4@0.5", shape)
    cm = compile_model(model, shape, "x86", planner=_spatial_where_1xn)
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    out = cm.run(x)
    assert np.abs(out - ref).max() <= 1e-3 * np.abs(ref).max()
    kernels = [p.kernel for p in cm.plans if getattr(p, "kernel", None) is not None and p.fmt == "1xN-spatial"]
    assert any(k.info.get("flat_pixels") for k in kernels)


def test_csr_output_block_never_crosses_its_channel_chunk():
    """The CSR conv writes its accumulators per block of ``cblock`` channels from inside a parallel
    task that owns one chunk of the output channels; a block wider than (or not dividing) the chunk
    wrote the neighbouring task's channels from stale accumulators: a race that showed only under
    load. Every sampled point's output block must tile its chunk exactly."""
    spec, density, _ = SMALL[0]
    w = _weight(spec, density, 1, 0)
    inst = FAMILIES["csr"](spec, w, np.zeros(spec.cout, np.float32), 1, X86)
    seen = set()
    for seed in range(40):
        sch = tvm.s_tir.Schedule(inst.func, seed=seed + 1)
        inst.schedule_space(sch)
        tiles = [[int(v) for v in d] for i, d in sch.trace.decisions.items() if i.kind.name == "SamplePerfectTile"]
        split = next(t for t in tiles if len(t) == 3)  # output channels: [parallel chunks, outer, inner]
        blocks = [t for t in tiles if len(t) == 2]  # inner -> [blocks, cblock]
        assert len(blocks) == 1 and blocks[0][0] * blocks[0][1] == split[2], (seed, split, blocks)
        seen.add((split[2], blocks[0][1]))
    assert len(seen) >= 3  # the check saw several different chunk / block combinations
