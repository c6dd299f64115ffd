"""Released results and request records as plain rows of text for the JupyterLab panels.

The browser only displays; everything that needs fednb's codec or pandas happens here.
"""

from __future__ import annotations

import math
from typing import Any

from fednb import codec

MAX_ROWS = 40
MAX_TEXT = 4000


def _text(value: Any) -> str:
    if hasattr(value, "to_string"):  # pandas
        text = value.to_string(max_rows=MAX_ROWS)
    elif isinstance(value, float):
        text = "NA" if math.isnan(value) else f"{value:.6g}"
    elif hasattr(value, "tolist"):  # numpy
        return _text(value.tolist())
    else:
        text = str(value)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + " …"


def result_tables(result: Any) -> list[dict]:
    """A released result as small tables ({caption, headers, rows, notes}) the panels draw as they
    come (the same tables as the notebook's tracker: :mod:`fednb.widgets.released`)."""
    from fednb.widgets.released import grids

    if result is None:
        return []
    try:
        return [g.to_dict() for g in grids(codec.decode(result))]
    except Exception:  # an encoding this version does not know: the rows below show it as it came
        return []


def result_rows(result: Any) -> list[dict[str, str]]:
    """A released result as [{"key", "value"}]: one row per entry of a dict, else one row."""
    if result is None:
        return []
    try:
        value = codec.decode(result)
    except Exception:  # an encoding this version does not know: show it as it came
        value = result
    if isinstance(value, dict):
        return [{"key": str(k), "value": _text(v)} for k, v in list(value.items())[:MAX_ROWS]]
    return [{"key": "", "value": _text(value)}]


LISTED = ("id", "analyst", "dataset", "kind", "name", "description", "status", "reason", "decided_by",
          "created_at", "decided_at", "finished_at", "code_hash")


def request_row(domain: str, req: dict) -> dict:
    """The fields a listing shows (no code, no result)."""
    return {"domain": domain, **{k: req.get(k) for k in LISTED}}


def request_detail(domain: str, req: dict) -> dict:
    """Everything about one request: its listing fields, code, arguments and released result."""
    return {**request_row(domain, req), "code": req.get("code"), "args": req.get("args") or {},
            "limits": req.get("limits") or {}, "result": result_rows(req.get("result")),
            "tables": result_tables(req.get("result")),
            "disclosure": req.get("disclosure")}
