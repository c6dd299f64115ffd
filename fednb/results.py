"""Result shapes a domain can check like a built-in: ``fednb.table(...)`` and ``fednb.stat(...)``.

A custom function that returns plain numbers gives the domain no way to tell an aggregate of 500
patients from one patient's age. These two shapes carry, next to what the analyst asked for, the
rows behind each value: the function hands the domain the row positions (the index of the frame it
was given), the group labels and the per-row values; the domain's own process then counts the rows,
verifies labels and values of dataset columns against its copy of the data, computes every count,
sum and mean itself, and applies the cohort, cell and dominance rules to each one
(:mod:`fednb.domain.release.output_check`). Nothing the function claims about its result (a count,
an ``n``) is taken on its word.

On the analyst's side (``fednb.dry_run`` on the mocks) the same arithmetic runs without the rules.
This module imports pandas lazily so ``import fednb`` stays cheap.
"""

from __future__ import annotations

from typing import Any

AGGREGATES = ("count", "sum", "mean")
TAG = "__fednb__"


class ResultShapeError(ValueError):
    """A ``fednb.table``/``fednb.stat`` call that does not describe a checkable aggregate."""


class _Shape:
    """Base of :class:`Table` and :class:`Stat`: rows, values and the aggregate asked for."""

    kind = ""

    def __init__(self, rows: list[int], values: list[float] | None, value: str | None, agg: str):
        self.rows, self.values, self.value, self.agg = rows, values, value, agg

    def __repr__(self) -> str:
        return f"<fednb.{self.kind} {self.agg} of {self.value or 'rows'} over {len(self.rows)} rows>"


class Table(_Shape):
    """Counts, sums or means by group; released as a DataFrame with ``n`` and the aggregate per group."""

    kind = "table"

    def __init__(self, rows, values, value, agg, by: list[str], groups: list[list], codes: list[int]):
        super().__init__(rows, values, value, agg)
        self.by, self.groups, self.codes = by, groups, codes

    def encoded(self) -> dict:
        return {TAG: "table", "by": self.by, "value": self.value, "agg": self.agg, "rows": self.rows,
                "values": self.values, "groups": self.groups, "codes": self.codes}


class Stat(_Shape):
    """One count, sum or mean; ``n`` is what the code claims and is never used by a domain."""

    kind = "stat"

    def __init__(self, rows, values, value, agg, n: int | None = None):
        super().__init__(rows, values, value, agg)
        self.n = len(rows) if n is None else n

    def encoded(self) -> dict:
        return {TAG: "stat", "value": self.value, "agg": self.agg, "rows": self.rows, "values": self.values,
                "n": self.n}


def _agg(agg: str) -> str:
    if agg not in AGGREGATES:
        raise ResultShapeError(f"agg must be one of {list(AGGREGATES)}, not {agg!r}")
    return agg


def _row_ids(index: Any) -> list[int]:
    """Row positions in the domain's dataset: the index of the frame the function was given."""
    import pandas as pd

    if isinstance(index, pd.MultiIndex) or not pd.api.types.is_integer_dtype(index.dtype):
        raise ResultShapeError("fednb.table/stat need the rows' original index (the positions in the dataset "
                               "the function was given); do not reset or replace the index")
    return [int(i) for i in index]


def _numbers(series: Any, what: str) -> list[float]:
    import pandas as pd

    if series.dtype == bool:
        series = series.astype(float)
    if not pd.api.types.is_numeric_dtype(series.dtype):
        raise ResultShapeError(f"{what} is not numeric, so it has no sum or mean")
    return [float(v) for v in series.astype(float)]


def table(frame: Any, by: str | list[str], value: str | None = None, agg: str = "count") -> Table:
    """Counts (``agg="count"``), sums or means of column ``value`` of ``frame`` by the columns ``by``.

    ``frame`` is the dataset the function was given, or rows selected from it (filters keep the
    index the domain uses to find the rows). Columns of the dataset are verified against the
    domain's copy; columns the function computed itself are checked as such (see SECURITY.md).
    """
    agg = _agg(agg)
    by = [by] if isinstance(by, str) else list(by)
    if not by or any(b not in frame.columns for b in by):
        raise ResultShapeError(f"fednb.table groups by columns of the frame; {by!r} are not all among them")
    if agg != "count" and (value is None or value not in frame.columns):
        raise ResultShapeError(f"fednb.table with agg={agg!r} needs value=<a column of the frame>")
    keys = frame[by].astype(object).where(frame[by].notna(), None)
    present = keys.notna().all(axis=1)
    frame, keys = frame[present], keys[present]
    if agg != "count":
        keep = frame[value].notna()
        frame, keys = frame[keep], keys[keep]
    tuples = [tuple(_plain(v) for v in row) for row in keys.itertuples(index=False, name=None)]
    groups: dict[tuple, int] = {}
    codes = [groups.setdefault(t, len(groups)) for t in tuples]
    values = _numbers(frame[value], f"column {value!r}") if agg != "count" else None
    return Table(_row_ids(frame.index), values, value if agg != "count" else None, agg, by,
                 [list(g) for g in groups], codes)


