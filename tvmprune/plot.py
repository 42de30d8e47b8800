"""The figure of ``tvmprune compare`` (matplotlib, Agg backend: no display needed).

Two panels side by side, ``FIGSIZE`` inches at ``DPI`` (1100 x 450 pixels):

* left: latency (ms) vs pruning rate, one line per pattern family (``unstructured``,
  ``1x4``, ``1x4+norearrange``, ``filter`` ...), the dense latency as a dashed line;
  when latency was not measured (a board without a tracker), effective MFLOPs instead;
* right: top-1 accuracy vs latency, one labelled point per pattern, when accuracy is
  known; otherwise speedup vs the fraction of FLOPs kept (the ideal speedup line dashed).
"""

from __future__ import annotations

import os
from typing import Any

FIGSIZE = (11.0, 4.5)
DPI = 100
_MARKERS = "os^vD<>px*h"


def _family(r: dict[str, Any]) -> str:
    p = str(r["pattern"])
    base = p.split("@")[0]
    opts = "".join("+" + o for o in p.split("+")[1:])
    return base + opts


def pattern_styles(rows: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """One colour and marker per pattern, the same in both panels: patterns of one family
    (``unstructured@0.8``, ``unstructured@0.9``) share their family's colour and marker,
    the dense row is grey."""
    fams = sorted({_family(r) for r in rows if r["kind"] != "dense"})
    colors = [f"C{k}" for k in range(10)]
    fam_style = {f: {"color": colors[j % len(colors)], "marker": _MARKERS[j % len(_MARKERS)]}
                 for j, f in enumerate(fams)}
    return {str(r["pattern"]): ({"color": "gray", "marker": "s"} if r["kind"] == "dense" else fam_style[_family(r)])
            for r in rows}


def _latency_panel(ax: Any, rows: list[dict[str, Any]], styles: dict[str, dict[str, str]], measured: bool) -> None:
    """Left panel: latency (or effective MFLOPs when not measured) vs pruning rate, one line a family."""

    def yval(r: dict[str, Any]) -> float | None:
        return r.get("latency_median_ms") if measured else r["flops_effective"] / 1e6

    fams: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["kind"] != "dense":
            fams.setdefault(_family(r), []).append(r)
    dense = next((r for r in rows if r["kind"] == "dense"), None)
    for fam, rs in sorted(fams.items()):
        rs = sorted(rs, key=lambda r: r["rate"])
        pts = [(r["rate"], yval(r)) for r in rs if yval(r) is not None]
        if pts and dense is not None and yval(dense) is not None:  # each family starts at dense (rate 0)
            pts.insert(0, (0.0, yval(dense)))
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=fam, **styles[str(rs[0]["pattern"])])
    if dense is not None and yval(dense) is not None:
        ax.axhline(yval(dense), color="gray", linestyle="--", label="dense")
    ax.set_xlabel("pruning rate")
    ax.set_ylabel("latency (ms, median)" if measured else "effective MFLOPs (latency not measured)")
    ax.set_title("latency vs pruning rate" if measured else "work vs pruning rate")
    ax.set_xlim(-0.02, 1.0)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def _accuracy_vs_latency_panel(ax: Any, rows: list[dict[str, Any]], styles: dict[str, dict[str, str]]) -> None:
    for r in rows:
        if r.get("accuracy") is None or r.get("latency_median_ms") is None:
            continue
        ax.scatter(r["latency_median_ms"], r["accuracy"], s=50, **styles[str(r["pattern"])], label=r["pattern"])
        ax.annotate(r["pattern"], (r["latency_median_ms"], r["accuracy"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("latency (ms, median)")
    ax.set_ylabel("top-1 accuracy")
    ax.set_title("accuracy vs latency")
    ax.legend(fontsize=7)


def _accuracy_vs_work_panel(ax: Any, rows: list[dict[str, Any]], styles: dict[str, dict[str, str]]) -> None:
    for r in rows:
        if r.get("accuracy") is None:
            continue
        ax.scatter(r["flops_effective"] / 1e6, r["accuracy"], s=50, **styles[str(r["pattern"])], label=r["pattern"])
    ax.set_xlabel("effective MFLOPs")
    ax.set_ylabel("top-1 accuracy")
    ax.set_title("accuracy vs work (latency not measured)")
    ax.legend(fontsize=7)


def _speedup_panel(ax: Any, rows: list[dict[str, Any]], styles: dict[str, dict[str, str]]) -> None:
    """Speedup vs the fraction of dense FLOPs kept, with the ideal ``1 / kept`` line."""
    xs, ys = [], []
    for r in rows:
        kept = r["flops_effective"] / max(r["flops_dense"], 1)
        sp = r.get("speedup")
        if sp is None:
            continue
        xs.append(kept)
        ys.append(sp)
        ax.scatter(kept, sp, s=50, **styles[str(r["pattern"])], label=r["pattern"])
    if xs:
        lo = max(min(xs), 0.02)
        grid = [lo + (1 - lo) * k / 50 for k in range(51)]
        ax.plot(grid, [1 / g for g in grid], color="gray", linestyle="--", linewidth=1, label="ideal (1/FLOPs)")
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no latency measured", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("fraction of dense FLOPs kept")
    ax.set_ylabel("speedup over dense")
    ax.set_title("speedup vs FLOPs kept (no accuracy: no data set)")
    if xs:
        ax.legend(fontsize=7)


def plot_compare(report: dict[str, Any], path: "str | os.PathLike[str]") -> str:
    """Draw ``report`` (the ``compare.json`` dict) into ``path`` (PNG); returns the path."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rows = report["results"]
    measured = any(r.get("latency_median_ms") is not None for r in rows)
    has_acc = any(r.get("accuracy") is not None for r in rows)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=FIGSIZE, dpi=DPI)
    title = f"{report.get('model')} {'x'.join(map(str, report.get('input_shape', [])))} on " \
            f"{(report.get('target') or {}).get('name')}"
    fig.suptitle(title)
    styles = pattern_styles(rows)
    _latency_panel(ax1, rows, styles, measured)
    if has_acc and measured:
        _accuracy_vs_latency_panel(ax2, rows, styles)
    elif has_acc:
        _accuracy_vs_work_panel(ax2, rows, styles)
    else:
        _speedup_panel(ax2, rows, styles)
    ax2.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(str(path), dpi=DPI)
    plt.close(fig)
    return str(path)
