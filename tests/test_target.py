import json

import pytest

from tvmprune.errors import UnknownTargetError
from tvmprune.target import TARGET_NAMES, get_target, list_targets


def test_named_targets_have_compilers_and_lanes():
    names = [t.name for t in list_targets()]
    assert names == list(TARGET_NAMES)
    assert get_target("x86-avx512").vector_lanes == 16
    assert get_target("x86-avx2").vector_lanes == 8
    arm = get_target("arm_cpu")
    assert arm.cross_compiler == "arm-linux-gnueabihf-gcc"
    assert arm.vector_lanes == 4
    assert arm.target_dict["mtriple"].startswith("armv7")
    assert "arm_cpu" in list(arm.tvm_target.keys)
    a64 = get_target("aarch64")
    assert a64.cross_compiler == "aarch64-linux-gnu-gcc"
    assert a64.target_dict["mtriple"].startswith("aarch64")


def test_host_target_detects_simd():
    flags = open("/proc/cpuinfo").read()
    t = get_target("x86")
    if "avx512f" in flags:
        assert t.vector_lanes == 16 and t.target_dict["mcpu"] == "skylake-avx512"
    elif "avx2" in flags:
        assert t.vector_lanes == 8
    assert t.runs_on_host


def test_unknown_target_lists_known_ones():
    with pytest.raises(UnknownTargetError) as e:
        get_target("sparc")
    for n in TARGET_NAMES:
        assert n in str(e.value)


def test_cli_string_target_is_explained():
    with pytest.raises(UnknownTargetError, match="JSON"):
        get_target("llvm -mcpu=cortex-a7")


def test_raw_json_target():
    t = get_target(json.dumps({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a53"}))
    assert t.arch == "aarch64" and t.cross_compiler == "aarch64-linux-gnu-gcc"
    with pytest.raises(UnknownTargetError, match="not supported"):
        get_target('{"kind": "cuda"}')
    with pytest.raises(UnknownTargetError, match="does not parse"):
        get_target("{kind: llvm")


def test_avx512_code_runs_on_host_only_with_avx512f(monkeypatch):
    import tvmprune.target as tg

    t = tg.get_target("x86-avx512")
    monkeypatch.setattr(tg, "host_arch", lambda: "x86_64")
    monkeypatch.setattr(tg, "_cpu_flags", lambda: {"avx", "avx2", "fma"})
    assert not t.runs_on_host
    assert tg.get_target("x86-avx2").runs_on_host
    monkeypatch.setattr(tg, "_cpu_flags", lambda: {"avx2", "avx512f"})
    assert t.runs_on_host


def test_neon_register_file_reads_the_target():
    """NEON defaults: 4 fp32 lanes on both ARM targets; armv7 has 16 q registers and LLVM's armv7
    code does not fuse multiply-add; aarch64 has 32 vector registers and fuses (fmla)."""
    from tvmprune.kernels.target_params import has_fused_fma, n_vector_registers

    arm, a64 = get_target("arm_cpu"), get_target("aarch64")
    assert (arm.vector_lanes, n_vector_registers(arm), has_fused_fma(arm)) == (4, 16, False)
    assert (a64.vector_lanes, n_vector_registers(a64), has_fused_fma(a64)) == (4, 32, True)
    raw = get_target({"kind": "llvm", "mtriple": "armv7l-linux-gnueabihf", "mattr": ["+neon"]})
    assert (n_vector_registers(raw), has_fused_fma(raw)) == (16, False)
    assert has_fused_fma(get_target("x86-avx512")) and n_vector_registers(get_target("x86-avx512")) == 32
