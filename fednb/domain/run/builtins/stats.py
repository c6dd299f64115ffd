"""The descriptive built-ins, returning sufficient statistics the analyst can pool exactly.

``mean`` returns (n, mean); ``variance`` returns (n, mean, M2) so pooled variances are exact
(Chan, Golub & LeVeque, 1979); sums, means and M2 pass the dominance and p% rules; histograms and
crosstabs return counts with small cells suppressed and the suppression audited by linear
programming (:func:`fednb.domain.release.disclosure.protect`);
``quantiles`` returns merged cumulative counts for the refinement protocol in
:mod:`fednb.federated.quantiles`. Each records the rows behind its result (and its cells) in
``ctx.evidence`` for the differencing defence (:mod:`fednb.domain.release.differencing`).

Each runs as SQL in the dataset's engine (:mod:`fednb.domain.data.engines`): sums, counts and the
largest contributions come back as numbers and the row ids in pieces, so no built-in here holds the
table in memory. Histogram and quantile cells are found with NumPy on the streamed values, exactly
as ``numpy.histogram`` places them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field, field_validator
from pyroaring import BitMap

from fednb.domain.data.engines.base import ROW_ID
from fednb.domain.release import disclosure
from fednb.domain.release.disclosure import Blocked
from fednb.domain.run.builtins.registry import Args, Context, increasing, register
from fednb.domain.run.builtins.scan import (
    SPAN,
    Cells,
    Scan,
    evidence,
    kept_codes,
    magnitude_reason,
    magnitude_settled,
)
from fednb.errors import InvalidInput
from fednb.locale import N_

EPS = float(np.finfo(float).eps)


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


def _bin_ids(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Cell of each value: 0 below the first edge, i for [edge[i-1], edge[i]) (the last bin closed, as
    ``numpy.histogram``), len(edges) above the last edge."""
    e = np.asarray(edges, dtype=float)
    ids = np.searchsorted(e, values, side="right")
    ids[values == e[-1]] = len(e) - 1
    return ids


def _values(scan: Scan, name: str) -> tuple[str, str]:
    """(the column as floats, the condition that it has a value) in SQL."""
    return scan.schema.numeric(name), scan.schema.present(name)


def _pieces(scan: Scan, name: str):
    """(row ids, values) of the selected rows where ``name`` has a value, piece by piece."""
    value, present = _values(scan, name)
    for piece in scan.arrays(f"{value} AS v", extra=present):
        yield piece[ROW_ID], piece["v"].astype(float, copy=False)


def _summed(scan: Scan, name: str) -> tuple[str, str]:
    """As :func:`_values`, with a float column's test written ``x <= +inf``: false for NULL and for NaN,
    which DuckDB, PostgreSQL and Spark all order above every number, so the same rows, in one
    comparison where ``NOT isnan(x)`` calls a function per row (a quarter of a mean's CPU at 10M rows)."""
    value, present = _values(scan, name)
    if scan.schema.columns[name].upper() in ("DOUBLE", "FLOAT", "REAL"):
        present = f"{scan.schema.column(name)} <= CAST('Infinity' AS DOUBLE)"
    return value, present


