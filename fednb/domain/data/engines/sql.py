"""Compiling an analyst's filter and column names into SQL that cannot carry their text as code.

Every value an analyst sends becomes a ``?`` parameter; every column name is looked up in the
dataset's schema and quoted from the schema's own spelling, never from the request, so no request
can add SQL (OWASP, "Query Parameterization Cheat Sheet"). The filter keeps the meaning pandas gave
it before the domain ran SQL: a missing value equals nothing, differs from everything, and is in no
list unless the list holds ``None`` (for pandas' nullable ``boolean`` and ``Int64`` columns, which
dropped missing rows under ``!=`` and ``not in``, this now holds as for every other column).

Names and levels are checked against what the listing already shows: a misspelt column gets one
"did you mean" (``difflib``), and a category value that is not a public level but is close to one
("Benign" for "benign") is refused as a typo. That decision reads only the public metadata, never
the rows, so it says nothing about a hidden (rare) level.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fednb.domain.data.engines.base import ROW_ID
from fednb.errors import InvalidInput

NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                 "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "REAL")
TEXT_TYPES = ("VARCHAR", "TEXT", "STRING", "CHAR", "ENUM")
ORDER_OPS = ("<", "<=", ">", ">=")


def quote(name: str) -> str:
    """A SQL identifier for a name taken from the schema."""
    return '"' + str(name).replace('"', '""') + '"'


def suggestion(name: str, choices: Sequence[Any]) -> str:
    """`` (did you mean 'x'?)`` for the closest public name or level, or nothing."""
    folded = {str(c).casefold(): c for c in reversed(list(choices))}
    close = difflib.get_close_matches(str(name).casefold(), list(folded), n=1, cutoff=0.75)
    return f" (did you mean {folded[close[0]]!r}?)" if close else ""


def is_numeric(sql_type: str) -> bool:
    base = sql_type.split("(")[0].upper()
    return base in NUMERIC_TYPES or base.startswith("DECIMAL") or base == "BOOLEAN"


def is_text(sql_type: str) -> bool:
    return sql_type.split("(")[0].upper() in TEXT_TYPES


@dataclass
class Schema:
    """A dataset's columns (name -> SQL type) and the levels its listing makes public."""

    columns: Mapping[str, str]
    levels: Mapping[str, list] = field(default_factory=dict)

    def column(self, name: Any) -> str:
        """The quoted identifier of ``name``, or a clear error with one suggestion."""
        if not isinstance(name, str) or name not in self.columns:
            raise InvalidInput(f"the dataset has no column {name!r}{suggestion(str(name), list(self.columns))}")
        return quote(name)

    def numeric(self, name: str, what: str = "") -> str:
        """``CAST(col AS DOUBLE)`` for a numeric or boolean column (as ``registry.numeric`` reads it)."""
        ident = self.column(name)
        if not is_numeric(self.columns[name]):
            raise InvalidInput(f"column {name!r} is not numeric{what}")
        return f"CAST({ident} AS DOUBLE)"

    def present(self, name: str) -> str:
        """The column has a value (a NaN in a float column counts as missing, as in pandas)."""
        ident = self.column(name)
        if self.columns[name].upper() in ("DOUBLE", "FLOAT", "REAL"):
            return f"({ident} IS NOT NULL AND NOT isnan({ident}))"
        return f"{ident} IS NOT NULL"


def check_levels(schema: Schema, column: str, op: str, value: Any) -> None:
    """Refuse a category value that is not public but is close to a public level (a typo)."""
    public = schema.levels.get(column)
    if not public or op not in ("==", "!=", "in", "not in"):
        return
    for v in value if isinstance(value, list) else [value]:
        if isinstance(v, str) and v not in public:
            hint = suggestion(v, public)
            if hint:
                raise InvalidInput(f"no such level {v!r} in {column}{hint}")


def _compatible(schema: Schema, column: str, op: str, value: Any) -> None:
    """Values of the column's kind: a number for a number column, text for a text column."""
    sql_type = schema.columns[column]
    for v in value if isinstance(value, list) else [value]:
        if v is None:
            if op in ORDER_OPS:
                raise InvalidInput(f"cannot compare column {column!r} with None using {op!r}")
            continue
        number = isinstance(v, (int, float))  # bool is an int
        if (is_numeric(sql_type) and not number) or (is_text(sql_type) and number):
            raise InvalidInput(f"cannot compare column {column!r} ({sql_type.lower()}) with {v!r}")


def condition(schema: Schema, column: str, op: str, value: Any) -> tuple[str, list[Any]]:
    """One condition as SQL that is true or false, never NULL, and its parameters."""
    ident = schema.column(column)
    check_levels(schema, column, op, value)
    _compatible(schema, column, op, value)
    if op in ("in", "not in"):
        values = value if isinstance(value, list) else [value]
        present = [v for v in values if v is not None]
        parts = [f"{ident} IN ({', '.join('?' for _ in present)})"] if present else []
        if len(present) < len(values):
            parts.append(f"{ident} IS NULL")
        test = f"coalesce({' OR '.join(parts)}, false)" if parts else "false"
        return (test if op == "in" else f"NOT {test}"), present
    if isinstance(value, list):
        raise InvalidInput(f"a list of values needs 'in' or 'not in', not {op!r} (column {column!r})")
    if value is None:  # pandas: nothing equals None, everything differs from it
        return ("false" if op == "==" else "true"), []
    if op == "!=":
        return f"{ident} IS DISTINCT FROM ?", [value]
    return f"coalesce({ident} {op} ?, false)", [value]


def where(schema: Schema, conditions: Sequence[Any]) -> tuple[str, list[Any]]:
    """``conditions`` (parsed ``Condition`` models or dicts) joined by AND; ``"true"`` when empty."""
    parts: list[str] = []
    params: list[Any] = []
    for cond in conditions:
        get = cond.get if isinstance(cond, dict) else lambda k, c=cond: getattr(c, k)
        text, values = condition(schema, get("column"), get("op"), get("value"))
        parts.append(f"({text})")
        params.extend(values)
    return (" AND ".join(parts) or "true"), params


def select_rows(schema: Schema, columns: Sequence[str], conditions: Sequence[Any]) -> tuple[str, list[Any]]:
    """The rows matching ``conditions``, with their ids and only ``columns``, in the file's order."""
    names = [ROW_ID, *(schema.column(c) for c in dict.fromkeys(columns))]
    test, params = where(schema, conditions)
    return f"SELECT {', '.join(names)} FROM data WHERE {test} ORDER BY {ROW_ID}", params
