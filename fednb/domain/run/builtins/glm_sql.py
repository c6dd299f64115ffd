"""One IRLS step of the ``glm`` built-in as aggregate queries in the dataset's engine, out of core.

The same numbers as the in-memory path of :mod:`fednb.domain.run.builtins.glm` (McCullagh & Nelder,
*Generalized Linear Models*, 2nd ed. 1989, §2.5): for the coefficients β the analyst sends, the
engine computes η = Xβ, μ, the working weights w and response z of the family row by row, and sums
w·xᵢ·xⱼ (i ≤ j), w·xᵢ·z, the deviance, Pearson's χ², the log-likelihood and y in one streaming
pass, so memory stays bounded whatever the table's length (DuckDB spills, PostgreSQL and Spark
aggregate in their own process). The design's columns come from :mod:`.design_sql`; β and every
other analyst value are ``?`` parameters.

The disclosure checks' aggregates (:mod:`.glm_sql_checks`) come from the same pass on a fit's
first round, and with the rows' evidence they are kept for the next rounds while the engine reads a
file the domain holds, so a later round is one pass over the rows.
"""

from __future__ import annotations

import json
import math
import threading
import weakref
from collections import OrderedDict
from typing import Any

import numpy as np
from pyroaring import BitMap

from fednb.domain.data.engines.base import ROW_ID
from fednb.domain.release import disclosure
from fednb.domain.run.builtins import design_sql, glm_sql_checks
from fednb.domain.run.builtins.design_sql import FINITE, ONE, ZERO, Expr, SqlDesign, fill
from fednb.domain.run.builtins.scan import Scan, bitmap, evidence

EPS = repr(float(np.finfo(float).eps))
#: above this many design columns the p(p+1)/2 sums make one query too long to plan; the in-memory path runs
MAX_SQL_COLUMNS = 100


def rows_query(d: SqlDesign, scan: Scan) -> Expr:
    """The kept rows of the selection: row id, design columns x0.., outcome y and raw categorical c0.."""
    cols = [Expr(f"{ROW_ID} AS rid"), *(fill(f"{{e}} AS x{i}", e=e) for i, e in enumerate(d.columns)),
            fill("{e} AS y", e=d.outcome), *(Expr(f"{ident} AS c{i}") for i, ident in enumerate(d.categorical.values()))]
    select = ", ".join(c.text for c in cols)
    inner = Expr(f"SELECT {select} FROM data WHERE ({scan.test}) AND {d.present.text}",
                 (*(p for c in cols for p in c.params), *scan.params, *d.present.params))
    finite = " AND ".join(f"abs({x}) <= {FINITE}" for x in
                          [*(f"x{i}" for i, c in enumerate(d.columns) if c.text != ONE), "y"])
    return fill(f"SELECT * FROM ({{inner}}) AS kept WHERE {finite}", inner=inner)


def _exp(x: str) -> str:
    """exp(x), 0 where it underflows and NULL where it overflows (NumPy's inf)."""
    return (f"CASE WHEN {x} < {design_sql.EXP_UNDERFLOW} THEN {ZERO} "
            f"WHEN {x} <= {design_sql.EXP_LIMIT} THEN exp({x}) END")


def _ln(x: str) -> str:
    return f"CASE WHEN {x} > 0 THEN ln({x}) END"


def _ylogy(y: str, mu: str) -> str:
    """y log(y / μ), 0 where y is 0 (NULL where μ is 0 and y is not, as NumPy's infinity)."""
    y, mu = f"({y})", f"({mu})"
    return f"CASE WHEN {y} > 0 THEN (CASE WHEN {mu} > 0 THEN {y} * ln({y} / {mu}) END) ELSE {ZERO} END"


def _mu(family: str, beta: list[float] | None, p: int) -> tuple[Expr, str]:
    """(η as SQL over x0.. and y with β as parameters, μ as SQL over eta), as ``glm.FAMILIES``."""
    if beta is None:  # the family's start: μ from y, then η = link(μ)
        start = {"gaussian": ZERO, "binomial": "((y + 0.5) / 2)", "poisson": "(y + 0.1)"}[family]
        link = {"gaussian": start, "binomial": _ln(f"({start} / NULLIF(1 - {start}, 0))"), "poisson": _ln(start)}[family]
        return Expr(link), start
    eta = Expr("(" + " + ".join(f"CAST(? AS DOUBLE) * x{i}" for i in range(p)) + ")", tuple(float(b) for b in beta))
    expit = f"CASE WHEN eta >= 0 THEN 1 / (1 + {_exp('(- eta)')}) ELSE {_exp('eta')} / (1 + {_exp('eta')}) END"
    mu = {"gaussian": "eta", "binomial": f"greatest(least({expit}, 1 - {EPS}), {EPS})",
          "poisson": _exp("eta")}[family]
    return eta, mu


def _times(*factors: str | None) -> str:
    """The sum over rows of a product, with factors that are 1 on every row (None) left out: 1·a is a
    exactly, so the sum is the same number; the product of none is the count."""
    kept = [f for f in factors if f is not None]
    return f"sum({' * '.join(kept)})" if kept else "count(*)"