def stat(values: Any, agg: str = "mean") -> Stat:
    """One count, sum or mean of a column (a Series) of the dataset the function was given.

    ``fednb.stat(df.bmi)``, ``fednb.stat(df.loc[df.age > 60, "bmi"], "sum")``,
    ``fednb.stat(df[df.smoker], "count")`` (a frame counts its rows).
    """
    import pandas as pd

    agg = _agg(agg)
    if isinstance(values, pd.DataFrame):
        if agg != "count":
            raise ResultShapeError("fednb.stat of a whole frame can only count its rows; pass one column")
        return Stat(_row_ids(values.index), None, None, "count")
    if not isinstance(values, pd.Series):
        raise ResultShapeError("fednb.stat takes a column (pandas Series) or rows (DataFrame) of the dataset")
    if agg != "count":
        values = values[values.notna()]
    name = values.name if isinstance(values.name, str) else None
    numbers = _numbers(values, f"column {name!r}") if agg != "count" else None
    return Stat(_row_ids(values.index), numbers, name if agg != "count" else None, agg)


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


# -- the arithmetic, shared by dry runs and the domain ------------------------------------------------
def aggregate(values: list[float] | None, agg: str) -> float | int:
    """The released number of one group or stat, from its rows' values."""
    if agg == "count" or values is None:
        return 0 if values is None else len(values)
    total = float(sum(values))
    return total if agg == "sum" else total / len(values) if values else float("nan")


def unchecked_frame(encoded: dict) -> Any:
    """A table as the analyst sees it, computed without disclosure rules (dry runs on mocks)."""
    per_group: dict[int, list] = {}
    for i, code in enumerate(encoded["codes"]):
        per_group.setdefault(code, []).append(None if encoded["values"] is None else encoded["values"][i])
    cells = []
    for code, group in enumerate(encoded["groups"]):
        members = per_group.get(code, [])
        vals = None if encoded["values"] is None else members
        cells.append((group, len(members), None if vals is None else aggregate(vals, encoded["agg"])))
    return frame_of(encoded["by"], encoded["agg"], cells)


def frame_of(by: list[str], agg: str, cells: list[tuple[list, int | None, float | None]]) -> Any:
    """The released DataFrame: one row per group, ``n`` and (for sums and means) the aggregate."""
    import pandas as pd

    index = pd.MultiIndex.from_tuples([tuple(g) for g, _, _ in cells], names=by) if len(by) > 1 else \
        pd.Index([g[0] for g, _, _ in cells], name=by[0])
    data = {"n": pd.array([n for _, n, _ in cells], dtype="Int64")}
    if agg != "count":
        data[agg] = [float("nan") if v is None else v for _, _, v in cells]
    return pd.DataFrame(data, index=index).sort_index()


def unchecked_numbers(encoded: Any) -> int:
    """Numbers of an encoded result outside ``fednb.table``/``fednb.stat`` (and outside labels of
    pandas objects): what a domain's output check cannot trace to rows, and so blocks by default."""
    if isinstance(encoded, list):
        return sum(unchecked_numbers(v) for v in encoded)
    if isinstance(encoded, dict):
        tag = encoded.get(TAG)
        if tag in ("table", "stat"):
            return 0
        if tag == "float":
            return 1
        if tag == "dict":
            return sum(unchecked_numbers(k) + unchecked_numbers(v) for k, v in encoded["items"])
        if tag is None:
            return sum(unchecked_numbers(v) for v in encoded.values())
        return unchecked_numbers(encoded.get("data")) + unchecked_numbers(encoded.get("index"))
    return 0 if encoded is None or isinstance(encoded, str) else 1


def unchecked_stat(encoded: dict) -> float | int:
    values = encoded["values"]
    return len(encoded["rows"]) if encoded["agg"] == "count" else aggregate(values, encoded["agg"])