def _sums(scan: Scan, expr: str, present: str, ctx: Context,
          bound: float | None = None) -> tuple[int, float, float, list, tuple | None]:
    """(count, sum, sum of absolute values, the largest absolute values, the selection's span) of
    ``expr`` over the selection, in one pass; the few largest values in a second pass only when
    their bound cannot already show that the magnitude rules hold. ``bound``: one already known for
    every row (the file's statistics), else the pass also sums the squares for one. The span (count,
    first and last row id) is None when it must be asked: over a file of N numbered rows a selection
    of N rows is every row, so its first and last ids are not read in the pass."""
    numbered = scan.engine.numbered_rows()
    extra_sums = "" if bound is not None else f", sum(({expr}) * ({expr}))"
    found = scan.one(f"count(*), sum({expr}), sum(abs({expr})){extra_sums}{'' if numbered else ', ' + SPAN}",
                     extra=present)
    n, total, total_abs = int(found[0]), found[1], found[2]
    if numbered:
        span = (n, 0, numbered - 1) if n == numbered else None
    else:
        span = (n, found[-2], found[-1])
    if n == 0:
        return 0, 0.0, 0.0, [], (0, None, None)
    total, total_abs = float(total), float(total_abs)
    if bound is None:
        squares = float(found[3])
        # no value's square exceeds the sum of all the squares, less its rounding (Higham, *Accuracy and
        # Stability of Numerical Algorithms*, 2002, §4.2); a sum aggregate is cheaper than DuckDB's max
        bound = math.sqrt(squares * (1 + 8 * n * EPS)) * (1 + 4 * EPS) if math.isfinite(squares) else math.inf
    return n, total, total_abs, _largest(scan, expr, [], present, ctx, n, total_abs, bound), span


def _largest(scan: Scan, expr: str, params: list, present: str, ctx: Context, n: int, total_abs: float,
             bound: float) -> list:
    """The largest absolute values of ``expr`` as the magnitude rules need them: ``bound`` (at least
    the largest) where the rules hold whatever the others are (:func:`magnitude_settled`), else the
    top values read in one more pass. A bound above the largest only settles fewer sums (the rules
    are monotone in it), so the decisions are those of the exact values."""
    if magnitude_settled(n, total_abs, bound, ctx.rules):
        return [bound]
    top = max(ctx.rules.safe_nk_n, 2)
    (tops,) = scan.one(f"max(abs({expr}), {top})", params, extra=present)
    return list(tops)


def _check_magnitude(n: int, total_abs: float, tops: list, ctx: Context, what: str) -> None:
    """Refuse a sum that one or two rows dominate ((n,k)-dominance, p% rule), as
    :func:`fednb.domain.release.disclosure.check_magnitude` does on all the values."""
    reason = magnitude_reason(n, total_abs, tops, ctx.rules)
    if reason is not None:
        raise Blocked(N_("{what} cannot be released: {reason}, so it would reveal one row's value; "
                         "widen the selection or use a column no row dominates").format(what=what, reason=reason))


def count(a: CountArgs, scan: Scan, ctx: Context) -> dict[str, Any]:
    rows = scan.rows(None if a.column is None else scan.schema.present(a.column))
    n = len(rows)
    disclosure.check_cohort(n, ctx.rules)
    ctx.evidence["rows"] = evidence(rows)
    return {"n": n}


def _moments(a: ColumnArgs, scan: Scan, ctx: Context, what: str) -> tuple[int, float]:
    value, present = _summed(scan, a.column)
    n, total, total_abs, tops, span = _sums(scan, value, present, ctx, scan.engine.largest_magnitude(a.column))
    disclosure.check_cohort(n, ctx.rules)
    _check_magnitude(n, total_abs, tops, ctx, N_("the {what} of {column!r}").format(what=what, column=a.column))
    ctx.evidence["rows"] = evidence(scan.rows(present, span))
    return n, total


def sum_(a: ColumnArgs, scan: Scan, ctx: Context) -> dict[str, Any]:
    n, total = _moments(a, scan, ctx, N_("sum"))
    return {"n": n, "sum": total}


def mean(a: ColumnArgs, scan: Scan, ctx: Context) -> dict[str, Any]:
    n, total = _moments(a, scan, ctx, N_("mean"))
    return {"n": n, "mean": total / n}


