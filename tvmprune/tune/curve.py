"""The best-so-far curve of a tuning run: ``curve.json`` and ``curve.png`` in the log directory.

``curve.json``::

    {"tasks": {key: {"desc": ..., "weight": w, "default_ms": d,
                      "points": [[run_trial, task_trial, best_ms], ...]}},
     "model": [[run_trial, kernels_ms], ...],   # sum over tasks of weight x (best so far, else default)
     "default_ms": kernels_ms_with_default_schedules}

``run_trial`` counts the candidates measured in this run (all tasks), ``task_trial`` the task's
records including those of earlier runs. The model curve is the kernels' part of one inference
as the measurements during tuning saw it (not the side-by-side re-timing).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CURVE_JSON = "curve.json"
CURVE_PNG = "curve.png"


@dataclass
class BestCurve:
    """Accumulates the best-so-far points of a run."""

    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    model: list[list[float]] = field(default_factory=list)
    run_trial: int = 0
    _best: dict[str, float] = field(default_factory=dict)  # seconds

    def add_task(self, key: str, desc: str, weight: int, default_s: float | None, best_s: float) -> None:
        self.tasks[key] = {"desc": desc, "weight": weight,
                           "default_ms": None if default_s is None else default_s * 1e3, "points": []}
        if math.isfinite(best_s):
            self._best[key] = best_s

    def _kernels_ms(self) -> float:
        tot = 0.0
        for key, t in self.tasks.items():
            d = (t["default_ms"] or 0.0) / 1e3
            b = self._best.get(key, math.inf)
            tot += t["weight"] * min(d if d else b, b if math.isfinite(b) else d)
        return tot * 1e3

    @property
    def default_ms(self) -> float:
        return sum(t["weight"] * (t["default_ms"] or 0.0) for t in self.tasks.values())

    def batch(self, key: str, n_back: int, task_trial: int, best_s: float) -> None:
        """``n_back`` candidates of task ``key`` came back; its best is now ``best_s``."""
        self.run_trial += n_back
        if math.isfinite(best_s):
            self._best[key] = min(best_s, self._best.get(key, math.inf))
            self.tasks[key]["points"].append([self.run_trial, task_trial, self._best[key] * 1e3])
        self.model.append([self.run_trial, self._kernels_ms()])

    def to_json(self) -> dict[str, Any]:
        return {"tasks": self.tasks, "model": self.model, "default_ms": self.default_ms}

    def save(self, log_dir: "str | os.PathLike[str]") -> Path:
        p = Path(log_dir) / CURVE_JSON
        p.write_text(json.dumps(self.to_json(), indent=1), encoding="utf-8")
        return p


def plot_curve(curve: dict[str, Any], out: "str | os.PathLike[str]", title: str = "") -> Path:
    """Two panels: per task speedup over its default schedule vs its trials; the kernels' ms per
    inference vs the run's trials (default schedules dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11.0, 4.5), dpi=100)
    ranked = sorted(curve["tasks"].values(), key=lambda t: -(t["weight"] * (t["default_ms"] or 0.0)))
    for t in ranked[:12]:  # the most expensive tasks: more lines are unreadable
        pts = t["points"]
        if not pts or not t["default_ms"]:
            continue
        ax1.step([p[1] for p in pts], [t["default_ms"] / p[2] for p in pts], where="post",
                 label=f"{t['desc'][:28]} x{t['weight']}")
    ax1.axhline(1.0, color="gray", linestyle="--")
    ax1.set_xlabel("task trials")
    ax1.set_ylabel("best so far: speedup over default")
    if ax1.lines[:-1]:
        ax1.legend(fontsize=6)
    model = curve["model"]
    if model:
        ax2.step([p[0] for p in model], [p[1] for p in model], where="post", label="best so far")
    if curve.get("default_ms"):
        ax2.axhline(curve["default_ms"], color="gray", linestyle="--", label="default schedules")
    ax2.set_xlabel("trials in this run")
    ax2.set_ylabel("kernels, ms per inference")
    ax2.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    p = Path(out)
    fig.savefig(p)
    plt.close(fig)
    return p
