"""A domain's released value as small tables a person reads at a glance.

What a domain releases is plain data: a built-in's dict (a histogram's ``edges``/``below``/
``counts``/``above``, a crosstab's ``rows``/``cols``/``counts``, a mean's ``n`` and ``mean``) or a
custom function's pandas objects. Printed as they come, they read as one flattened line
(``counts [44, 256, 256, None]``, ``above None``). :func:`grids` turns each known shape into
:class:`Grid` tables (headers and rows of text) that the notebook tracker renders as HTML and the
JupyterLab panel as DOM tables, so both show the same thing. Suppressed cells say "suppressed",
timestamps read to the second in local time, long results are cut with a note of what is left out.

Pure Python with pandas imported lazily: no ipywidgets, so the Jupyter server extension uses it too.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

from fednb.i18n import MESSAGES, t

MAX_ROWS = 20
MAX_COLUMNS = 12
MAX_TEXT = 200


@dataclass
class Grid:
    """One table: ``headers`` over ``rows`` (all text); ``caption`` above it, ``notes`` below."""

    headers: list[str]
    rows: list[list[str]]
    caption: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"caption": self.caption, "headers": self.headers, "rows": self.rows, "notes": self.notes}


# -- cells ------------------------------------------------------------------------------------------
def when(value: Any) -> str:
    """A timestamp to the second, in the local time zone (naive timestamps are taken as UTC, as
    domains record them)."""
    import pandas as pd

    stamp = pd.Timestamp(value)
    if stamp is pd.NaT:
        return "NaT"
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.tz_convert(dt.datetime.now().astimezone().tzinfo).strftime("%Y-%m-%d %H:%M:%S")


def is_timestamp(value: Any) -> bool:
    import numpy as np

    return isinstance(value, (dt.datetime, np.datetime64)) or type(value).__name__ == "Timestamp"


def cell(value: Any, *, missing: str = "–") -> str:
    """One value as text: thousands separators, six significant digits, NA, seconds for times."""
    if value is None:
        return missing
    if hasattr(value, "item") and not is_timestamp(value):  # numpy scalars
        value = value.item()
    if is_timestamp(value):
        return when(value)
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "NA"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        return f"{value:,.6g}" if abs(value) < 1e15 else f"{value:.6g}"
    if type(value).__name__ == "NAType":
        return missing
    text = str(value)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + " …"


def _more(shown: int, total: int, what: str) -> list[str]:
    """The note under a cut table; ``what`` is one of bins, rows, columns, entries, values, edges."""
    return [t(f"result.more.{what}", n=f"{total - shown:,}")] if total > shown else []


# -- shapes -----------------------------------------------------------------------------------------
def is_histogram(value: Any) -> bool:
    return isinstance(value, dict) and {"edges", "below", "counts", "above"} <= value.keys() \
        and isinstance(value["counts"], list) and len(value["counts"]) == len(value["edges"]) - 1


def is_crosstab(value: Any) -> bool:
    return isinstance(value, dict) and {"rows", "cols", "counts"} <= value.keys() \
        and isinstance(value["counts"], list) and all(isinstance(r, list) for r in value["counts"])


def is_cumulative(value: Any) -> bool:
    return isinstance(value, dict) and {"edges", "below"} <= value.keys() and isinstance(value["below"], list)


def _caption(value: dict, skip: set[str]) -> tuple[str, list[str]]:
    """The scalar facts next to a table (``n``, ``suppressed``) as a caption; the noise as a note."""
    facts = [f"{label(k)} = {cell(v)}" for k, v in value.items()
             if k not in skip and k != "dp" and not isinstance(v, (list, dict))]
    return " · ".join(facts), dp_notes(value.get("dp"))


def label(key: str) -> str:
    """A released fact's name in the reader's language where fednb knows it (``suppressed``: how many
    cells were hidden); other keys are the result's own names (``n``) and stay as they are."""
    return t(f"result.fact.{key}") if f"result.fact.{key}" in MESSAGES else key


def dp_notes(dp: Any) -> list[str]:
    if not isinstance(dp, dict):
        return []
    names = {"mechanism": t("result.mechanism"), "epsilon": "epsilon", "delta": "delta"}
    parts = [f"{names[k]} {cell(dp[k])}" for k in names if dp.get(k) is not None]
    return [t("result.noise_with", details=", ".join(parts))] if parts else [t("result.noise")]