def irls_query(rows: Expr, d: SqlDesign, family: str, beta: list[float] | None,
               checks: bool = False) -> tuple[Expr, dict[str, str]]:
    """One IRLS step's sums over the kept rows at ``beta`` (None: the family's start), and ``bad``,
    the rows where a working quantity is not finite (NumPy's inf or NaN, NULL here); with
    ``checks``, the disclosure checks' aggregates in the same pass. Returns the query and, per
    name, its column: a sum asked for twice (Σx in the checks and in XᵀX) is computed once.

    The Gaussian start (β = 0) has w = 1 and z = y on every row, so its sums are written without
    them: XᵀX, Xᵀy and yᵀy, the same numbers as the general expressions give, in one plain pass."""
    p = len(d.names)
    xs: list[str | None] = [None if c.text == ONE else f"x{i}" for i, c in enumerate(d.columns)]
    if family == "gaussian" and beta is None:
        frame, w, wz, dev, pearson, loglik = rows, None, "y", "y * y", "y * y", None
        finite = [f"abs({dev}) <= {FINITE}"]
    else:
        frame, loglik = _working(rows, family, beta, p)
        w, wz, dev, pearson = "w", "wz", "dev", "pearson"
        finite = [f"abs({q}) <= {FINITE}" for q in ["w", "z", "wz", "pearson", "dev", *(["ll"] if loglik else [])]]
    # the Gaussian start's one non-finite quantity is y·y, which overflows on some row exactly when on
    # the row of the largest |y|: with the checks' max(abs(y)) in the pass, :func:`sums` finds ``bad``
    derived = family == "gaussian" and beta is None and checks
    aggregates = [] if derived else [("bad", f"sum(CASE WHEN {' AND '.join(finite)} THEN 0 ELSE 1 END)")]
    # (xᵢ·w)·xⱼ and xᵢ·(w·z): the products in the in-memory path's order
    aggregates += [(f"xwx_{i}_{j}", _times(xs[i], w, xs[j])) for i in range(p) for j in range(i, p)]
    aggregates += [(f"xwz_{i}", _times(xs[i], wz)) for i in range(p)]
    aggregates += [("deviance", f"sum({dev})"), ("pearson_chi2", f"sum({pearson})"), ("y_sum", "sum(y)")]
    if loglik:
        aggregates.append(("loglik", "sum(ll)"))
    exprs = [(name, Expr(sql)) for name, sql in aggregates]
    if checks:
        constant = {f"x{i}" for i, x in enumerate(xs) if x is None}
        exprs += [(name, Expr(sql)) for name, sql in glm_sql_checks.aggregates(d.binary, family, constant)]
        exprs += glm_sql_checks.level_aggregates(d)
    columns: dict[Expr, str] = {}
    for _name, expr in exprs:
        columns.setdefault(expr, f"a{len(columns)}")
    select = Expr(", ".join(f"{e.text} AS {alias}" for e, alias in columns.items()),
                  tuple(v for e in columns for v in e.params))
    query = fill("SELECT {select} FROM ({q}) AS j", select=select, q=frame)
    return query, {name: columns[expr] for name, expr in exprs}


def _working(rows: Expr, family: str, beta: list[float] | None, p: int) -> tuple[Expr, str | None]:
    """The kept rows with η, μ, the working weight w and response z, w·z, and each row's Pearson
    residual², deviance and log-likelihood terms; and the log-likelihood's SQL (None: the Gaussian's)."""
    eta, mu = _mu(family, beta, p)
    gprime, variance = {"gaussian": (ONE, ONE), "binomial": ("mu * (1 - mu)", "mu * (1 - mu)"),
                        "poisson": ("mu", "mu")}[family]
    deviance = {"gaussian": "(y - mu) * (y - mu)",
                "binomial": f"2 * (({_ylogy('y', 'mu')}) + ({_ylogy('1 - y', '1 - mu')}))",
                "poisson": f"2 * (({_ylogy('y', 'mu')}) - (y - mu))"}[family]
    loglik = {"gaussian": None, "binomial": f"y * ({_ln('mu')}) + (1 - y) * ({_ln('(1 - mu)')})",
              "poisson": f"CASE WHEN y > 0 THEN (CASE WHEN mu > 0 THEN y * ln(mu) END) ELSE {ZERO} END - mu"}[family]
    per_row = ["w * z AS wz", "(y - mu) * (y - mu) / NULLIF(v, 0) AS pearson", f"{deviance} AS dev",
               *([f"{loglik} AS ll"] if loglik else [])]
    with_mu = fill(f"SELECT *, {mu} AS mu FROM (SELECT *, {{eta}} AS eta FROM ({{rows}}) AS d) AS e", eta=eta, rows=rows)
    with_g = fill(f"SELECT *, {gprime} AS g, {variance} AS v FROM ({{mu}}) AS f", mu=with_mu)
    with_w = fill("SELECT *, g * g / NULLIF(v, 0) AS w, eta + (y - mu) / NULLIF(g, 0) AS z FROM ({g}) AS h", g=with_g)
    return fill(f"SELECT *, {', '.join(per_row)} FROM ({{w}}) AS i", w=with_w), loglik


