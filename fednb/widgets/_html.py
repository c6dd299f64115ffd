"""Small HTML pieces the widgets share: escaped tables, state badges, compact values.

Styles are inline (with JupyterLab's theme variables and fallbacks), so a saved notebook and its
HTML export look the same as the live widget.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

from fednb.i18n import MESSAGES, t

# state -> (background, text) colours of its badge
STATE_COLOURS = {
    "pending": ("#fff4ce", "#7a5b00"),
    "approved": ("#dcecff", "#0b4f8a"),
    "running": ("#dcecff", "#0b4f8a"),
    "done": ("#dff5e1", "#1e6b2a"),
    "denied": ("#fde2e1", "#9b1c1c"),
    "blocked": ("#fde2e1", "#9b1c1c"),
    "failed": ("#fde2e1", "#9b1c1c"),
    "error": ("#fde2e1", "#9b1c1c"),
    "up": ("#dff5e1", "#1e6b2a"),
    "down": ("#fde2e1", "#9b1c1c"),
}

# One style block per table (not per cell): compact, and kept in saved notebooks and HTML exports.
STYLE = ("<style>.fednb-t{border-collapse:collapse;font-size:var(--jp-ui-font-size1,13px);"
         "color:var(--jp-ui-font-color1,#222);margin:4px 0}"
         ".fednb-t td,.fednb-t th{padding:3px 10px;border-bottom:1px solid var(--jp-border-color2,#e0e0e0);"
         "text-align:left;vertical-align:top}"
         ".fednb-t th{font-weight:600;border-bottom-color:var(--jp-border-color1,#bbb)}</style>")


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def badge(state: str, label: str | None = None) -> str:
    bg, fg = STATE_COLOURS.get(state, ("#eee", "#333"))
    text = label if label is not None else t(f"status.{state}") if f"status.{state}" in MESSAGES else state
    return (f'<span class="fednb-badge fednb-state-{esc(state)}" style="background:{bg};color:{fg};'
            f'border-radius:8px;padding:1px 8px;white-space:nowrap;font-size:90%">{esc(text)}</span>')


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, css_class: str = "fednb-table",
          raw: bool = True) -> str:
    """An HTML table; cells are inserted as given when ``raw`` (callers escape), else escaped."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c if raw else esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'{STYLE}<table class="fednb-t {css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def heading(text: str, level: int = 3) -> str:
    size = {2: "1.25em", 3: "1.1em", 4: "1em"}.get(level, "1em")
    return f'<div class="fednb-heading" style="font-weight:600;font-size:{size};margin:6px 0 2px">{esc(text)}</div>'


def muted(text: str) -> str:
    return f'<span style="color:var(--jp-ui-font-color2,#666)">{esc(text)}</span>'


def number(x: Any) -> str:
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(f):
        return "NA"
    return f"{f:,.6g}" if abs(f) < 1e15 else f"{f:.6g}"


def value_html(value: Any) -> str:
    """A released value as small tables (see :mod:`fednb.widgets.released`), not one flattened line."""
    from fednb.widgets.released import grids

    return "".join(grid_html(g) for g in grids(value))


def grid_html(grid: Any) -> str:
    """One :class:`~fednb.widgets.released.Grid`: its caption, the table (right-aligned numbers,
    labels on one line) and its notes."""
    caption = f'<div class="fednb-grid-caption">{muted(grid.caption)}</div>' if grid.caption else ""
    head = "".join(f"<th>{esc(x)}</th>" for x in grid.headers) if any(grid.headers) else ""
    body = "".join("<tr>" + "".join(f'<td style="white-space:nowrap{";text-align:right" if _numeric(c) else ""}">'
                                    f"{esc(c)}</td>" for c in row) + "</tr>" for row in grid.rows)
    notes = "".join(f"<div>{muted(n)}</div>" for n in grid.notes)
    return (f'{caption}{STYLE}<table class="fednb-t fednb-grid"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>{notes}")


def _numeric(text: str) -> bool:
    return bool(text) and text.replace(",", "").replace(".", "").replace("-", "").replace("e+", "") \
        .replace("e", "").lstrip("−").isdigit() or text in ("NA", "∞", "−∞")
