"""Plain-text tables for terminal reports."""

from __future__ import annotations

from typing import Any


def format_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """Plain-text table. ``columns`` = [(key, header)]; floats get 3 decimals."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3f}"
        return "" if v is None else str(v)

    table = [[h for _, h in columns]] + [[cell(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
