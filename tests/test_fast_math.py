"""The vectorising exp / sigmoid / erf / tanh forms against PyTorch (float64 reference), and
the SiLU / GELU epilogues compiled without one libm call per lane."""

import numpy as np
import pytest
import torch

tvm = pytest.importorskip("tvm")

from tvm import te  # noqa: E402

from tvmprune.kernels import fast_math  # noqa: E402
from tvmprune.kernels.base import apply_activation  # noqa: E402
from tvmprune.target import get_target  # noqa: E402

X86 = get_target("x86")
N = 4096


def _compiled(f):
    a = te.placeholder((N,), name="A")
    b = te.compute((N,), lambda i: f(a[i]), name="B")
    sch = tvm.s_tir.Schedule(te.create_prim_func([a, b]))
    (i,) = sch.get_loops(sch.get_sblock("B"))
    _, inner = sch.split(i, [None, X86.vector_lanes])
    sch.vectorize(inner)
    return tvm.compile(sch.mod, target=X86.tvm_target)


def _run(f, x: np.ndarray) -> np.ndarray:
    lib = _compiled(f)
    dev = tvm.cpu()
    out = tvm.runtime.tensor(np.zeros(N, "float32"), dev)
    lib["main"](tvm.runtime.tensor(x, dev), out)
    return out.numpy().astype(np.float64)


def _inputs(scale: float) -> np.ndarray:
    x = (np.random.default_rng(0).standard_normal(N) * scale).astype("float32")
    x[:6] = [0.0, -0.0, 1e-8, -1e-8, 30.0, -30.0]
    return x


def test_exp_relative_error_on_its_range():
    x = np.linspace(-80, 80, N).astype("float32")
    got = _run(fast_math.exp, x)
    ref = np.exp(x.astype(np.float64))
    assert np.max(np.abs(got - ref) / ref) < 5e-7


def test_exp_clamps_instead_of_overflowing():
    x = np.full(N, 200.0, "float32")
    x[: N // 2] = -200.0
    got = _run(fast_math.exp, x)
    assert np.all(np.isfinite(got)) and np.all(got[: N // 2] < 1e-37) and np.all(got[N // 2:] > 1e38)


@pytest.mark.parametrize("name,ours,ref,tol", [
    ("sigmoid", fast_math.sigmoid, torch.sigmoid, 2e-7),
    ("erf", fast_math.erf, torch.erf, 5e-7),
    ("tanh", fast_math.tanh, torch.tanh, 3e-7),
])
def test_function_absolute_error(name, ours, ref, tol):
    x = _inputs(4.0)
    got = _run(ours, x)
    want = ref(torch.from_numpy(x).double()).numpy()
    assert np.max(np.abs(got - want)) < tol, name


@pytest.mark.parametrize("act,ref", [
    ("silu", torch.nn.functional.silu),
    ("gelu", torch.nn.functional.gelu),
    ("gelu_tanh", lambda t: torch.nn.functional.gelu(t, approximate="tanh")),
    ("sigmoid", torch.sigmoid),
])
def test_epilogue_activations_equal_torch_and_call_no_libm(act, ref):
    x = _inputs(5.0)
    got = _run(lambda v: apply_activation(v, act), x)
    want = ref(torch.from_numpy(x).double()).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    asm = _compiled(lambda v: apply_activation(v, act)).mod.inspect_source("asm")
    assert not any(f in asm for f in ("expf", "erff", "tanhf")), f"{act} still calls libm"
