"""scripts/bench_sparse_1x1.py runs end to end on a small 1x1 layer and reports what the issue #13
diagnosis rests on: the 1x4 BSR kernel's FMAs are 4-lane (xmm), the dense and 1x4-spatial ones
full-width (zmm on AVX-512), and every kernel's time next to dense's."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_sparse_1x1.py"
sys.path.insert(0, str(SCRIPT.parent))


def test_parse_layer_and_fixed_cost_weight():
    from bench_kernels import make_spec
    from bench_sparse_1x1 import one_block_per_row, parse_layer

    from tvmprune.kernels.formats import conv_weight_to_bsr

    assert parse_layer("24x144@56") == (24, 144, 56)
    spec = make_spec(24, 144, 8, 1, 1)
    bsr = conv_weight_to_bsr(one_block_per_row(spec), 4)
    assert bsr.n_block_rows == 36 and bsr.nnz_blocks == 36  # one block per block row


@pytest.mark.slow
def test_bench_sparse_1x1_reports_times_and_fma_widths():
    from tvmprune.target import get_target

    env = dict(os.environ, TVM_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--layers", "16x32@8", "--densities", "0.5", "--ns", "4",
                           "--rounds", "1", "--asm"], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("16->32@8:"))
    for kernel in ("dense", "fixed 1x4-sp", "1x4@0.5", "1x4-spatial@0.5", "copy of 1xN-sp"):
        assert re.search(re.escape(kernel) + r" \d+us", line), (kernel, line)
    widths = next(l for l in proc.stdout.splitlines() if "FMAs by register width" in l)
    if get_target("x86").vector_lanes == 16:  # AVX-512 host
        assert "dense: {'z'" in widths and "1x4@0.5: {'x'" in widths and "1x4-spatial@0.5: {'z'" in widths, widths
