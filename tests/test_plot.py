"""compare.png: one colour and marker per pattern in both panels."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=True)
import matplotlib.pyplot as plt  # noqa: E402

from tvmprune.plot import pattern_styles, plot_compare  # noqa: E402


def _row(pattern: str, kind: str, rate: float, ms: float, acc: float) -> dict:
    return {"pattern": pattern, "kind": kind, "rate": rate, "latency_median_ms": ms, "accuracy": acc,
            "flops_effective": 1e6 * (1 - rate), "flops_dense": 1e6, "speedup": 1.0 / max(1 - rate, 0.1)}


def test_same_pattern_same_colour_and_marker_in_both_panels(tmp_path, monkeypatch):
    rows = [_row("dense", "dense", 0.0, 10.0, 0.99), _row("unstructured@0.8", "unstructured", 0.8, 8.0, 0.98),
            _row("unstructured@0.9", "unstructured", 0.9, 7.0, 0.97), _row("1x4@0.8", "1xN", 0.8, 5.0, 0.96),
            _row("filter@0.5", "filter", 0.5, 4.0, 0.95)]
    figs = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figs.append(fig))
    plot_compare({"results": rows, "model": "m", "input_shape": [1, 3, 8, 8], "target": {"name": "x86"}},
                 tmp_path / "c.png")
    ax1, ax2 = figs[0].axes
    line_style = {ln.get_label(): (matplotlib.colors.to_hex(ln.get_color()), ln.get_marker())
                  for ln in ax1.get_lines() if not ln.get_label().startswith("_")}
    for coll in ax2.collections:
        pattern = coll.get_label()
        family = pattern.split("@")[0]
        if family not in line_style:
            continue
        colour = matplotlib.colors.to_hex(coll.get_facecolor()[0])
        assert colour == line_style[family][0], pattern
    styles = pattern_styles(rows)
    assert styles["unstructured@0.8"] == styles["unstructured@0.9"]
    assert len({(s["color"], s["marker"]) for p, s in styles.items() if p != "unstructured@0.9"}) == 4
