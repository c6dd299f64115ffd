"""The descriptive built-ins, returning sufficient statistics the analyst can pool exactly.

``mean`` returns (n, mean); ``variance`` returns (n, mean, M2) so pooled variances are exact
(Chan, Golub & LeVeque, 1979); histograms and crosstabs return counts with small cells suppressed;
``quantiles`` returns merged cumulative counts for the refinement protocol in
:mod:`fednb.federated.quantiles`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from fednb.domain.release import disclosure
from fednb.domain.review.policy import DisclosureSection
from fednb.domain.run.builtins.registry import Args, Context, column, numeric, register
from fednb.errors import InvalidInput


class CountArgs(Args):
    column: str | None = None


class ColumnArgs(Args):
    column: str


class BinArgs(ColumnArgs):
    bins: list[float] = Field(min_length=2, max_length=1001)

    @field_validator("bins")
    @classmethod
    def _increasing(cls, v: list[float]) -> list[float]:
        if any(not np.isfinite(x) for x in v) or any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError("bins must be finite and strictly increasing")
        return v


class CrosstabArgs(Args):
    row: str
    col: str


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


def count(a: CountArgs, df: pd.DataFrame, ctx: Context) -> dict[str, Any]:
    n = int(len(df) if a.column is None else column(df, a.column).notna().sum())
    disclosure.check_cohort(n, ctx.rules)
    return {"n": n}


def _moments(a: ColumnArgs, df: pd.DataFrame, ctx: Context) -> tuple[np.ndarray, int]:
    x = numeric(df, a.column)
    disclosure.check_cohort(len(x), ctx.rules)
    return x, len(x)


def sum_(a: ColumnArgs, df: pd.DataFrame, ctx: Context) -> dict[str, Any]:
    x, n = _moments(a, df, ctx)
    return {"n": n, "sum": float(x.sum())}


def mean(a: ColumnArgs, df: pd.DataFrame, ctx: Context) -> dict[str, Any]:
    x, n = _moments(a, df, ctx)
    return {"n": n, "mean": float(x.mean())}


def variance(a: ColumnArgs, df: pd.DataFrame, ctx: Context) -> dict[str, Any]:
    x, n = _moments(a, df, ctx)
    m = float(x.mean())
    return {"n": n, "mean": m, "m2": float(((x - m) ** 2).sum())}


def histogram(a: BinArgs, df: pd.DataFrame, ctx: Context) -> dict[str, Any]:
    return _cells(numeric(df, a.column), a.bins, ctx.rules)


def quantiles(a: BinArgs, df: pd.DataFrame, ctx: Context) -> dict[str, Any]:
    return _cumulative(numeric(df, a.column), a.bins, ctx.rules)


def crosstab(a: CrosstabArgs, df: pd.DataFrame, ctx: Context) -> dict[str, Any]:
    return _crosstab(df, a.row, a.col, ctx.rules, ctx.levels)


def _crosstab(df: pd.DataFrame, row: str, col: str, rules: DisclosureSection,
              levels: dict[str, list]) -> dict[str, Any]:
    """Counts over the public levels only; rarer levels are pooled into '(other)' so their names stay hidden."""
    pair = df[[column(df, row).name, column(df, col).name]].dropna()
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


for _name, _args, _fn in [("count", CountArgs, count), ("sum", ColumnArgs, sum_), ("mean", ColumnArgs, mean),
                          ("variance", ColumnArgs, variance), ("histogram", BinArgs, histogram),
                          ("quantiles", BinArgs, quantiles), ("crosstab", CrosstabArgs, crosstab)]:
    register(_name, _args, _fn)
