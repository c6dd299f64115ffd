"""Small static SVG charts of pooled results: bars for a histogram, a shaded grid for a crosstab,
step curves for Kaplan–Meier survival.

The live notebook draws these with plotly inside the result's widget. A saved notebook, its HTML
export (the previews in ``docs/``), GitHub's viewer or a notebook run by nbclient has no widget
state and no plotly.js; these SVGs ride in the result's ``text/html`` so the picture is there too.
No dependency beyond the standard library: they are plain markup, escaped like every label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fednb import i18n
from fednb.widgets._html import esc, number

WIDTH, HEIGHT = 460, 220
MARGIN_LEFT, MARGIN_BOTTOM, MARGIN_TOP = 48, 40, 12
BAR = "#3b75af"
MISSING = "#d9d9d9"
CURVES = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _svg(body: str, width: int = WIDTH, height: int = HEIGHT, title: str = "") -> str:
    label = f"<title>{esc(title)}</title>" if title else ""
    return (f'<svg class="fednb-svg" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" style="font:11px sans-serif;margin:4px 0">{label}{body}</svg>')


def _y_axis(top: float, plot_h: float, base_y: float, fmt=number) -> str:
    ticks = [top * i / 4 for i in range(5)]
    return "".join(f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - 8}" y1="{base_y - plot_h * v / top:.1f}" '
                   f'y2="{base_y - plot_h * v / top:.1f}" stroke="#eee"/>'
                   f'<text x="{MARGIN_LEFT - 4}" y="{base_y - plot_h * v / top + 4:.1f}" text-anchor="end" '
                   f'fill="#555">{esc(fmt(round(v, 6)))}</text>' for v in ticks)


def nice_top(largest: float) -> float:
    """The axis top: four ticks of 1, 2, 2.5 or 5 × 10^k that reach ``largest``."""
    if largest <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(largest / 4))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if 4 * m * magnitude >= largest)
    return 4 * step


def bars(labels: Sequence[str], values: Sequence[float | None], *, title: str = "",
         missing_label: str | None = None) -> str:
    """Vertical bars; a missing value (a suppressed cell) is a grey stub labelled as such (by
    default "suppressed" in the reader's language)."""
    missing_label = i18n.t("result.suppressed") if missing_label is None else missing_label
    known = [v for v in values if v is not None and not math.isnan(v)]
    top = nice_top(max(known, default=0))
    base_y, plot_h = HEIGHT - MARGIN_BOTTOM, HEIGHT - MARGIN_BOTTOM - MARGIN_TOP
    step = (WIDTH - MARGIN_LEFT - 8) / max(len(values), 1)
    parts = [_y_axis(top, plot_h, base_y)]
    for i, (label, v) in enumerate(zip(labels, values)):
        x = MARGIN_LEFT + i * step + step * 0.1
        if v is None or math.isnan(v):
            parts.append(f'<rect x="{x:.1f}" y="{base_y - 6}" width="{step * 0.8:.1f}" height="6" fill="{MISSING}">'
                         f"<title>{esc(label)}: {esc(missing_label)}</title></rect>")
        else:
            h = plot_h * v / top
            parts.append(f'<rect x="{x:.1f}" y="{base_y - h:.1f}" width="{step * 0.8:.1f}" height="{h:.1f}" '
                         f'fill="{BAR}"><title>{esc(label)}: {esc(number(v))}</title></rect>')
        parts.append(f'<text x="{x + step * 0.4:.1f}" y="{base_y + 14}" text-anchor="middle" fill="#333">'
                     f"{esc(label)}</text>")
    parts.append(f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - 8}" y1="{base_y}" y2="{base_y}" stroke="#999"/>')
    return _svg("".join(parts), title=title)


def heatmap(rows: Sequence[str], cols: Sequence[str], cells: Sequence[Sequence[float | None]], *,
            row_title: str = "", col_title: str = "", title: str = "", missing_label: str | None = None) -> str:
    """A grid of counts, darker for larger; each cell carries its number; missing cells are grey
    (labelled "suppressed" in the reader's language unless told otherwise)."""
    missing_label = i18n.t("result.suppressed") if missing_label is None else missing_label
    known = [v for r in cells for v in r if v is not None and not math.isnan(v)]
    top = max(known, default=0) or 1.0
    left, head = 90, 34
    cell_w = min(90, (WIDTH - left - 8) / max(len(cols), 1))
    cell_h = 28
    height = head + cell_h * len(rows) + 8
    parts = [f'<text x="{left + cell_w * len(cols) / 2:.1f}" y="11" text-anchor="middle" fill="#555">'
             f"{esc(col_title)}</text>"] if col_title else []
    parts += [f'<text x="{left + (j + 0.5) * cell_w:.1f}" y="{head - 6}" text-anchor="middle" fill="#333">'
              f"{esc(c)}</text>" for j, c in enumerate(cols)]
    for i, (label, row) in enumerate(zip(rows, cells)):
        y = head + i * cell_h
        parts.append(f'<text x="{left - 6}" y="{y + cell_h / 2 + 4:.1f}" text-anchor="end" fill="#333">'
                     f"{esc(label)}</text>")
        for j, v in enumerate(row):
            x = left + j * cell_w
            if v is None or math.isnan(v):
                fill, text, ink = MISSING, missing_label, "#555"
            else:
                share = v / top
                fill = f"rgba(59,117,175,{0.12 + 0.88 * share:.2f})"
                text, ink = number(v), "#fff" if share > 0.55 else "#222"
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{cell_w - 2:.1f}" height="{cell_h - 2}" fill="{fill}"/>'
                         f'<text x="{x + cell_w / 2 - 1:.1f}" y="{y + cell_h / 2 + 3:.1f}" text-anchor="middle" '
                         f'fill="{ink}">{esc(text)}</text>')
    if row_title:
        parts.append(f'<text x="4" y="{head - 6}" fill="#555">{esc(row_title)}</text>')
    return _svg("".join(parts), width=int(left + cell_w * len(cols) + 8), height=int(height), title=title)


