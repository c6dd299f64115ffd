"""Built-in aggregates computed on a domain, in a form the analyst can pool exactly.

Each built-in returns sufficient statistics, not finished numbers: ``mean`` returns (n, mean),
``variance`` returns (n, mean, M2) so pooled variances are exact (Chan, Golub & LeVeque, 1979);
histograms and crosstabs return counts with small cells suppressed. These are fednb's own code, so
they run in the domain process without a sandbox, but through the same data loading and the same
disclosure checks as custom code.
"""

from __future__ import annotations

from typing import Any, Literal, Union

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fednb.domain import disclosure
from fednb.domain.disclosure import Blocked
from fednb.domain.policy import DisclosureSection
from fednb.errors import InvalidInput

Scalar = Union[bool, int, float, str, None]
Op = Literal["==", "!=", "<", "<=", ">", ">=", "in", "not in"]


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: str
    op: Op
    value: Union[Scalar, list[Scalar]]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")
    where: list[Condition] = Field(default_factory=list, max_length=20)


class CountArgs(_Args):
    column: str | None = None


class ColumnArgs(_Args):
    column: str


class BinArgs(ColumnArgs):
    bins: list[float] = Field(min_length=2, max_length=1001)

    @field_validator("bins")
    @classmethod
    def _increasing(cls, v: list[float]) -> list[float]:
        if any(not np.isfinite(x) for x in v) or any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError("bins must be finite and strictly increasing")
        return v


class CrosstabArgs(_Args):
    row: str
    col: str


ARGS: dict[str, type[_Args]] = {
    "count": CountArgs, "sum": ColumnArgs, "mean": ColumnArgs, "variance": ColumnArgs,
    "histogram": BinArgs, "quantiles": BinArgs, "crosstab": CrosstabArgs,
}


def validate_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Check a built-in's arguments when it is submitted; returns them normalised."""
    if name not in ARGS:
        raise InvalidInput(f"unknown built-in {name!r}; built-ins are {sorted(ARGS)}")
    try:
        return ARGS[name].model_validate(args).model_dump(exclude_defaults=True)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'args'}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"bad arguments for {name}: {problems}") from None


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    if name not in df.columns:
        raise InvalidInput(f"the dataset has no column {name!r}")
    return df[name]


def _numeric(df: pd.DataFrame, name: str) -> np.ndarray:
    s = _column(df, name)
    if pd.api.types.is_bool_dtype(s):
        s = s.astype("float")
    if not pd.api.types.is_numeric_dtype(s):
        raise InvalidInput(f"column {name!r} is not numeric")
    return s.dropna().to_numpy(dtype=float)


_OPS = {
    "==": lambda s, v: s == v, "!=": lambda s, v: s != v, "<": lambda s, v: s < v,
    "<=": lambda s, v: s <= v, ">": lambda s, v: s > v, ">=": lambda s, v: s >= v,
    "in": lambda s, v: s.isin(v if isinstance(v, list) else [v]),
    "not in": lambda s, v: ~s.isin(v if isinstance(v, list) else [v]),
}


def select(df: pd.DataFrame, where: list[Condition]) -> pd.DataFrame:
    """Rows matching every condition. Structured, never ``eval``: no code runs from a filter."""
    mask = pd.Series(True, index=df.index)
    for cond in where:
        try:
            mask &= _OPS[cond.op](_column(df, cond.column), cond.value).fillna(False).astype(bool)
        except TypeError:
            raise InvalidInput(f"cannot compare column {cond.column!r} with {cond.value!r}") from None
    return df[mask]


def _cells(values: np.ndarray, edges: list[float], rules: DisclosureSection) -> dict[str, Any]:
    n = len(values)
    disclosure.check_cohort(n, rules)
    inner, _ = np.histogram(values, bins=np.asarray(edges))
    cells = np.concatenate([[np.sum(values < edges[0])], inner, [np.sum(values > edges[-1])]])
    hidden = disclosure.suppress(cells[None, :], rules.min_cell_count, margins=(True, False))[0]
    shown = [None if h else int(c) for c, h in zip(cells, hidden)]
    return {"n": n, "edges": list(edges), "below": shown[0], "counts": shown[1:-1], "above": shown[-1],
            "suppressed": int(hidden.sum())}


