"""The descriptive built-ins, returning sufficient statistics the analyst can pool exactly.

``mean`` returns (n, mean); ``variance`` returns (n, mean, M2) so pooled variances are exact
(Chan, Golub & LeVeque, 1979); sums, means and M2 pass the dominance and p% rules; histograms and
crosstabs return counts with small cells suppressed and the suppression audited by linear
programming (:func:`fednb.domain.release.disclosure.protect`);
``quantiles`` returns merged cumulative counts for the refinement protocol in
:mod:`fednb.federated.quantiles`. Each records the rows behind its result (and its cells) in
``ctx.evidence`` for the differencing defence (:mod:`fednb.domain.release.differencing`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from fednb.domain.release import differencing, disclosure
from fednb.domain.run.builtins.registry import Args, Context, column, increasing, numeric, register
from fednb.errors import InvalidInput
from fednb.locale import N_


class CountArgs(Args):
    column: str | None = None


class ColumnArgs(Args):
    column: str


class BinArgs(ColumnArgs):
    bins: list[float] = Field(min_length=2, max_length=1001)

    @field_validator("bins")
    @classmethod
    def _increasing(cls, v: list[float]) -> list[float]:
        return increasing(v, "bins")


class CrosstabArgs(Args):
    row: str
    col: str


def numeric_rows(df: pd.DataFrame, name: str) -> tuple[np.ndarray, pd.Index]:
    """A column's non-missing values as floats, with the ids of their rows (for the differencing defence)."""
    s = column(df, name)
    values = numeric(df, name)
    return values, s.index[s.notna().to_numpy()]


def cell_evidence(index: pd.Index, ids: np.ndarray, counts: np.ndarray, hidden: np.ndarray) -> list[dict]:
    """The row sets of each shown non-empty cell and of the hidden cells together (known from ``n``).

    One stable sort groups the rows by cell, so this is O(rows log rows) whatever the number of cells.
    """
    order = np.argsort(ids, kind="stable")
    positions = np.asarray(index, dtype=np.int64)[order]
    starts = np.concatenate([[0], np.cumsum(counts)])
    sets = [differencing.evidence(positions[starts[c]:starts[c + 1]])
            for c in range(len(counts)) if counts[c] > 0 and not hidden[c]]
    if (counts[hidden] > 0).any():
        sets.append(differencing.evidence(positions[np.isin(ids[order], np.flatnonzero(hidden))]))
    return sets


