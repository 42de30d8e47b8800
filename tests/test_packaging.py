"""What a user gets from a plain (non-editable) ``pip install .``, and labels read back from
pruned directories."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory) -> Path:
    """The project built as a wheel and unpacked, as a non-editable install lays it out."""
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(out), str(REPO)], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"pip wheel failed:\n{r.stdout}\n{r.stderr}")
    wheels = list(out.glob("tvmprune-*.whl"))
    assert len(wheels) == 1, wheels
    site = out / "site"
    with zipfile.ZipFile(wheels[0]) as z:
        z.extractall(site)
    return site


def test_wheel_ships_the_schedule_records(installed_wheel):
    shipped = installed_wheel / "tvmprune" / "schedules" / "x86-avx512"
    assert (shipped / "database_tuning_record.json").stat().st_size > 0
    assert (shipped / "database_workload.json").stat().st_size > 0


def test_non_editable_install_uses_shipped_schedules(installed_wheel, tmp_path):
    code = (
        "import tvmprune, tvmprune.tune.apply as a\n"
        "msgs = []\n"
        "src = a.schedule_source_for(None, 'x86-avx512', use_shipped=True, log=msgs.append)\n"
        "print(tvmprune.__file__)\n"
        "print(src is not None)\n"
        "print('\\n'.join(msgs))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(installed_wheel))
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(str(installed_wheel)), "the test must import the unpacked wheel, not the checkout"
    assert lines[1] == "True"
    assert "pre-tuned schedules shipped in schedules/x86-avx512/" in r.stdout


def test_pruned_dir_pattern_label_goes_to_meta(tmp_path):
    from tvmprune.model_request import resolve_model
    from tvmprune.prune import parse_pattern, prune_model, save_pruned
    from tvmprune.frontend.model_source import load_model
    import torch

    net = load_model("tiny_cnn")
    shape = (1, 3, 32, 32)
    result = prune_model(net, parse_pattern("1x8@0.8"), torch.zeros(shape))
    save_pruned(result, tmp_path / "p", "tiny_cnn", shape)
    req = resolve_model(pruned=str(tmp_path / "p"))
    assert req.pattern == "1x8@0.8"