def _cumulative(values: np.ndarray, edges: list[float], rules: DisclosureSection) -> dict[str, Any]:
    """Counts of values below each edge, at the edges that keep every bin empty or >= min_cell_count.

    Adjacent small bins are merged rather than suppressed, so every released count is exact and
    none can be recovered from its neighbours. The analyst's quantile protocol refines on these.
    """
    n = len(values)
    disclosure.check_cohort(n, rules)
    k = rules.min_cell_count
    below = np.searchsorted(np.sort(values), np.asarray(edges), side="left")  # values < edge
    kept: list[int] = []
    last = 0  # count below the last kept edge
    for i, c in enumerate(below):
        group = c - last
        if group == 0 or group >= k:
            kept.append(i)
            last = c
    # the group above the last kept edge must be empty or large enough too; dropping an edge only
    # merges into that top group, so the groups below stay valid
    while kept and 0 < n - below[kept[-1]] < k:
        kept.pop()
    return {"n": n, "edges": [float(edges[i]) for i in kept], "below": [int(below[i]) for i in kept]}


def compute(name: str, args: dict[str, Any], df: pd.DataFrame, rules: DisclosureSection,
            levels: dict[str, list] | None = None) -> dict[str, Any]:
    """Run built-in ``name`` on the private frame; raises :class:`Blocked` or :class:`InvalidInput`."""
    parsed = ARGS[name].model_validate(args)
    df = select(df, parsed.where)
    if name == "count":
        n = int(len(df) if parsed.column is None else _column(df, parsed.column).notna().sum())
        disclosure.check_cohort(n, rules)
        return {"n": n}
    if name in ("sum", "mean", "variance"):
        x = _numeric(df, parsed.column)
        n = len(x)
        disclosure.check_cohort(n, rules)
        if name == "sum":
            return {"n": n, "sum": float(x.sum())}
        mean = float(x.mean())
        if name == "mean":
            return {"n": n, "mean": mean}
        return {"n": n, "mean": mean, "m2": float(((x - mean) ** 2).sum())}
    if name == "histogram":
        return _cells(_numeric(df, parsed.column), parsed.bins, rules)
    if name == "quantiles":
        return _cumulative(_numeric(df, parsed.column), parsed.bins, rules)
    if name == "crosstab":
        return _crosstab(df, parsed.row, parsed.col, rules, levels or {})
    raise InvalidInput(f"unknown built-in {name!r}")


def _crosstab(df: pd.DataFrame, row: str, col: str, rules: DisclosureSection,
              levels: dict[str, list]) -> dict[str, Any]:
    """Counts over the public levels only; rarer levels are pooled into '(other)' so their names stay hidden."""
    pair = df[[_column(df, row).name, _column(df, col).name]].dropna()
    disclosure.check_cohort(len(pair), rules)
    labels = []
    for name in (row, col):
        public = levels.get(name)
        values = pair[name]
        if public is None:
            raise InvalidInput(f"column {name!r} is not categorical; crosstab needs categories")
        known = values.isin(public)
        labels.append((public + (["(other)"] if (~known).any() else []),
                       values.where(known, "(other)")))
    (rl, rv), (cl, cv) = labels
    table = pd.crosstab(pd.Categorical(rv, categories=rl), pd.Categorical(cv, categories=cl),
                        dropna=False).reindex(index=rl, columns=cl, fill_value=0).to_numpy()
    hidden = disclosure.suppress(table, rules.min_cell_count)
    counts = [[None if hidden[i, j] else int(table[i, j]) for j in range(table.shape[1])]
              for i in range(table.shape[0])]
    return {"n": int(len(pair)), "rows": _plain(rl), "cols": _plain(cl), "counts": counts,
            "suppressed": int(hidden.sum())}


def _plain(values: list) -> list:
    return [v.item() if hasattr(v, "item") else v for v in values]


__all__ = ["ARGS", "Blocked", "compute", "validate_args", "select"]
