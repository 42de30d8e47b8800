"""The README's Python API section runs as written and gives what PyTorch gives."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_api_runs(tmp_path, monkeypatch):
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(code, "README.md:Python API", "exec"), ns)  # noqa: S102 - our own README
    assert (tmp_path / "pruned" / "weights.safetensors").is_file() and (tmp_path / "out" / "model.so").is_file()
    assert ns["y"].shape == (1, 1000)
    assert any(p.format_label == "1x8" for p in ns["cm"].plans)
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    with torch.no_grad():
        ref = ns["pruned"](torch.from_numpy(x)).numpy()
    out = ns["module"].run(x)
    assert np.abs(out - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
