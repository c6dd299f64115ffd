"""Cox regression's risk-set sums (the ``coxph`` built-in) as aggregate queries in the dataset's engine.

The same numbers and refusals as the in-memory path (:func:`fednb.domain.run.builtins.survival.coxph`),
computed where the rows are, so memory does not grow with them. The design's columns are the GLM's
SQL expressions (:mod:`.design_sql`, the intercept left out: it cancels in the partial likelihood,
Cox 1972); the engine computes w = exp(xβ) row by row with β as ``?`` parameters.

- **On a time grid**, one pass sums per interval of the grid this round asks for (a row's interval
  is found by a binary search written as nested ``CASE``, at most nine comparisons for the 500
  points a grid may have, so at most 501 groups) the count, the events, w, w·x, w·x·xᵀ, Efron's
  same sums over the events (Efron 1977), the events' x, and what the disclosure checks read (0/1
  columns' counts of ones, each level's rows). The intervals released are unions of consecutive
  ones (merged so that no count is small), so their sums are added up here in NumPy and the risk
  sets are reverse cumulative sums, as in :func:`fednb.partial_likelihood.risk_sums`.
- **Stratified by domain** (exact times; only the log-likelihood, gradient and Hessian leave) the
  distinct times may be as many as the rows, so nothing per time comes out: the engine sums per
  time, takes the risk sets as window sums from the last time back, ranks each time's tied events
  for Efron's shares, and returns one row (:func:`_partial_likelihood`); a first pass gives the
  checks' aggregates. DuckDB sorts and aggregates out of core; PostgreSQL and Spark in their own
  processes. Measured cost: DuckDB 1.5 computes each window sum apart, about a second per million
  distinct times each (1 + p + p(p+1)/2 of them, twice with Efron's): whole days are few distinct
  times and cheap, times to the second by the million take minutes (3M rows, 5 terms: 89 s Breslow,
  134 s Efron, with 512 MiB; out of memory under 64 MiB). A grid has no such cost.

The rows behind the result are remembered by the differencing defence, as a GLM's
(:func:`fednb.domain.run.builtins.scan.evidence`); a selection that is one run of row ids is known
from its ends without streaming an id.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
from pyroaring import BitMap

from fednb import formula as formulas
from fednb import partial_likelihood as pl
from fednb.domain.data.engines import sql
from fednb.domain.data.engines.base import ROW_ID
from fednb.domain.release import disclosure
from fednb.domain.run.builtins import design_sql, survival
from fednb.domain.run.builtins.design_sql import EXP_LIMIT, EXP_UNDERFLOW, FINITE, ONE, ZERO, Expr, SqlDesign, fill
from fednb.domain.run.builtins.registry import Context, register, used_columns
from fednb.domain.run.builtins.scan import Scan, bitmap, evidence
from fednb.errors import InvalidInput
from fednb.locale import N_


class Model:
    """The design over the engine: the model columns x0.. (intercept left out), the duration t, the
    event e, and the query of the rows the in-memory path keeps."""

    def __init__(self, a: survival.CoxArgs, scan: Scan, d: SqlDesign, selected: int):
        self.selected = selected  # the rows the filter selects, kept or not
        keep = [j for j, name in enumerate(d.names) if name != "Intercept"]
        self.names = [d.names[j] for j in keep]
        self.columns = [d.columns[j] for j in keep]
        aliases = {name: f"c{i}" for i, name in enumerate(d.categorical)}
        # the levels' columns in the order of levels=, as the in-memory checks read them
        self.levels = {name: aliases[name] for name in a.levels if name in aliases}
        self.asked = {name: list(a.levels[name]) for name in self.levels}
        schema = scan.schema
        event = schema.numeric(a.event)
        cols = [Expr(f"{ROW_ID} AS rid"), *(fill(f"{{e}} AS x{i}", e=e) for i, e in enumerate(self.columns)),
                fill("{e} AS t", e=d.outcome), Expr(f"CASE WHEN {event} > 0 THEN {ONE} ELSE {ZERO} END AS e"),
                *(Expr(f"{ident} AS c{i}") for i, ident in enumerate(d.categorical.values()))]
        inner = Expr(f"SELECT {', '.join(c.text for c in cols)} FROM data WHERE ({scan.test}) AND "
                     f"{d.present.text} AND {schema.present(a.event)}",
                     (*(v for c in cols for v in c.params), *scan.params, *d.present.params))
        finite = " AND ".join(f"abs({x}) <= {FINITE}" for x in [*self.xs, "t"])
        self.rows = fill(f"SELECT * FROM ({{inner}}) AS kept WHERE {finite}", inner=inner)

    @property
    def xs(self) -> list[str]:
        return [f"x{i}" for i in range(len(self.names))]


def _interval(grid: np.ndarray, lo: int = 0, hi: int | None = None) -> Expr:
    """How many grid points lie below t (NumPy's ``searchsorted(grid, t, "left")``), by bisection."""
    hi = len(grid) if hi is None else hi
    if lo == hi:
        return Expr(str(lo))
    mid = (lo + hi) // 2
    below, above = _interval(grid, lo, mid), _interval(grid, mid + 1, hi)
    return Expr(f"CASE WHEN t <= CAST(? AS DOUBLE) THEN {below.text} ELSE {above.text} END",
                (float(grid[mid]), *below.params, *above.params))


def _weighted(m: Model, beta: np.ndarray | None) -> Expr:
    """The kept rows with w = exp(xβ): 0 where it underflows (as NumPy), NULL where it overflows
    (counted as ``bad``); β None: w = 1 (the checks' pass, which reads no sum of w)."""
    if beta is None:
        return fill(f"SELECT *, {ONE} AS w FROM ({{rows}}) AS r", rows=m.rows)
    eta = Expr(" + ".join(f"CAST(? AS DOUBLE) * {x}" for x in m.xs), tuple(float(b) for b in beta))
    with_eta = fill("SELECT *, {eta} AS eta FROM ({rows}) AS r", eta=eta, rows=m.rows)
    return fill(f"SELECT *, CASE WHEN eta < {EXP_UNDERFLOW} THEN {ZERO} WHEN eta <= {EXP_LIMIT} THEN exp(eta) END "
                "AS w FROM ({with_eta}) AS h", with_eta=with_eta)


def _aggregates(m: Model, efron: bool, sums: bool) -> list[str]:
    """Counts, the row ids' ends, the events' x, the checks' aggregates and (``sums``) the risk sums."""
    xs, p = m.xs, len(m.names)
    pairs = [(i, j) for i in range(p) for j in range(i, p)]
    out = ["count(*) AS n", "sum(e) AS d", "min(rid) AS first", "max(rid) AS last"]
    out += [f"sum(e * {x}) AS ex_{i}" for i, x in enumerate(xs)]
    if sums:
        out += ["sum(CASE WHEN w IS NULL THEN 1 ELSE 0 END) AS bad", "sum(w) AS s0"]
        out += [f"sum(w * {x}) AS s1_{i}" for i, x in enumerate(xs)]
        out += [f"sum({xs[i]} * w * {xs[j]}) AS s2_{i}_{j}" for i, j in pairs]
    if sums and efron:
        out += ["sum(e * w) AS e0", *(f"sum(e * w * {x}) AS e1_{i}" for i, x in enumerate(xs))]
        out += [f"sum(e * {xs[i]} * w * {xs[j]}) AS e2_{i}_{j}" for i, j in pairs]
    # the disclosure checks: rows off 0/1, and the sum (the count of ones where there are none)
    out += [f"sum(CASE WHEN {x} = 0 OR {x} = 1 THEN 0 ELSE 1 END) AS odd_{i}" for i, x in enumerate(xs)]
    out += [f"sum({x}) AS sum_{i}" for i, x in enumerate(xs)]
    return out


def _grouped(m: Model, beta: np.ndarray | None, key: Expr, efron: bool) -> Expr:
    """Per group of rows (``key`` over the kept rows' columns), every sum one round needs at ``beta``
    (None: only the counts and the checks' aggregates)."""
    level_counts = []
    params: list[Any] = []  # they sit in the SELECT, ahead of the subquery's
    for c, (name, alias) in enumerate(m.levels.items()):
        for v, level in enumerate(m.asked[name]):
            level_counts.append(f"sum(CASE WHEN {alias} = ? THEN 1 ELSE 0 END) AS level_{c}_{v}")
            params.append(level)
    select = ", ".join([*_aggregates(m, efron, beta is not None), *level_counts])
    weighted = fill("SELECT *, {key} AS g FROM ({rows}) AS r", key=key, rows=_weighted(m, beta))
    return fill(f"SELECT g, {select} FROM ({{weighted}}) AS q GROUP BY g",
                weighted=Expr(weighted.text, (*params, *weighted.params)))


def _sums(frame: Any, name: str, p: int, upper: bool = False) -> np.ndarray:
    """Per group, a vector (``x_0..``) or a symmetric matrix (``x_i_j``, i <= j) of sums."""
    g = len(frame)
    if not upper:
        return np.column_stack([frame[f"{name}_{i}"].to_numpy(dtype=float) for i in range(p)]) if p else np.zeros((g, 0))
    out = np.zeros((g, p, p))
    for i in range(p):
        for j in range(i, p):
            out[:, i, j] = out[:, j, i] = frame[f"{name}_{i}_{j}"].to_numpy(dtype=float)
    return out


class Totals:
    """What the checks and the evidence read, summed over the groups."""

    def __init__(self, p: int, levels: dict[str, list]):
        """``levels``: per categorical column, the levels whose rows are counted."""
        self.n, self.events, self.first, self.last = 0, 0, None, None
        self.odd, self.ones, self.xsum = np.zeros(p, dtype=np.int64), np.zeros(p), np.zeros(p)
        self.levels = {name: np.zeros(len(values), dtype=np.int64) for name, values in levels.items()}

    def add(self, frame: Any) -> None:
        if not len(frame):
            return
        self.n += int(frame["n"].sum())
        self.events += int(round(float(frame["d"].sum())))
        first, last = int(frame["first"].min()), int(frame["last"].max())
        self.first = first if self.first is None else min(self.first, first)
        self.last = last if self.last is None else max(self.last, last)
        for i in range(len(self.odd)):
            self.odd[i] += int(frame[f"odd_{i}"].sum())
            self.ones[i] += float(frame[f"sum_{i}"].sum())
            self.xsum[i] += float(frame[f"ex_{i}"].sum())
        for c, name in enumerate(self.levels):
            for v in range(len(self.levels[name])):
                self.levels[name][v] += int(frame[f"level_{c}_{v}"].sum())

    def check(self, names: list[str], rules: Any) -> None:
        disclosure.check_cohort(self.n, rules, N_("the rows with every model column present"))
        ones = [int(self.ones[i]) if self.odd[i] == 0 else None for i in range(len(names))]
        survival.check_small_counts(names, ones, self.events, self.n, self.levels, rules)

    def evidence(self, scan: Scan, m: Model) -> dict[str, Any]:
        """The kept rows' ids; one run of ids is known from its ends."""
        whole = BitMap()
        if self.n and self.last - self.first + 1 == self.n:
            whole.add_range(self.first, self.last + 1)
            return evidence(whole)
        for piece in scan.engine.batches(f"SELECT rid FROM ({m.rows.text}) AS r", list(m.rows.params)):
            whole |= bitmap(piece["rid"].to_numpy())
        return evidence(whole)


_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()
CACHED = 24  # per engine: a few facts for each of the fits under way


def remembered(scan: Scan, key: tuple, compute: Callable[[], Any]) -> Any:
    """What the rows show whatever β is (the selection's count, the checks' aggregates, the rows'
    evidence), computed once per fit and kept for its next rounds, but only while the engine reads
    a Parquet file the domain holds: a worker reopens it (a new engine) when the file changes,
    whereas an owner's database table may change under the same engine (as the GLM's facts)."""
    from fednb.domain.data.engines.duckdb import ParquetEngine

    if not isinstance(scan.engine, ParquetEngine):
        return compute()
    key = tuple(repr(k) for k in key)  # levels and constants of any type, compared as written
    with _cache_lock:
        kept = _cache.setdefault(scan.engine, OrderedDict())
        if key in kept:
            kept.move_to_end(key)
            return kept[key]
    value = compute()
    with _cache_lock:
        kept[key] = value
        while len(kept) > CACHED:
            kept.popitem(last=False)
    return value


def _translatable(a: survival.CoxArgs, scan: Scan, spec: formulas.Spec, public: dict[str, list]) -> SqlDesign | None:
    columns = scan.schema.columns
    if a.event not in columns or not sql.is_numeric(columns[a.event]):
        return None
    if spec.outcome in a.levels and spec.outcome not in spec.variables:
        return None  # the in-memory checks count the duration's values then
    return design_sql.compile_design(spec, scan.schema, a.levels, public)


def coxph_in_engine(a: survival.CoxArgs, scan: Scan, ctx: Context) -> dict[str, Any]:
    """The round in the dataset's engine; what :func:`_translatable` refuses runs in memory."""
    spec = formulas.parse(a.formula)
    survival.check_event_apart(a, spec)
    d = _translatable(a, scan, spec, ctx.levels)
    if d is None:
        return survival.coxph(a, scan.frame([*used_columns(a, scan.schema.columns)]), ctx)
    event, present = scan.schema.numeric(a.event), scan.schema.present(a.event)
    query = f"count(*), count(*) FILTER (WHERE {present} AND {event} <> 0 AND {event} <> 1)"
    selected, odd = remembered(scan, ("selection", query, scan.test, *scan.params), lambda: scan.one(query))
    if int(odd):
        raise survival.event_error(a.event)
    m = Model(a, scan, d, int(selected))
    survival.check_width(m.names)
    p = len(m.names)
    usable = a.beta is None or (len(a.beta) == p and bool(np.all(np.isfinite(a.beta))))
    beta = np.asarray(a.beta, dtype=float) if a.beta is not None and usable else np.zeros(p)
    if a.stratified:
        return _stratified(a, scan, ctx, m, beta, usable)
    return _on_grid(a, scan, ctx, m, beta, usable)


def _common(a: survival.CoxArgs, scan: Scan, ctx: Context, m: Model, totals: Totals) -> dict[str, Any]:
    """The checks and the evidence, in the in-memory path's order, and the fields every round has."""
    totals.check(m.names, ctx.rules)
    ctx.evidence["rows"] = remembered(scan, ("evidence", m.rows.text, *m.rows.params), lambda: totals.evidence(scan, m))
    survival.check_beta(a, m.names)
    return {"n": totals.n, **disclosure.dropped_rows(m.selected - totals.n, ctx.rules), "columns": m.names,
            "events": totals.events}


def _on_grid(a: survival.CoxArgs, scan: Scan, ctx: Context, m: Model, beta: np.ndarray, usable: bool) -> dict[str, Any]:
    try:
        _, grid = survival.chosen_grid(a)
        problem = None
    except InvalidInput as exc:  # raised after the checks, as in memory
        grid, problem = np.zeros(0), exc
    efron = a.ties == "efron"
    frame = scan.engine.query(*_query(_grouped(m, beta, _interval(grid), efron)))
    totals = Totals(len(m.names), m.asked)
    totals.add(frame)
    out = _common(a, scan, ctx, m, totals)
    if problem is not None:
        raise problem
    mm = len(grid)
    g = frame["g"].to_numpy(dtype=np.int64)
    rows, events = np.zeros(mm + 1, dtype=np.int64), np.zeros(mm + 1, dtype=np.int64)
    rows[g], events[g] = frame["n"].to_numpy(dtype=np.int64), np.rint(frame["d"].to_numpy(dtype=float)).astype(np.int64)
    inside, censored = events[:mm].copy(), rows[:mm] - events[:mm]
    censored[mm - 1] += rows[mm]  # rows beyond the grid: censored at its end (pl.bin_rows)
    points, _ = survival.points_from_counts(a, inside, censored, totals.n, len(m.names), ctx.rules)
    chosen, _ = survival.chosen_grid(a)
    kept = np.searchsorted(np.asarray(chosen), np.asarray(points))  # kept positions in the chosen grid
    coarse = np.searchsorted(kept, g, side="left")  # released interval of each: kept points below its rows
    if not usable:
        return {**out, "points": points, "finite": False}
    with np.errstate(all="ignore"):
        r = _coarse_sums(frame, coarse, len(points), len(m.names), efron)
    if int(frame["bad"].sum()):
        return {**out, "points": points, "finite": False}
    return survival.sums_release(out, points, r, a.ties)


def _query(q: Expr) -> tuple[str, list[Any]]:
    return q.text, list(q.params)


def _coarse_sums(frame: Any, coarse: np.ndarray, q: int, p: int, efron: bool) -> pl.RiskSums:
    """:func:`fednb.partial_likelihood.risk_sums` from the sums per fine interval: each fine interval
    lies in one released interval (``coarse``, q: beyond the last), whose sums are theirs added."""
    def by_coarse(values: np.ndarray, size: int) -> np.ndarray:
        """Added up per released interval: q + 1 with the rows beyond (risk sets), q without (events)."""
        out = np.zeros((size, *values.shape[1:]))
        inside = coarse < size
        np.add.at(out, coarse[inside], values[inside])
        return out

    s0 = by_coarse(frame["s0"].to_numpy(dtype=float), q + 1)
    s1, s2 = by_coarse(_sums(frame, "s1", p), q + 1), by_coarse(_sums(frame, "s2", p, upper=True), q + 1)
    s0, s1, s2 = (np.cumsum(x[::-1], axis=0)[::-1][:q] for x in (s0, s1, s2))
    d = by_coarse(frame["d"].to_numpy(dtype=float), q)
    xsum = _sums(frame, "ex", p)[coarse < q].sum(axis=0)
    if efron:
        e0, e1 = by_coarse(frame["e0"].to_numpy(dtype=float), q), by_coarse(_sums(frame, "e1", p), q)
        e2 = by_coarse(_sums(frame, "e2", p, upper=True), q)
    else:
        e0, e1, e2 = np.zeros(q), np.zeros((q, p)), np.zeros((q, p, p))
    return pl.RiskSums(d, s0, s1, s2, e0, e1, e2, xsum)


def _window(column: str) -> str:
    """The sum of ``column`` over this time and every later one: the risk set's (Cox 1972)."""
    return f"sum({column}) OVER (ORDER BY g DESC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"


def _partial_likelihood(m: Model, beta: np.ndarray, most_tied: int | None) -> Expr:
    """One row: Σ log a0, Σ a1/a0 and Σ (a2/a0 − (a1/a0)(a1/a0)ᵀ) over the events, where (a0, a1, a2)
    are the risk set's sums at the event's exact time, less the share (l/d) of its d tied events'
    own sums for the l-th of them with Efron's ties (Efron 1977; none with Breslow's, 1974, whose d
    terms are one term counted d times), and ``bad``, the terms that are not finite (an exp(xβ)
    that overflowed in the risk set, a risk set summing to 0): :func:`fednb.partial_likelihood.
    loglik_gradient_hessian` without the events' Σ xβ, which NumPy adds. ``most_tied``: with Efron's
    ties, the most events at one time (None: Breslow's)."""
    xs, p, efron = m.xs, len(m.names), most_tied is not None
    pairs = [(i, j) for i in range(p) for j in range(i, p)]
    own = [("s0", "w"), *((f"s1_{i}", f"w * {x}") for i, x in enumerate(xs)),
           *((f"s2_{i}_{j}", f"{xs[i]} * w * {xs[j]}") for i, j in pairs)]
    sums = [f"sum({sql}) AS {name}" for name, sql in own]
    if efron:  # the same sums over the events alone
        sums += [f"sum(e * {sql}) AS e{name[1:]}" for name, sql in own]
    weighted = _weighted(m, beta)
    per_time = fill(f"SELECT t AS g, sum(e) AS d, sum(CASE WHEN w IS NULL THEN 1 ELSE 0 END) AS bad, "
                    f"{', '.join(sums)} FROM ({{weighted}}) AS q GROUP BY t", weighted=weighted)
    risk_columns = [f"{_window(name)} AS r{name[1:]}" for name, _ in own]
    kept_columns = [f"e{name[1:]}" for name, _ in own] if efron else []
    risk = fill(f"SELECT g, d, {_window('bad')} AS cb, {', '.join([*risk_columns, *kept_columns])} "
                "FROM ({per_time}) AS pt", per_time=per_time)
    if most_tied:  # the l-th (from 0) of a time's d tied events, l numbered by the first rows' positions
        # a count the domain computed, written as a literal: Spark SQL takes no parameter in LIMIT
        numbers = Expr(f"SELECT row_number() OVER () - 1 AS l FROM data LIMIT {int(most_tied)}")
        events = fill("SELECT rs.*, CAST(ls.l AS DOUBLE) / rs.d AS f, 1 AS k FROM ({risk}) AS rs "
                      "JOIN ({numbers}) AS ls ON ls.l < rs.d", risk=risk, numbers=numbers)
        shares = [f"r{name[1:]} - f * e{name[1:]} AS a{name[1:]}" for name, _ in own]
    else:
        events = fill("SELECT *, d AS k FROM ({risk}) AS rs WHERE d > 0", risk=risk)
        shares = [f"r{name[1:]} AS a{name[1:]}" for name, _ in own]
    terms = fill(f"SELECT k, cb, {', '.join(shares)} FROM ({{events}}) AS ev", events=events)
    means = [f"a1_{i} / NULLIF(a0, 0) AS m{i}" for i in range(p)]
    scaled = fill(f"SELECT *, {', '.join(means)} FROM ({{terms}}) AS tm", terms=terms)
    out = ["sum(CASE WHEN cb > 0 OR NOT (a0 > 0) THEN 1 ELSE 0 END) AS bad",
           "sum(k * CASE WHEN a0 > 0 THEN ln(a0) END) AS loglik",
           *(f"sum(k * m{i}) AS g{i}" for i in range(p)),
           *(f"sum(k * (a2_{i}_{j} / NULLIF(a0, 0) - m{i} * m{j})) AS h{i}_{j}" for i, j in pairs)]
    return fill(f"SELECT {', '.join(out)} FROM ({{scaled}}) AS sc", scaled=scaled)


def _stratified(a: survival.CoxArgs, scan: Scan, ctx: Context, m: Model, beta: np.ndarray,
                usable: bool) -> dict[str, Any]:
    """Exact times: the checks' aggregates in one pass, then the partial likelihood's value, gradient
    and Hessian wholly in the engine (its sort and windows spill; one row comes out)."""
    p = len(m.names)
    totals = Totals(p, m.asked)
    checks = _grouped(m, None, Expr("0"), False)
    totals.add(remembered(scan, ("checks", checks.text, *checks.params), lambda: scan.engine.query(*_query(checks))))
    out = _common(a, scan, ctx, m, totals)
    survival.check_stratified_size(totals.n, p, ctx.rules)
    if not usable:
        return {**out, "finite": False}
    most_tied = None
    if a.ties == "efron":
        tied = fill("SELECT max(c) AS c FROM (SELECT count(*) AS c FROM ({rows}) AS r WHERE e = 1 GROUP BY t) AS g",
                    rows=m.rows)
        most_tied = int(remembered(scan, ("tied", tied.text, *tied.params),
                                   lambda: scan.engine.query(*_query(tied)))["c"].fillna(0).iloc[0])
    row = scan.engine.query(*_query(_partial_likelihood(m, beta, most_tied))).iloc[0]
    if int(row["bad"] or 0):
        return {**out, "finite": False}
    xsum = totals.xsum
    upper = np.array([float(row[f"h{i}_{j}"]) for i in range(p) for j in range(i, p)])
    hess = np.zeros((p, p))
    hess[np.triu_indices(p)] = -upper
    hess = hess + np.triu(hess, 1).T
    grad = xsum - np.array([float(row[f"g{i}"]) for i in range(p)])
    with np.errstate(all="ignore"):
        return survival.stratified_release(out, float(xsum @ beta) - float(row["loglik"]), grad, hess)


register("coxph", survival.CoxArgs, coxph_in_engine, round_inputs=survival.CoxRound, sql=True)