def sums(scan: Scan, query: tuple[Expr, dict[str, str]]) -> dict[str, Any]:
    """The one row of :func:`irls_query`'s query, by name."""
    text, columns = query
    row = one(scan, text)
    out = {name: row[column] for name, column in columns.items()}
    if "bad" not in out:
        largest = glm_sql_checks.number(out["max_abs_y"])
        out["bad"] = 0 if math.isfinite(largest * largest) else 1
    return out


def _gammaln_sum(scan: Scan, rows: Expr) -> float:
    """Σ log Γ(y + 1) over the kept rows, from the counts of each outcome value (scipy's gammaln, as
    the in-memory path; PostgreSQL and Spark have no lgamma)."""
    from scipy.special import gammaln

    counts = scan.engine.query(f"SELECT y, count(*) AS c FROM ({rows.text}) AS r GROUP BY y", list(rows.params))
    return float(np.sum(gammaln(counts["y"].to_numpy(dtype=float) + 1) * counts["c"].to_numpy(dtype=float)))


def _rows_evidence(scan: Scan, rows: Expr, n: int, first: Any, last: Any) -> dict[str, Any]:
    """The kept rows' ids as the differencing defence's record; one run of ids is known from its ends."""
    whole = BitMap()
    if n and int(last) - int(first) + 1 == n:
        whole.add_range(int(first), int(last) + 1)
        return evidence(whole)
    for piece in scan.engine.batches(f"SELECT rid FROM ({rows.text}) AS r", list(rows.params)):
        whole |= bitmap(piece["rid"].to_numpy())
    return evidence(whole)


one = glm_sql_checks.one


class Facts:
    """What one design over one selection shows whatever β is: the checks' aggregates, the rows the
    filter selects, the small-groups verdict, the rows' evidence and Σ log Γ(y + 1). A fit asks for
    them every round; each is computed once (per engine over a file the domain holds, see
    :func:`facts`)."""

    def __init__(self, scan: Scan, rows: Expr, d: SqlDesign, rules: Any, stats: dict[str, Any]):
        self.rows, self.d, self.rules, self.stats = rows, d, rules, stats
        self.n = int(stats["n"])
        self.selected = int(scan.one("count(*)")[0])
        self._verdict: list[str | None] = []
        self._evidence: dict[str, Any] | None = None
        self._gammaln: float | None = None

    def check_small_groups(self, scan: Scan) -> None:
        if not self._verdict:
            try:
                glm_sql_checks.check_small_groups(scan, self.rows, self.d, self.stats, self.rules)
                self._verdict.append(None)
            except disclosure.Blocked as exc:
                self._verdict.append(str(exc))
        if self._verdict[0] is not None:
            raise disclosure.Blocked(self._verdict[0])

    def evidence(self, scan: Scan) -> dict[str, Any]:
        if self._evidence is None:
            self._evidence = _rows_evidence(scan, self.rows, self.n, self.stats["first"], self.stats["last"])
        return self._evidence

    def gammaln(self, scan: Scan) -> float:
        if self._gammaln is None:
            self._gammaln = _gammaln_sum(scan, self.rows)
        return self._gammaln


_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()
CACHED_FACTS = 8  # per engine: the designs of the fits under way


def step(scan: Scan, d: SqlDesign, rules: Any, family: str, beta: list[float] | None) -> tuple[Facts, Any]:
    """The :class:`Facts` of ``d`` over the scan's selection, and a function giving the IRLS step's
    sums at ``beta``. On a first round both come from one pass; the facts are kept for the next
    rounds only while the engine reads a Parquet file the domain holds: a worker reopens it (a new
    engine, a new cache) when the file changes, whereas an owner's database table may change under
    the same engine."""
    from fednb.domain.data.engines.duckdb import ParquetEngine

    rows, p = rows_query(d, scan), len(d.names)
    cacheable = isinstance(scan.engine, ParquetEngine)
    key = (rows.text, rows.params, family, json.dumps(rules.model_dump(), sort_keys=True, default=str))
    with _cache_lock:
        kept = _cache.setdefault(scan.engine, OrderedDict()) if cacheable else OrderedDict()
        if key in kept:
            kept.move_to_end(key)
            known = kept[key]
            return known, lambda: sums(scan, irls_query(rows, d, family, beta))
    usable = beta is None or (len(beta) == p and bool(np.all(np.isfinite(beta))))
    stats = sums(scan, irls_query(rows, d, family, beta if usable else None, checks=True))
    known = Facts(scan, rows, d, rules, glm_sql_checks.complete(dict(stats), d.binary))
    if cacheable:
        with _cache_lock:
            kept[key] = known
            while len(kept) > CACHED_FACTS:
                kept.popitem(last=False)
    return known, lambda: stats