def histogram_grid(value: dict) -> Grid:
    suppressed = t("result.suppressed")
    edges = [float(e) for e in value["edges"]]
    lefts, rights = [-math.inf, *edges], [*edges, math.inf]
    counts = [value["below"], *value["counts"], value["above"]]
    rows = [[f"[{cell(lo)}, {cell(hi)})", cell(c, missing=suppressed)] for lo, hi, c in zip(lefts, rights, counts)]
    caption, notes = _caption(value, {"edges", "below", "counts", "above"})
    return Grid([t("result.bin"), t("result.count")], rows[:MAX_ROWS], caption, notes + _more(MAX_ROWS, len(rows), "bins"))


def crosstab_grid(value: dict) -> Grid:
    suppressed = t("result.suppressed")
    cols = list(value["cols"])[:MAX_COLUMNS]
    rows = [[cell(r), *(cell(c, missing=suppressed) for c in counts[:MAX_COLUMNS])]
            for r, counts in zip(value["rows"], value["counts"])]
    caption, notes = _caption(value, {"rows", "cols", "counts"})
    notes += _more(MAX_ROWS, len(rows), "rows") + _more(MAX_COLUMNS, len(value["cols"]), "columns")
    return Grid(["", *(cell(c) for c in cols)], rows[:MAX_ROWS], caption, notes)


def cumulative_grid(value: dict) -> Grid:
    rows = [[cell(e), cell(b)] for e, b in zip(value["edges"], value["below"])]
    caption, notes = _caption(value, {"edges", "below"})
    return Grid([t("result.edge"), t("result.rows_below")], rows[:MAX_ROWS], caption, notes + _more(MAX_ROWS, len(rows), "edges"))


def frame_grid(frame: Any, caption: str = "") -> Grid:
    """A DataFrame with its index as leading columns (a MultiIndex as several)."""
    names = [cell(n) if n is not None else "" for n in frame.index.names]
    cols = list(frame.columns)[:MAX_COLUMNS]
    rows = []
    for label, (_, row) in zip(frame.index[:MAX_ROWS], frame.head(MAX_ROWS).iterrows()):
        labels = label if isinstance(label, tuple) else (label,)
        rows.append([*(cell(x) for x in labels), *(cell(row[c]) for c in cols)])
    notes = _more(MAX_ROWS, len(frame), "rows") + _more(MAX_COLUMNS, len(frame.columns), "columns")
    return Grid([*names, *(cell(c) for c in cols)], rows, caption, notes)


def series_grid(series: Any, caption: str = "") -> Grid:
    name = series.name if series.name is not None else t("result.value")
    return frame_grid(series.to_frame(name=name), caption)


def mapping_grids(value: dict, caption: str = "") -> list[Grid]:
    """A dict: its scalar entries as one two-column table, each nested table as its own."""
    scalars = [[cell(k), cell(v)] for k, v in value.items() if k != "dp" and not _nested(v)]
    out = [Grid(["", t("result.value")], scalars[:MAX_ROWS], caption,
                dp_notes(value.get("dp")) + _more(MAX_ROWS, len(scalars), "entries"))] if scalars else []
    for key, nested in value.items():
        if key != "dp" and _nested(nested):
            out += grids(nested, caption=f"{caption} · {key}" if caption else str(key))
    return out


def _nested(value: Any) -> bool:
    return isinstance(value, (dict, list, tuple)) or hasattr(value, "iloc") or \
        (hasattr(value, "ndim") and getattr(value, "ndim", 0) > 0)


def list_grid(values: list, caption: str = "") -> Grid:
    if values and all(isinstance(v, (list, tuple)) for v in values):  # a matrix
        width = min(max(len(v) for v in values), MAX_COLUMNS)
        rows = [[cell(x) for x in list(v)[:width]] for v in values[:MAX_ROWS]]
        return Grid([str(j) for j in range(width)], rows, caption, _more(MAX_ROWS, len(values), "rows"))
    rows = [[str(i), cell(v)] for i, v in enumerate(values[:MAX_ROWS])]
    return Grid(["", t("result.value")], rows, caption, _more(MAX_ROWS, len(values), "values"))


def grids(value: Any, *, caption: str = "") -> list[Grid]:
    """The tables that show ``value`` (decoded by :func:`fednb.codec.decode`), most specific first."""
    if value is None:
        return []
    if is_histogram(value):
        return [histogram_grid(value)]
    if is_crosstab(value):
        return [crosstab_grid(value)]
    if is_cumulative(value):
        return [cumulative_grid(value)]
    if hasattr(value, "iloc"):  # pandas
        return [frame_grid(value, caption) if hasattr(value, "columns") else series_grid(value, caption)]
    if isinstance(value, dict):
        return mapping_grids(value, caption)
    if hasattr(value, "tolist") and getattr(value, "ndim", 0) > 0:  # numpy arrays
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [list_grid(list(value), caption)]
    return [Grid([t("result.value")], [[cell(value)]], caption)]
