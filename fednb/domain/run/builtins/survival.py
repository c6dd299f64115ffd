"""Survival built-ins: Kaplan–Meier and log-rank counts, and Cox regression's risk-set sums.

``kaplan_meier`` and ``logrank`` release, per group and per interval of the analyst's time grid,
the number of events and of censorings; the analyst's side (:mod:`fednb.federated.survival`) pools
them into the product-limit estimate (Kaplan & Meier 1958) with Greenwood's variance, and into the
log-rank test (Mantel 1966; Peto & Peto 1972). ``coxph`` releases, for the coefficients of one
Newton–Raphson round, the partial likelihood's sums over risk sets (:mod:`fednb.partial_likelihood`).

Disclosure control, and why:
- exact event times are never released, only counts per interval of a grid the analyst chose;
- a group (or the whole selection) with fewer than ``min_cohort`` rows is **suppressed** (its curve
  is not released, with the reason), since its counts would describe a handful of people;
- an interval whose events or censorings number 1..``min_cell_count``−1 is **merged** with the
  next one (a coarser grid, :func:`fednb.partial_likelihood.coarsen`); the rows still followed after
  the last point must number 0 or at least ``min_cell_count`` too. Coarsening rather than cell
  suppression, because the at-risk numbers are cumulative sums of the exits, so a suppressed cell
  could be recovered by differencing, and a hidden cell would break the product-limit curve;
- Cox adds the GLM's rules: 0/1 columns and categorical levels on 1..k−1 rows are refused, and
  each released interval's risk set must hold ``rows_per_value`` rows per value released for it
  (later intervals are merged into the follow-up beyond the grid). With ``stratified`` (one
  stratum per domain) only the log-likelihood, gradient and Hessian leave, like a GLM round.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from fednb import formula as formulas
from fednb import partial_likelihood as pl
from fednb.domain.release import disclosure
from fednb.domain.review.policy import DisclosureSection
from fednb.domain.run.builtins.glm import public_levels_only
from fednb.domain.run.builtins.registry import Args, Context, Scalar, column, increasing
from fednb.errors import InvalidInput
from fednb.locale import N_

MAX_GRID = 500  # time points in a grid: a curve is read at far fewer; bounds the work and the output
MAX_GROUPS = 20  # groups of by=: a plot or a test with more is unreadable
MAX_PARAMETERS = 50


class KaplanMeierArgs(Args):
    duration: str
    event: str
    time_grid: list[float] = Field(min_length=1, max_length=MAX_GRID)
    by: str | None = None

    @field_validator("time_grid")
    @classmethod
    def _increasing(cls, v: list[float]) -> list[float]:
        return increasing(v, "time_grid")


class LogrankArgs(KaplanMeierArgs):
    by: str


def event_error(name: str) -> InvalidInput:
    return InvalidInput(N_("the event column {name!r} must be 0/1 or boolean (1: the event happened, 0: "
                           "censored)").format(name=name))


def duration_error(name: str) -> InvalidInput:
    return InvalidInput(N_("the duration column {duration!r} must be numeric (time to the event or to "
                           "censoring)").format(duration=name))


def _event(s: pd.Series, name: str) -> pd.Series:
    values = s.dropna()
    if pd.api.types.is_bool_dtype(s):
        return s.astype("float")
    if not pd.api.types.is_numeric_dtype(s) or not values.isin((0, 1)).all():
        raise event_error(name)
    return s.astype("float")


def _durations(df: pd.DataFrame, duration: str, event: str, extra: str | None) -> pd.DataFrame:
    """Rows with a finite duration and an event (and the group column), as floats and booleans."""
    t = column(df, duration)
    if pd.api.types.is_bool_dtype(t) or not pd.api.types.is_numeric_dtype(t):
        raise duration_error(duration)
    out = pd.DataFrame({"t": t.astype("float"), "e": _event(column(df, event), event)}, index=df.index)
    if extra is not None:
        out["g"] = column(df, extra)
    out = out[out.notna().all(axis=1) & np.isfinite(out["t"])]
    return out.assign(e=out["e"] > 0)


def _groups(frame: pd.DataFrame, by: str | None, levels: dict[str, list]) -> list[tuple[Any, np.ndarray]]:
    if by is None:
        return [("all", np.ones(len(frame), dtype=bool))]
    public = levels.get(by)
    if public is None:
        raise InvalidInput(f"column {by!r} has no public levels, so it cannot define groups; by= needs a "
                           "categorical column")
    if len(public) > MAX_GROUPS:
        raise InvalidInput(f"column {by!r} has {len(public)} levels; by= allows at most {MAX_GROUPS} groups")
    g = frame["g"]
    out = [(v.item() if hasattr(v, "item") else v, (g == v).to_numpy()) for v in public]
    other = ~g.isin(public).to_numpy()
    return out + ([("(other)", other)] if other.any() else [])


def counted(t: np.ndarray, e: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Events and censorings per interval of ``grid`` (rows beyond it censored at its end)."""
    index, e = pl.bin_rows(t, e, grid)
    return pl.exits(index, e, len(grid))