def variance(a: ColumnArgs, scan: Scan, ctx: Context) -> dict[str, Any]:
    n, total = _moments(a, scan, ctx, N_("variance"))
    m = total / n
    value, present = _summed(scan, a.column)
    # M2 is a sum too: one outlier's squared deviation can dominate it and give that value away.
    # Its terms are squares, so their sum is their sum of absolute values, and the span is the mean's;
    # d·d is the correctly rounded square pow(d, 2) gives, without a function call per row.
    d = f"({value} - CAST(? AS DOUBLE))"
    square = f"({d} * {d})"
    m2, fourth = (float(v) for v in scan.one(f"sum({square}), sum({square} * {square})", [m] * 6, extra=present))
    bound = math.sqrt(fourth * (1 + 8 * n * EPS)) * (1 + 4 * EPS) if math.isfinite(fourth) else math.inf
    tops = _largest(scan, square, [m] * 2, present, ctx, n, m2, bound)
    _check_magnitude(n, m2, tops, ctx, N_("the variance of {column!r}").format(column=a.column))
    return {"n": n, "mean": m, "m2": m2}


def histogram(a: BinArgs, scan: Scan, ctx: Context) -> dict[str, Any]:
    edges = a.bins
    cells = Cells(len(edges) + 1)
    for ids, values in _pieces(scan, a.column):
        cells.add(ids, _bin_ids(values, edges))
    n = int(cells.counts.sum())
    disclosure.check_cohort(n, ctx.rules)
    hidden = disclosure.protect(cells.counts[None, :], ctx.rules, margins=(True, False))[0]
    ctx.evidence["rows"] = evidence(cells.all_rows())
    ctx.evidence["cells"] = cells.evidence(hidden, free=True)
    shown = [None if h else int(c) for c, h in zip(cells.counts, hidden)]
    return {"n": n, "edges": list(edges), "below": shown[0], "counts": shown[1:-1], "above": shown[-1],
            "suppressed": int(hidden.sum())}


def quantiles(a: BinArgs, scan: Scan, ctx: Context) -> dict[str, Any]:
    """Counts of values below each edge, at the edges that keep every bin empty or >= min_cell_count.

    Adjacent small bins are merged rather than suppressed, so every released count is exact and
    none can be recovered from its neighbours. The analyst's quantile protocol refines on these.
    The groups between kept edges are remembered as cells by the differencing defence.
    """
    edges = np.asarray(a.bins, dtype=float)
    # one pass: fine cell j holds the values with exactly j edges at or below them, so the count
    # below edge i is the total of fine cells 0..i, and each kept group is a union of fine cells
    fine = Cells(edges.size + 1)
    for ids, values in _pieces(scan, a.column):
        fine.add(ids, np.searchsorted(edges, values, side="right"))
    below = np.cumsum(fine.counts)[:edges.size]  # values < edge
    n = int(fine.counts.sum())
    disclosure.check_cohort(n, ctx.rules)
    k = ctx.rules.min_cell_count
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
    groups = Cells(len(kept_edges) + 1)
    owner = np.searchsorted(np.asarray(kept, dtype=np.int64), np.arange(edges.size + 1), side="left")
    for j in np.flatnonzero(fine.counts):  # group of fine cell j: the kept edges below its values
        groups.rows[owner[j]] |= fine.rows[j]
        fine.rows[j] = BitMap()
    groups.counts = np.bincount(owner, weights=fine.counts, minlength=len(kept) + 1).astype(np.int64)
    ctx.evidence["rows"] = evidence(groups.all_rows())
    ctx.evidence["cells"] = groups.evidence(np.zeros(groups.counts.size, dtype=bool), free=True)
    return {"n": n, "edges": kept_edges, "below": [int(below[i]) for i in kept]}


def _codes(scan: Scan, name: str, public: list) -> tuple[str, list]:
    """SQL giving each row the position of its value among the public levels, or len(public) for
    any other (rarer, hidden) value; the levels are parameters."""
    ident = scan.schema.column(name)
    whens = " ".join(f"WHEN {ident} = ? THEN {i}" for i in range(len(public)))
    return (f"CASE {whens} ELSE {len(public)} END" if public else "0"), list(public)


