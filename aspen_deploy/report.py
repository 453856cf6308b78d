"""Plain-text and Markdown tables for the CLI and the README."""

from __future__ import annotations

from typing import Any, Iterable


def markdown_table(header: list[str], rows: Iterable[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def format_sweep_table(curves: dict[str, list[dict[str, Any]]]) -> str:
    """One row per threshold scale, accuracy / hidden spikes per window for each model side by side."""
    names = list(curves)
    by_scale: dict[float, dict[str, dict[str, Any]]] = {}
    for name, rows in curves.items():
        for r in rows:
            by_scale.setdefault(round(float(r["threshold_scale"]), 4), {})[name] = r
    header = ["threshold scale"] + [f"{n}: accuracy / hidden spikes per window / clock needed (MHz)" for n in names]
    body = []
    for s in sorted(by_scale):
        cells: list[Any] = [f"{s:g}"]
        for n in names:
            r = by_scale[s].get(n)
            cells.append("" if r is None else f"{float(r['accuracy']):.3f} / {float(r['hidden_spikes_per_window']):,.0f}"
                         f" / {float(r['required_clock_mhz']):.2f}")
        body.append(cells)
    return markdown_table(header, body)