def _table(events: np.ndarray, censored: np.ndarray, n: int, grid: np.ndarray,
           rules: DisclosureSection) -> dict[str, Any]:
    kept = pl.coarsen(events, censored, n, rules.min_cell_count)
    return {"n": n, "points": kept, "events": pl.merge(events, kept).tolist(),
            "censored": pl.merge(censored, kept).tolist(), "merged": len(grid) - len(kept)}


def survival_table(a: KaplanMeierArgs, df: pd.DataFrame, ctx: Context) -> dict[str, Any]:
    """Events and censorings per interval of the grid, per group, coarsened or suppressed as above."""
    frame = _durations(df, a.duration, a.event, a.by)
    disclosure.check_cohort(len(frame), ctx.rules, N_("the rows with a duration and an event"))
    if (frame["t"] < 0).any():
        raise InvalidInput(N_("the duration column {duration!r} has negative values").format(duration=a.duration))
    grid = np.asarray(a.time_grid, dtype=float)
    t, e = frame["t"].to_numpy(), frame["e"].to_numpy()
    return release_groups(a, ctx, [(level, int(mask.sum()), *counted(t[mask], e[mask], grid))
                                   for level, mask in _groups(frame, a.by, ctx.levels)])


def release_groups(a: KaplanMeierArgs, ctx: Context,
                   groups_counted: list[tuple[Any, int, np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """The released table from each group's (level, rows, events, censorings per interval)."""
    grid = np.asarray(a.time_grid, dtype=float)
    groups = []
    for level, n, events, censored in groups_counted:
        if n == 0:
            groups.append({"level": level, "n": 0, "points": [], "events": [], "censored": [], "merged": 0})
        elif n < ctx.rules.min_cohort:
            groups.append({"level": level, "suppressed": f"the group {a.by}={level!r} has fewer than "
                                                         f"{ctx.rules.min_cohort} rows here (the domain's minimum "
                                                         "cohort), so its curve is not released"})
        else:
            groups.append({"level": level, **_table(events, censored, n, grid, ctx.rules)})
    released = [g for g in groups if "suppressed" not in g]
    if not any(g["n"] for g in released):
        raise disclosure.Blocked(groups[0].get("suppressed", "no group has enough rows to release a curve"))
    # the total is the released groups' total: with a group suppressed, the full count would give it away
    return {"n": sum(g["n"] for g in released), "groups": groups,
            "suppressed": sum("suppressed" in g for g in groups), "merged": sum(g.get("merged", 0) for g in released)}


def noisy_table(a: KaplanMeierArgs, df: pd.DataFrame, levels: dict[str, list], noise: Any,
                rng: np.random.Generator) -> list[dict[str, Any]]:
    """Events and censorings per interval of the whole grid, per group, each with noise.

    Every row (rows beyond the grid censored at its end) is in exactly one cell of this table, so
    adding or removing one changes one cell by 1: noise of sensitivity 1 on every cell at the full
    ε (parallel composition, Dwork & Roth 2014, §3.3). The shape depends only on the grid and the
    public levels ("(other)" is always there), so neither merging nor suppression is needed.
    """
    frame = _durations(df, a.duration, a.event, a.by)
    grid = np.asarray(a.time_grid, dtype=float)
    groups = _groups(frame, a.by, levels)
    if a.by is not None and groups[-1][0] != "(other)":
        groups.append(("(other)", np.zeros(len(frame), dtype=bool)))
    out = []
    for level, mask in groups:
        index, e = pl.bin_rows(frame["t"].to_numpy()[mask], frame["e"].to_numpy()[mask], grid)
        events, censored = pl.exits(index, e, len(grid))
        out.append({"level": level, "events": noise.release(events.astype(float), rng).tolist(),
                    "censored": noise.release(censored.astype(float), rng).tolist()})
    return out


# -- Cox regression ------------------------------------------------------------------------------

class CoxArgs(Args):
    formula: str = Field(max_length=formulas.MAX_LENGTH, description="'duration ~ terms'; the event apart")
    event: str
    ties: Literal["breslow", "efron"] = "efron"
    stratified: bool = False
    time_grid: list[float] | None = Field(None, min_length=1, max_length=MAX_GRID)
    levels: dict[str, list[Scalar]] = Field(default_factory=dict, max_length=50)
    beta: list[float] | None = Field(None, max_length=MAX_PARAMETERS)
    points: list[int] | None = Field(None, max_length=MAX_GRID)

    @field_validator("formula")
    @classmethod
    def _readable(cls, v: str) -> str:
        formulas.parse(v)
        return v

    @field_validator("time_grid")
    @classmethod
    def _increasing(cls, v: list[float] | None) -> list[float] | None:
        return None if v is None else increasing(v, "time_grid")


class CoxRound(BaseModel):
    """One Newton–Raphson round: the coefficients, and the grid points every domain agreed on."""

    model_config = ConfigDict(extra="forbid")
    beta: list[float] | None = Field(None, max_length=MAX_PARAMETERS)
    points: list[int] | None = Field(None, max_length=MAX_GRID)


def check_event_apart(a: CoxArgs, spec: formulas.Spec) -> None:
    if a.event == spec.outcome or a.event in spec.variables:
        raise InvalidInput(f"the event column {a.event!r} cannot also be the duration or a term")


def _cox_design(a: CoxArgs, df: pd.DataFrame,
                public: dict[str, list]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], int, pd.DataFrame]:
    """The model's arrays, categorical columns coded over the listing's levels only, as the GLM's: a
    hidden (rare) level named in ``levels=`` is an empty column, as a made-up name is."""
    spec = formulas.parse(a.formula)
    check_event_apart(a, spec)
    event = _event(column(df, a.event), a.event)
    rows = df[event.notna()]
    d = formulas.design(spec, public_levels_only(rows, spec, a.levels, public), a.levels)
    keep = [j for j, name in enumerate(d.names) if name != "Intercept"]  # cancels in the partial likelihood
    X, names = d.X[:, keep], [d.names[j] for j in keep]
    check_width(names)
    e = event.loc[d.frame.index].to_numpy() > 0
    return d.y, e, X, names, d.dropped + int(len(df) - len(rows)), d.frame


def check_width(names: list[str]) -> None:
    if not names:
        raise InvalidInput("the model has no terms; write 'duration + event ~ age + C(sex)'")
    if len(names) > MAX_PARAMETERS:
        raise InvalidInput(f"the model has {len(names)} columns; at most {MAX_PARAMETERS}")


def _check_small(X: np.ndarray, names: list[str], e: np.ndarray, frame: pd.DataFrame, levels: dict,
                 rules: DisclosureSection) -> None:
    ones = [int(X[:, j].sum()) if np.isin(X[:, j], (0.0, 1.0)).all() else None for j in range(len(names))]
    counts = {name: frame[name].value_counts().to_numpy() for name in levels if name in frame}
    check_small_counts(names, ones, int(e.sum()), len(e), counts, rules)


def check_small_counts(names: list[str], ones: list[int | None], events: int, n: int,
                       level_counts: dict[str, np.ndarray], rules: DisclosureSection) -> None:
    """As the GLM: no sums over 1..k−1 people through a 0/1 column, a level, or the events.
    ``ones``: per model column its count of ones where it is 0/1, else None; ``level_counts``: per
    categorical column of ``levels=`` the rows of each of its values."""
    k = rules.min_cell_count

    def small(count: int) -> bool:
        return 0 < count < k or 0 < n - count < k

    for name, count in zip(names, ones):
        if count is not None and small(count):
            raise disclosure.Blocked(N_("the model column {name!r} is 1 on fewer than {k} rows (or 0 on fewer than "
                                        "{k}) here, under the minimum cell count; merge rare levels or widen the "
                                        "selection").format(name=name, k=k))
    if small(events):
        raise disclosure.Blocked(N_("fewer than {k} events (or fewer than {k} censored rows) here, under the minimum "
                                    "cell count; widen the selection").format(k=k))
    for name, counts in level_counts.items():
        if ((counts > 0) & (counts < k)).any():
            raise disclosure.Blocked(N_("a level of {name!r} has fewer than {k} rows here, under the minimum "
                                        "cell count; merge rare levels or leave them out of levels=").format(
                name=name, k=k))


def values_per_interval(p: int, ties: str) -> int:
    """Values one released interval costs: S0, S1, S2's upper triangle (and Efron's E sums), d."""
    one = 1 + p + p * (p + 1) // 2
    return 1 + one * (2 if ties == "efron" else 1)


def chosen_grid(a: CoxArgs) -> tuple[list[int], np.ndarray]:
    """The indexes into the approved grid this round asks for, and their times."""
    if a.time_grid is None:
        raise InvalidInput("a Cox model that is not stratified by domain needs a time_grid")
    full = np.asarray(a.time_grid, dtype=float)
    chosen = list(range(len(full))) if a.points is None else a.points
    if any(not 0 <= i < len(full) for i in chosen) or any(j <= i for i, j in zip(chosen, chosen[1:])):
        raise InvalidInput(f"points must be increasing indexes into the time grid of {len(full)} points")
    return chosen, full[chosen]


def _points(a: CoxArgs, t: np.ndarray, e: np.ndarray, p: int, rules: DisclosureSection) -> tuple[list[int], np.ndarray]:
    """The grid points released (indexes into the approved grid) and their times."""
    _, grid = chosen_grid(a)
    index, e = pl.bin_rows(t, e, grid)
    events, censored = pl.exits(index, e, len(grid))
    return points_from_counts(a, events, censored, len(t), p, rules)


def points_from_counts(a: CoxArgs, events: np.ndarray, censored: np.ndarray, n: int, p: int,
                       rules: DisclosureSection) -> tuple[list[int], np.ndarray]:
    """The released points from the events and censorings per interval of the chosen grid (rows
    beyond it censored in its last interval, as :func:`fednb.partial_likelihood.bin_rows`)."""
    chosen, grid = chosen_grid(a)
    everything = list(range(len(grid)))
    if a.points is not None and pl.valid(everything, events, censored, n, rules.min_cell_count):
        kept = everything  # the points every domain kept: a merge of valid intervals, so valid here
    else:
        kept = pl.coarsen(events, censored, n, rules.min_cell_count)
    at_risk = n - np.concatenate([[0], np.cumsum(events + censored)])  # at the start of each interval
    needed = rules.rows_per_value * values_per_interval(p, a.ties)
    while kept and at_risk[(kept[-2] + 1) if len(kept) > 1 else 0] < needed:
        kept.pop()
    if not kept:
        raise disclosure.Blocked(N_("no interval of the time grid has a risk set of {needed} rows here ({values} "
                                    "values per interval, one per {rows} rows); use fewer terms, or "
                                    "strata='domain'").format(needed=needed, values=needed // rules.rows_per_value,
                                                              rows=rules.rows_per_value))
    return [chosen[j] for j in kept], grid[kept]


def check_beta(a: CoxArgs, names: list[str]) -> np.ndarray:
    p = len(names)
    if a.beta is not None and len(a.beta) != p:
        raise InvalidInput(f"beta has {len(a.beta)} values but the model has {p} columns {names}")
    return np.zeros(p) if a.beta is None else np.asarray(a.beta, dtype=float)


def check_stratified_size(n: int, p: int, rules: DisclosureSection) -> None:
    values = p * (p + 1) // 2 + p + 1
    if values > max(1, n // rules.rows_per_value):
        raise disclosure.Blocked(N_("a model with {p} parameters releases {values} values per round, but "
                                    "{n} rows allow at most {limit}; use fewer terms").format(
            p=p, values=values, n=n, limit=n // rules.rows_per_value))


def stratified_release(out: dict[str, Any], loglik: float, grad: np.ndarray, hess: np.ndarray) -> dict[str, Any]:
    p = len(grad)
    numbers = [loglik, *grad, *hess[np.triu_indices(p)]]
    if not np.all(np.isfinite(numbers)):
        return {**out, "finite": False}
    return {**out, "finite": True, "loglik": loglik, "gradient": grad.tolist(),
            "hessian": hess[np.triu_indices(p)].tolist()}


def sums_release(out: dict[str, Any], points: list[int], r: pl.RiskSums, ties: str) -> dict[str, Any]:
    p = r.s1.shape[1]
    upper = np.triu_indices(p)
    sums = {"d": r.d.tolist(), "s0": r.s0.tolist(), "s1": r.s1.tolist(), "s2": [m[upper].tolist() for m in r.s2],
            "xsum": r.xsum.tolist()}
    if ties == "efron":
        sums.update(e0=r.e0.tolist(), e1=r.e1.tolist(), e2=[m[upper].tolist() for m in r.e2])
    flat = np.concatenate([np.ravel(np.asarray(v, dtype=float)) for v in sums.values()])
    if not np.all(np.isfinite(flat)):
        return {**out, "points": points, "finite": False}
    return {**out, "points": points, "finite": True, **sums}


def coxph(a: CoxArgs, df: pd.DataFrame, ctx: Context) -> dict[str, Any]:
    """Cox's risk-set sums in memory, on the selected rows of the used columns: for what the engine
    path (:mod:`.cox_sql`) cannot translate."""
    t, e, X, names, dropped, frame = _cox_design(a, df, ctx.levels)
    n, p = X.shape
    disclosure.check_cohort(n, ctx.rules, N_("the rows with every model column present"))
    _check_small(X, names, e, frame, a.levels, ctx.rules)
    ctx.rows_used(frame.index)
    beta = check_beta(a, names)
    out: dict[str, Any] = {"n": n, **disclosure.dropped_rows(dropped, ctx.rules), "columns": names, "events": int(e.sum())}
    with np.errstate(all="ignore"):
        if a.stratified:
            check_stratified_size(n, p, ctx.rules)
            times = np.unique(t[e])  # exact times: only sums over every row leave
            r = pl.risk_sums(X, beta, pl.exact_intervals(t, e, times), e, list(range(len(times))))
            return stratified_release(out, *pl.loglik_gradient_hessian(r, beta, a.ties))
        points, grid = _points(a, t, e, p, ctx.rules)
        r = pl.risk_sums(X, beta, pl.intervals(t, grid), e, points)
    return sums_release(out, points, r, a.ties)


# kaplan_meier and logrank are registered by .survival_sql, which counts their tables in the engine, and
# coxph by .cox_sql, which sums its risk sets there