def _streamed_cells(scan: Scan, a: CrosstabArgs, publics: list[list]) -> Cells:
    """The cells of the selected rows, from each row's id and cell number streamed out of the engine."""
    (r_sql, r_params), (c_sql, c_params) = (_codes(scan, n, p) for n, p in zip((a.row, a.col), publics))
    width = len(publics[1]) + 1
    raw = Cells((len(publics[0]) + 1) * width)
    present = f"{scan.schema.present(a.row)} AND {scan.schema.present(a.col)}"
    for piece in scan.arrays(f"{r_sql} * {width} + {c_sql} AS cell", [*r_params, *c_params], extra=present):
        raw.add(piece[ROW_ID], piece["cell"])
    return raw


def _kept_cells(scan: Scan, a: CrosstabArgs, publics: list[list]) -> Cells | None:
    """The same cells as the selection intersected with the rows of each pair of levels, which the
    engine keeps per column (:func:`fednb.domain.run.builtins.scan.kept_codes`); None where it keeps none.
    A row without a value in either column has the code after every level and is in no cell."""
    codes = []
    for name, public in zip((a.row, a.col), publics):
        text, params = _codes(scan, name, public)
        codes.append((f"CASE WHEN {scan.schema.present(name)} THEN {text} ELSE {len(public) + 1} END",
                      params, len(public) + 2))
    kept = kept_codes(scan, codes)
    if kept is None:
        return None
    selection = scan.rows()
    width = len(publics[1]) + 1
    raw = Cells((len(publics[0]) + 1) * width)
    for i, level_rows in enumerate(kept[0][:-1]):
        chosen = selection & level_rows
        for j, other_rows in enumerate(kept[1][:-1]):
            raw.rows[i * width + j] = chosen & other_rows
            raw.counts[i * width + j] = len(raw.rows[i * width + j])
    return raw


def crosstab(a: CrosstabArgs, scan: Scan, ctx: Context) -> dict[str, Any]:
    """Counts over the public levels only; rarer levels are pooled into '(other)' so their names stay
    hidden. A column crossed with itself is a valid (diagonal) table."""
    publics = []
    for name in (a.row, a.col):
        scan.schema.column(name)
        public = ctx.levels.get(name)
        if public is None:
            raise InvalidInput(N_("column {name!r} is not categorical; crosstab needs categories").format(name=name))
        publics.append(list(public))
    width = len(publics[1]) + 1
    raw = _kept_cells(scan, a, publics) or _streamed_cells(scan, a, publics)
    n = int(raw.counts.sum())
    disclosure.check_cohort(n, ctx.rules)
    grid = raw.counts.reshape(-1, width)
    keep_r = [i for i in range(grid.shape[0]) if i < len(publics[0]) or grid[i].sum() > 0]
    keep_c = [j for j in range(width) if j < len(publics[1]) or grid[:, j].sum() > 0]
    table = grid[np.ix_(keep_r, keep_c)]
    cells = Cells(table.size)
    cells.counts = table.reshape(-1).copy()
    cells.rows = [raw.rows[i * width + j] for i in keep_r for j in keep_c]
    del raw  # the kept cells' bitmaps now live in ``cells`` alone, and are freed as they are serialized
    hidden = disclosure.protect(table, ctx.rules)
    ctx.evidence["rows"] = evidence(cells.all_rows())
    ctx.evidence["cells"] = cells.evidence(hidden.reshape(-1), free=True)
    counts = [[None if hidden[i, j] else int(table[i, j]) for j in range(table.shape[1])]
              for i in range(table.shape[0])]
    labels = [[*p, *(["(other)"] if len(keep) > len(p) else [])] for p, keep in zip(publics, (keep_r, keep_c))]
    return {"n": n, "rows": labels[0], "cols": labels[1], "counts": counts, "suppressed": int(hidden.sum())}


for _name, _args, _fn in [("count", CountArgs, count), ("sum", ColumnArgs, sum_), ("mean", ColumnArgs, mean),
                          ("variance", ColumnArgs, variance), ("histogram", BinArgs, histogram),
                          ("quantiles", BinArgs, quantiles), ("crosstab", CrosstabArgs, crosstab)]:
    register(_name, _args, _fn, sql=True)