def _bin_ids(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Cell of each value: 0 below the first edge, i for [edge[i-1], edge[i]) (the last bin closed, as
    ``numpy.histogram``), len(edges) above the last edge."""
    e = np.asarray(edges, dtype=float)
    ids = np.searchsorted(e, values, side="right")
    ids[values == e[-1]] = len(e) - 1
    return ids


def _cells(values: np.ndarray, index: pd.Index, edges: list[float], ctx: Context) -> dict[str, Any]:
    rules = ctx.rules
    n = len(values)
    disclosure.check_cohort(n, rules)
    ids = _bin_ids(values, edges)
    cells = np.bincount(ids, minlength=len(edges) + 1)
    hidden = disclosure.protect(cells[None, :], rules, margins=(True, False))[0]
    ctx.rows_used(index)
    ctx.evidence["cells"] = cell_evidence(index, ids, cells, hidden)
    shown = [None if h else int(c) for c, h in zip(cells, hidden)]
    return {"n": n, "edges": list(edges), "below": shown[0], "counts": shown[1:-1], "above": shown[-1],
            "suppressed": int(hidden.sum())}


def _cumulative(values: np.ndarray, index: pd.Index, edges: list[float], ctx: Context) -> dict[str, Any]:
    """Counts of values below each edge, at the edges that keep every bin empty or >= min_cell_count.

    Adjacent small bins are merged rather than suppressed, so every released count is exact and
    none can be recovered from its neighbours. The analyst's quantile protocol refines on these.
    The groups between kept edges are remembered as cells by the differencing defence.
    """
    rules = ctx.rules
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
    kept_edges = [float(edges[i]) for i in kept]
    ids = np.searchsorted(np.asarray(kept_edges), values, side="right")  # group of each value
    groups = np.bincount(ids, minlength=len(kept_edges) + 1)
    ctx.rows_used(index)
    ctx.evidence["cells"] = cell_evidence(index, ids, groups, np.zeros(groups.size, dtype=bool))
    return {"n": n, "edges": kept_edges, "below": [int(below[i]) for i in kept]}


def count(a: CountArgs, df: pd.DataFrame, ctx: Context) -> dict[str, Any]:
    rows = df.index if a.column is None else df.index[column(df, a.column).notna().to_numpy()]
    n = int(len(rows))
    disclosure.check_cohort(n, ctx.rules)
    ctx.rows_used(rows)
    return {"n": n}


def _moments(a: ColumnArgs, df: pd.DataFrame, ctx: Context, what: str) -> tuple[np.ndarray, int]:
    x, rows = numeric_rows(df, a.column)
    disclosure.check_cohort(len(x), ctx.rules)
    disclosure.check_magnitude(x, ctx.rules, N_("the {what} of {column!r}").format(what=what, column=a.column))
    ctx.rows_used(rows)
    return x, len(x)


def sum_(a: ColumnArgs, df: pd.DataFrame, ctx: Context) -> dict[str, Any]:
    x, n = _moments(a, df, ctx, N_("sum"))
    return {"n": n, "sum": float(x.sum())}


def mean(a: ColumnArgs, df: pd.DataFrame, ctx: Context) -> dict[str, Any]:
    x, n = _moments(a, df, ctx, N_("mean"))
    return {"n": n, "mean": float(x.mean())}


def variance(a: ColumnArgs, df: pd.DataFrame, ctx: Context) -> dict[str, Any]:
    x, n = _moments(a, df, ctx, N_("variance"))
    m = float(x.mean())
    squares = (x - m) ** 2
    # M2 is a sum too: one outlier's squared deviation can dominate it and give that value away
    disclosure.check_magnitude(squares, ctx.rules, N_("the variance of {column!r}").format(column=a.column))
    return {"n": n, "mean": m, "m2": float(squares.sum())}


def histogram(a: BinArgs, df: pd.DataFrame, ctx: Context) -> dict[str, Any]:
    values, rows = numeric_rows(df, a.column)
    return _cells(values, rows, a.bins, ctx)


def quantiles(a: BinArgs, df: pd.DataFrame, ctx: Context) -> dict[str, Any]:
    values, rows = numeric_rows(df, a.column)
    return _cumulative(values, rows, a.bins, ctx)


def crosstab(a: CrosstabArgs, df: pd.DataFrame, ctx: Context) -> dict[str, Any]:
    return _crosstab(df, a.row, a.col, ctx)


def _crosstab(df: pd.DataFrame, row: str, col: str, ctx: Context) -> dict[str, Any]:
    """Counts over the public levels only; rarer levels are pooled into '(other)' so their names stay hidden."""
    rules, levels = ctx.rules, ctx.levels
    pair = df[[column(df, row).name, column(df, col).name]].dropna()
    disclosure.check_cohort(len(pair), rules)
    labels = []
    for name in (row, col):
        public = levels.get(name)
        values = pair[name]
        if public is None:
            raise InvalidInput(N_("column {name!r} is not categorical; crosstab needs categories").format(name=name))
        known = values.isin(public)
        labels.append((public + (["(other)"] if (~known).any() else []),
                       values.where(known, "(other)")))
    (rl, rv), (cl, cv) = labels
    r_codes = pd.Categorical(rv, categories=rl).codes.astype(np.int64)
    c_codes = pd.Categorical(cv, categories=cl).codes.astype(np.int64)
    ids = r_codes * len(cl) + c_codes
    table = np.bincount(ids, minlength=len(rl) * len(cl)).reshape(len(rl), len(cl))
    hidden = disclosure.protect(table, rules)
    ctx.rows_used(pair.index)
    ctx.evidence["cells"] = cell_evidence(pair.index, ids, table.reshape(-1), hidden.reshape(-1))
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
