"""The GLM's small-group and dominance checks from SQL aggregates, deciding as the in-memory ones.

The in-memory path (:func:`fednb.domain.run.builtins.glm._check_small_groups`) looks at every value
of every model column and of the outcome. Here one streaming pass gives, per column, its count, sum,
sum of squares and largest absolute value M (the sums are those of XᵀX where the step has them, so
the checks add one aggregate per column), and those settle nearly every column exactly; only a
column they cannot settle costs another query, which reads what the rule reads:

- **rows off the most common value** (refused when 1..k-1, k = ``min_cell_count``). If all but at
  most k-1 of n rows share a value m, the sum of squared deviations from the mean is at most that
  from m, (k-1)·(max-min)² ≤ (k-1)·(2M)²; a column whose sum of squares about the mean exceeds this
  (by more than the rounding of the sums, n·ε·Σx²; Higham, *Accuracy and Stability of Numerical
  Algorithms*, 2002, §4.2) has at least k rows off any value. Otherwise, with n ≥ 2k-1, such an m is
  both the k-th smallest and the k-th largest value, so the k smallest and k largest values
  (``min(x, k)``, ``max(x, k)``) name the one candidate and a count of it decides; with fewer rows
  every value is counted (``GROUP BY``).
- **dominance and p%** (:mod:`fednb.domain.release.magnitude`). The n largest absolute values sum to
  at most n·M, so a total of absolute values large enough against M passes both rules. That total
  is at least Σx²/M (each x² ≤ M·|x|), so nearly every column settles without its own sum of
  absolute values; for the rest that sum and the largest absolute values are read
  (``max(abs(x), n)``) and :func:`fednb.domain.run.builtins.scan.magnitude_reason` decides.
- **each agreed level's rows**, counted in the same pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fednb.domain.release import disclosure
from fednb.domain.run.builtins.design_sql import Expr, SqlDesign
from fednb.domain.run.builtins.scan import Scan, magnitude_reason
from fednb.locale import N_

EPS = float(np.finfo(float).eps)


def aggregates(binary: list[bool], family: str, constant: set[str] = frozenset()) -> list[tuple[str, str]]:
    """(name, SQL) of what one pass gives the checks: counts, the row ids' ends, the outcome's kind
    where the family needs it, and per column x0.. and y its sum, sum of squares and ends (of a 0/1
    column only its sum, the count of ones: :func:`complete` derives the rest; a ``constant`` column
    is 1 on every row, so its sum is the count). Written as the IRLS sums write the same sums, so a
    query asks for each once."""
    out = [("n", "count(*)"), ("first", "min(rid)"), ("last", "max(rid)")]
    if family == "binomial":
        out.append(("not_binary", "sum(CASE WHEN y = 0 OR y = 1 THEN 0 ELSE 1 END)"))
    if family == "poisson":
        out.append(("negative", "sum(CASE WHEN y < 0 THEN 1 ELSE 0 END)"))
    out += [(f"s1_{name}", "count(*)" if name in constant else f"sum({name})")
            for name in [*(f"x{i}" for i in range(len(binary))), "y"]]
    for name in [*(f"x{i}" for i, is_binary in enumerate(binary) if not is_binary), "y"]:
        out += [(f"s2_{name}", f"sum({name} * {name})"), (f"max_abs_{name}", f"max(abs({name}))")]
    return out


def level_aggregates(d: SqlDesign) -> list[tuple[str, Expr]]:
    """(name, SQL) of each kept level's count of rows, for :func:`_level_counts` (the level a ``?``)."""
    return [(f"level_{i}_{j}", Expr(f"sum(CASE WHEN c{i} = ? THEN 1 ELSE 0 END)", (level,)))
            for i, name in enumerate(d.categorical) for j, level in enumerate(d.kept_levels.get(name, []))]


def complete(stats: dict[str, Any], binary: list[bool]) -> dict[str, Any]:
    """The aggregates of each 0/1 column from its count of ones: sum of squares and of absolute
    values are that count, its largest absolute value 1 if it has a one."""
    for i, is_binary in enumerate(binary):
        if is_binary:
            ones = number(stats[f"s1_x{i}"])
            stats.update({f"s2_x{i}": ones, f"abs_x{i}": ones, f"max_abs_x{i}": 1.0 if ones > 0 else 0.0})
    return stats


def check_small_groups(scan: Scan, rows: Expr, d: SqlDesign, stats: dict[str, Any], rules: Any) -> None:
    """Raise ``Blocked`` as the in-memory checks would: rows off the mode, then dominance, then levels."""
    columns = {**{f"x{i}": name for i, name in enumerate(d.names)}, "y": "y"}
    binary = {f"x{i}" for i, is_binary in enumerate(d.binary) if is_binary}
    _off_mode(scan, rows, stats, columns, binary, rules.min_cell_count)
    _magnitudes(scan, rows, stats, columns, binary, rules)
    _level_counts(stats, d, rules.min_cell_count)


def one(scan: Scan, query: Expr) -> dict[str, Any]:
    """The one row of an aggregate query, by lower-case column name."""
    frame = scan.engine.query(query.text, list(query.params))
    return {str(c).lower(): frame[c].iloc[0] for c in frame.columns}


def number(value: Any) -> float:
    return 0.0 if value is None or (isinstance(value, float) and np.isnan(value)) else float(value)


def _values(value: Any) -> list[float]:
    """A list aggregate's values (NULL when there were no rows)."""
    return [float(v) for v in value] if isinstance(value, (list, tuple, np.ndarray)) else []


