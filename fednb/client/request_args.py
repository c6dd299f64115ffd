"""How the analyst's keyword arguments become a request's wire arguments: ``where=`` as data (never
code a domain would evaluate) and ``epsilon=``/``mechanism=``/``delta=`` as the ``privacy`` argument.

Shared by the dataset's statistics and the federated algorithms, so neither imports the other."""

from __future__ import annotations

import ast
import re
from typing import Any

from fednb.errors import InvalidInput

# a column is a name, or any text in backquotes (`blood pressure`), as in formulas and pandas' query
_CONDITION = re.compile(r"^\s*([A-Za-z_][\w.]*|`[^`]+`)\s*(==|!=|<=|>=|<|>|not in|in)\s*(.+?)\s*$")


def parse_where(where: Any) -> list[dict]:
    """Filters as data, never code: ``"age > 50 and sex == 'F'"``, ``{"sex": "F"}`` or ``[("age", ">", 50)]``."""
    if where is None:
        return []
    if isinstance(where, str):
        out = []
        for part in re.split(r"\s+and\s+", where.strip()):
            m = _CONDITION.match(part)
            if not m:
                raise InvalidInput(f"cannot read the condition {part!r}; write e.g. \"age > 50 and sex == 'F'\"")
            col, op, raw = m.groups()
            col = col[1:-1] if col.startswith("`") else col
            try:
                value = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                raise InvalidInput(f"{raw!r} in {part!r} is not a number, a quoted string or a list") from None
            out.append({"column": col, "op": op, "value": list(value) if isinstance(value, tuple) else value})
        return out
    if isinstance(where, dict):
        return [{"column": k, "op": "in" if isinstance(v, (list, tuple)) else "==",
                 "value": list(v) if isinstance(v, tuple) else v} for k, v in where.items()]
    return [{"column": c, "op": op, "value": v} for c, op, v in where]


def privacy_arg(epsilon: float | None, mechanism: str, delta: float | None) -> dict | None:
    """The ``privacy`` argument of a noisy built-in (None: exact, unless a domain's policy says otherwise)."""
    if epsilon is None and delta is None and mechanism == "laplace":
        return None
    if mechanism not in ("laplace", "gaussian"):
        raise InvalidInput(f"mechanism must be 'laplace' or 'gaussian', not {mechanism!r}")
    out: dict[str, Any] = {"mechanism": mechanism}
    if epsilon is not None:
        out["epsilon"] = float(epsilon)
    if delta is not None:
        out["delta"] = float(delta)
    return out