def steps(curves: dict[str, tuple[Sequence[float], Sequence[float]]], *, title: str = "",
          x_label: str = "", y_label: str = "") -> str:
    """Step curves from (0, 1): one per group, {name: (times, survival)}, with a legend."""
    xs = [x for t, _ in curves.values() for x in t]
    right = max(xs, default=1.0) or 1.0
    base_y, plot_h = HEIGHT - MARGIN_BOTTOM, HEIGHT - MARGIN_BOTTOM - MARGIN_TOP
    plot_w = WIDTH - MARGIN_LEFT - 8
    parts = [_y_axis(1.0, plot_h, base_y, fmt=lambda v: f"{v:.2g}")]
    for i, (name, (times, surv)) in enumerate(curves.items()):
        color = CURVES[i % len(CURVES)]
        x0, y0 = MARGIN_LEFT, base_y - plot_h
        path = [f"M{x0:.1f},{y0:.1f}"]
        for t, s in zip(times, surv):
            x = MARGIN_LEFT + plot_w * t / right
            path.append(f"H{x:.1f}V{base_y - plot_h * s:.1f}")
        parts.append(f'<path d="{"".join(path)}" fill="none" stroke="{color}" stroke-width="2">'
                     f"<title>{esc(name)}</title></path>")
        parts.append(f'<text x="{WIDTH - 10}" y="{MARGIN_TOP + 12 + 14 * i}" text-anchor="end" fill="{color}">'
                     f"{esc(name)}</text>")
    parts.append(f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - 8}" y1="{base_y}" y2="{base_y}" stroke="#999"/>')
    parts += [f'<text x="{MARGIN_LEFT + plot_w * k / 4:.1f}" y="{base_y + 14}" text-anchor="middle" fill="#333">'
              f"{esc(number(round(right * k / 4, 4)))}</text>" for k in range(5)]
    if x_label:
        parts.append(f'<text x="{MARGIN_LEFT + plot_w / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle" fill="#555">'
                     f"{esc(x_label)}</text>")
    return _svg("".join(parts), title=title or y_label)