def _spread_settles(stats: dict[str, Any], alias: str, n: int, k: int) -> bool:
    """True when the column's spread about its mean shows at least k rows off any one value."""
    s1, s2 = np.float64(number(stats[f"s1_{alias}"])), np.float64(number(stats[f"s2_{alias}"]))
    largest = np.float64(number(stats[f"max_abs_{alias}"]))
    with np.errstate(all="ignore"):
        spread = s2 - s1 * s1 / n
        bound = (k - 1) * (2 * largest) ** 2 + 8 * n * EPS * s2
        return bool(np.isfinite(spread) and np.isfinite(bound) and spread > bound)


def _blocked_small(alias: str, name: str, k: int) -> disclosure.Blocked:
    where = N_("the outcome") if alias == "y" else N_("the model column {name!r}").format(name=name)
    return disclosure.Blocked(
        N_("{where} differs from its most common value on fewer than {k} rows here, under the minimum "
           "cell count; merge rare levels, drop the term or widen the selection").format(where=where, k=k))


def _off_mode(scan: Scan, rows: Expr, stats: dict[str, Any], columns: dict[str, str], binary: set[str],
              k: int) -> None:
    n = int(stats["n"])
    if n == 0:
        return
    unsettled = []
    for alias in columns:
        if alias in binary:  # a 0/1 column's most common value is the more frequent of the two
            ones = int(number(stats[f"s1_{alias}"]))
            if n - max(ones, n - ones) in range(1, k):
                raise _blocked_small(alias, columns[alias], k)
        elif not _spread_settles(stats, alias, n, k):
            unsettled.append(alias)
    if not unsettled:
        return
    if n < 2 * k - 1:
        for alias in unsettled:
            counts = scan.engine.query(
                f"SELECT max(c) AS c FROM (SELECT count(*) AS c FROM ({rows.text}) AS r GROUP BY {alias}) AS g",
                list(rows.params))
            if int(n - counts["c"].iloc[0]) in range(1, k):
                raise _blocked_small(alias, columns[alias], k)
        return
    ends = ", ".join(f"min({a}, {k}) AS low_{a}, max({a}, {k}) AS high_{a}" for a in unsettled)
    found = one(scan, Expr(f"SELECT {ends} FROM ({rows.text}) AS r", rows.params))
    candidates = {}
    for alias in unsettled:
        low, high = _values(found[f"low_{alias}"]), _values(found[f"high_{alias}"])
        if low[k - 1] == high[k - 1]:
            candidates[alias] = low[k - 1]
    if candidates:
        sums = ", ".join(f"sum(CASE WHEN {alias} = ? THEN 1 ELSE 0 END) AS {alias}" for alias in candidates)
        counted = one(scan, Expr(f"SELECT {sums} FROM ({rows.text}) AS r", (*candidates.values(), *rows.params)))
        for alias in candidates:
            if int(n - counted[alias]) in range(1, k):
                raise _blocked_small(alias, columns[alias], k)


def _magnitudes(scan: Scan, rows: Expr, stats: dict[str, Any], columns: dict[str, str], binary: set[str],
                rules: Any) -> None:
    n, nk, top = int(stats["n"]), rules.safe_nk_n, max(rules.safe_nk_n, 2)
    unsettled = []
    for alias in columns:
        if alias in binary:  # its largest values are ones, as many as it has (up to top)
            continue
        first = number(stats[f"max_abs_{alias}"])
        if first <= 0:  # every value is 0: an empty sum passes both rules
            continue
        # a lower bound of the total of absolute values, less the rounding of both sums (Higham 2002, §4.2)
        total = number(stats[f"s2_{alias}"]) / first * (1 - 8 * n * EPS)
        # the nk largest sum to at most nk·first, the second is at most first
        dominance_passes = np.isfinite(total) and n > nk and nk * first <= rules.safe_nk_k * total
        p_passes = (total - first) - first >= rules.safe_pratio_p * first
        if not (dominance_passes and p_passes):
            unsettled.append(alias)
    found = {alias: [1.0] * min(top, int(number(stats[f"s1_{alias}"]))) for alias in binary}
    if unsettled:
        tops = one(scan, Expr(", ".join(f"sum(abs({a})) AS abs_{a}, max(abs({a}), {top}) AS top_{a}"
                                        for a in unsettled).join(("SELECT ", f" FROM ({rows.text}) AS r")),
                              rows.params))
        found.update({alias: _values(tops[f"top_{alias}"]) for alias in unsettled})
        stats.update({f"abs_{alias}": tops[f"abs_{alias}"] for alias in unsettled})
    for alias in columns:  # in the in-memory order: the first column refused is the one named
        if alias not in found:
            continue
        reason = magnitude_reason(n, number(stats[f"abs_{alias}"]), found[alias], rules)
        if reason is not None:
            where = "the outcome" if alias == "y" else f"the model column {columns[alias]!r}"
            raise disclosure.Blocked(N_("{what} cannot be released: {reason}, so it would reveal one row's value; "
                                        "widen the selection or use a column no row dominates").format(
                what=f"the sums of {where}", reason=reason))


def _level_counts(stats: dict[str, Any], d: SqlDesign, k: int) -> None:
    for i, name in enumerate(d.categorical):
        c = np.array([number(stats[f"level_{i}_{j}"]) for j in range(len(d.kept_levels.get(name, [])))])
        if ((c > 0) & (c < k)).any():
            raise disclosure.Blocked(N_("a level of {name!r} has fewer than {k} rows here, under the minimum "
                                        "cell count; merge rare levels or leave them out of levels=").format(
                name=name, k=k))
