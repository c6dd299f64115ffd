"""Federated survival analysis whose estimates equal the pooled ones on the grid-binned rows.

Each domain bins durations on the analyst's time grid and releases counts (``kaplan_meier``,
``logrank``) or risk-set sums (``coxph``), coarsening its grid where counts are small (see
:mod:`fednb.domain.run.builtins.survival`). The analyst keeps the grid points every domain kept,
merges each domain's intervals into those (sums, so exact), and computes:

- the Kaplan–Meier product-limit estimate (Kaplan & Meier 1958) with Greenwood's variance
  (Greenwood 1926) and log(−log) confidence bands (Kalbfleisch & Prentice 2002, §1.3), as lifelines;
- the log-rank test (Mantel 1966; Peto & Peto 1972), with its hypergeometric variance for ties;
- Cox regression: :mod:`fednb.federated.cox`.

What binning changes: a row's duration becomes the end of its grid interval, and events after the
last point kept become censored there. Every estimate is then the exact estimate on those binned
rows (``benchmarks/survival_parity.py`` measures it against lifelines, and against the unbinned fit).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fednb.client.request_args import privacy_arg
from fednb.errors import InvalidInput, ModelError, NotEnoughDomains
from fednb.federated.survival_result import LogrankResult, SurvivalCurves

if TYPE_CHECKING:
    from fednb.client.dataset import FederatedDataset

DEFAULT_POINTS = 25


def grid_points(data: FederatedDataset, duration: str, grid: Sequence[float] | int) -> list[float]:
    """Explicit points, or ``grid`` equal steps over the duration's public range (its upper end last)."""
    if isinstance(grid, bool) or not isinstance(grid, (int, Sequence, np.ndarray)):
        raise InvalidInput("time_grid is a number of points or a list of increasing times")
    if isinstance(grid, int):
        if not 1 <= grid <= 500:
            raise InvalidInput("time_grid must be between 1 and 500 points")
        rng = data.column(duration)["range"]
        if rng is None:
            raise InvalidInput(f"column {duration!r} has no public range; pass time_grid=[t1, t2, ...]")
        lo, hi = float(rng[0]), float(rng[1])
        step = (hi - lo) / grid
        return [lo + step * k for k in range(1, grid + 1)] if step > 0 else [hi]
    return [float(x) for x in grid]


def _common(parts: list[dict]) -> list[int]:
    """The grid points every domain kept (domains with no rows in a group do not constrain it)."""
    sets = [set(p["points"]) for p in parts if p["n"] > 0]
    return sorted(set.intersection(*sets)) if sets else []


def _on(part: dict, points: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """One domain's events and censorings merged into the intervals ending at ``points`` (a subset of
    its own kept points): differences of its cumulative counts, so exact."""
    if not points:
        return np.zeros(0), np.zeros(0)
    where = [part["points"].index(j) for j in points]
    ev, ce = np.cumsum(part["events"])[where], np.cumsum(part["censored"])[where]
    return np.diff(np.concatenate([[0], ev])), np.diff(np.concatenate([[0], ce]))


def pool_counts(parts: list[dict], points: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At-risk, events and censorings at ``points``, summed over domains."""
    n = sum(p["n"] for p in parts)
    events, censored = np.zeros(len(points)), np.zeros(len(points))
    for p in parts:
        if p["n"] > 0:
            e, c = _on(p, points)
            events, censored = events + e, censored + c
    at_risk = n - np.concatenate([[0], np.cumsum(events + censored)[:-1]]) if points else np.zeros(0)
    return at_risk, events, censored


def product_limit(at_risk: np.ndarray, events: np.ndarray, alpha: float = 0.05) -> pd.DataFrame:
    """Kaplan–Meier survival, Greenwood's standard error and log(−log) bands at each point."""
    from fednb.federated.distributions import norm_ppf

    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.cumprod(1 - events / at_risk)
        greenwood = np.cumsum(np.where(at_risk > events, events / (at_risk * (at_risk - events)), 0.0))
        z = norm_ppf(1 - alpha / 2)
        spread = z * np.sqrt(greenwood) / np.log(s)
        lower, upper = np.exp(-np.exp(np.log(-np.log(s)) - spread)), np.exp(-np.exp(np.log(-np.log(s)) + spread))
    lower = np.where(s >= 1, 1.0, np.where(s <= 0, 0.0, lower))
    upper = np.where(s >= 1, 1.0, np.where(s <= 0, 0.0, upper))
    return pd.DataFrame({"survival": s, "std_err": s * np.sqrt(greenwood), "lower": lower, "upper": upper})


def _group_parts(results: dict[str, dict]) -> tuple[dict[Any, dict[str, dict]], list[str]]:
    """Each group's released part per domain, and notes on what was suppressed or coarsened."""
    groups: dict[Any, dict[str, dict]] = {}
    notes = []
    for domain, r in results.items():
        for g in r["groups"]:
            if "suppressed" in g:
                notes.append(f"{domain}: {g['suppressed']}")
                groups.setdefault(g["level"], {})
            else:
                groups.setdefault(g["level"], {})[domain] = g
    return groups, notes


def _label(level: Any) -> str:
    return "the curve" if level == "all" else f"group {level!r}"


def _request(data: FederatedDataset, name: str, args: dict, where: Any, timeout: float, min_domains: int,
             privacy: dict | None = None) -> tuple[Any, dict[str, dict]]:
    req = data._builtin(name, args, where, timeout,
                        f"{name}: {args['duration']}, {args['event']}" + (f" by {args['by']}" if args.get("by") else ""),
                        privacy=privacy)
    results = req.raw_results()
    if len(results) < min_domains:
        raise NotEnoughDomains(min_domains, len(results), req.problems)
    return req, results


def _noisy_curves(results: dict[str, dict], grid: list[float], alpha: float) -> tuple[pd.DataFrame, dict, list[str]]:
    """Curves from noisy counts on the whole grid: summed over domains, negative counts clipped to 0;
    the at-risk numbers are the sums of all later exits. The bands are Greenwood's on these counts
    and leave the noise out (its standard deviation per cell is in the notes)."""
    if not all("dp" in r for r in results.values()):
        raise ModelError("some domains added noise and others did not; ask every domain with epsilon=")
    levels = list(dict.fromkeys(g["level"] for r in results.values() for g in r["groups"]))
    rows, n = [], {}
    for level in levels:
        parts = [g for r in results.values() for g in r["groups"] if g["level"] == level]
        events = np.maximum(sum(np.asarray(g["events"]) for g in parts), 0.0)
        censored = np.maximum(sum(np.asarray(g["censored"]) for g in parts), 0.0)
        at_risk = np.cumsum((events + censored)[::-1])[::-1]
        if at_risk[0] < 1:
            continue
        events = np.minimum(events, at_risk)
        n[level] = float(at_risk[0])
        rows.append(pd.DataFrame({"group": level, "time": grid, "at_risk": at_risk, "events": events,
                                  "censored": censored, **product_limit(np.maximum(at_risk, 1e-12), events, alpha)}))
    spent = {d: r["dp"]["epsilon"] for d, r in results.items()}
    std = {d: r["dp"]["std"]["cell"] for d, r in results.items()}
    notes = ["noise added by " + ", ".join(f"{d} (epsilon {e:g}, std {std[d]:.3g} per count)" for d, e in spent.items()),
             "the bands are Greenwood's on the noisy counts: they leave the noise out"]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(), n, notes


def _coarsening_note(asked: list[float], points: list[int], level: Any) -> list[str]:
    if len(points) == len(asked):
        return []
    what = "the test" if level is None else _label(level)
    return [f"{what}: counts at {len(points)} of the {len(asked)} time points asked for; the domains merge intervals "
            "whose events or censorings number fewer than their minimum cell count"]


def kaplan_meier(data: FederatedDataset, duration: str, event: str, *, by: str | None = None, where: Any = None,
                 time_grid: Sequence[float] | int = DEFAULT_POINTS, alpha: float = 0.05, min_domains: int = 1,
                 timeout: float = 60.0, epsilon: float | None = None, mechanism: str = "laplace",
                 delta: float | None = None) -> SurvivalCurves:
    """Pooled Kaplan–Meier curves; with ``epsilon=`` every domain adds noise to its counts instead of
    merging small intervals (differential privacy, spending ``epsilon`` of your budget there)."""
    grid = grid_points(data, duration, time_grid)
    args = {"duration": duration, "event": event, "time_grid": grid, **({"by": by} if by else {})}
    req, results = _request(data, "kaplan_meier", args, where, timeout, min_domains,
                            privacy_arg(epsilon, mechanism, delta))
    by_domain = pd.DataFrame([{"domain": d, "epsilon": r["dp"]["epsilon"]} if "dp" in r else
                              {"domain": d, "n": r["n"], "suppressed": r["suppressed"], "merged": r["merged"]}
                              for d, r in results.items()])
    if any("dp" in r for r in results.values()):
        table, n, notes = _noisy_curves(results, grid, alpha)
        return SurvivalCurves(duration, event, by, grid, table, n, by_domain, req.problems, notes, req, alpha)
    groups, notes = _group_parts(results)
    rows = []
    for level, parts in groups.items():
        released = list(parts.values())
        if not released:
            notes.append(f"{_label(level)} was suppressed on every domain")
            continue
        points = _common(released)
        at_risk, events, censored = pool_counts(released, points)
        curve = product_limit(at_risk, events, alpha)
        notes += _coarsening_note(grid, points, level)
        rows.append(pd.DataFrame({"group": level, "time": [grid[j] for j in points], "at_risk": at_risk,
                                  "events": events, "censored": censored, **curve}))
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["group", "time", "at_risk", "events", "censored", "survival", "std_err", "lower", "upper"])
    n = {level: sum(p["n"] for p in parts.values()) for level, parts in groups.items()}
    return SurvivalCurves(duration, event, by, grid, table, n, by_domain, req.problems, notes, req, alpha)


def logrank_statistic(at_risk: np.ndarray, events: np.ndarray) -> tuple[float, int, np.ndarray, np.ndarray]:
    """The k-group log-rank χ² from at-risk and events of shape (groups, times): observed minus
    expected and its hypergeometric covariance (Klein & Moeschberger 2003, §7.3)."""
    n, d = at_risk.sum(axis=0), events.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(n > 0, at_risk / n, 0.0)
        expected = (share * d).sum(axis=1)
        factor = np.where(n > 1, d * (n - d) / (n - 1), 0.0)
    k = at_risk.shape[0]
    cov = np.zeros((k, k))
    for j in range(at_risk.shape[1]):
        cov += factor[j] * (np.diag(share[:, j]) - np.outer(share[:, j], share[:, j]))
    observed = events.sum(axis=1)
    diff = (observed - expected)[:-1]
    stat = float(diff @ np.linalg.pinv(cov[:-1, :-1]) @ diff)
    return stat, k - 1, observed, expected


def logrank(data: FederatedDataset, duration: str, event: str, by: str, *, where: Any = None,
            time_grid: Sequence[float] | int = DEFAULT_POINTS, min_domains: int = 1, timeout: float = 60.0,
            epsilon: float | None = None) -> LogrankResult:
    from fednb.federated.distributions import chi2_sf

    if not by:
        raise InvalidInput("the log-rank test compares groups: name them with by=")
    grid = grid_points(data, duration, time_grid)
    if epsilon is not None:
        raise InvalidInput("the log-rank test has no differentially private version here: its p-value would ignore "
                           "the noise on the counts; compare noisy curves with kaplan_meier(..., epsilon=) instead")
    req, results = _request(data, "logrank", {"duration": duration, "event": event, "time_grid": grid, "by": by},
                            where, timeout, min_domains)
    groups, notes = _group_parts(results)
    groups = {level: list(parts.values()) for level, parts in groups.items() if parts}
    if len(groups) < 2:
        raise ModelError(f"the log-rank test needs two groups with released counts; {by!r} has {len(groups)}"
                         + (f" ({'; '.join(notes)})" if notes else ""))
    points = _common([p for parts in groups.values() for p in parts])
    if not points:
        raise ModelError(f"no time point has counts from every domain and group of {by!r}: the groups have too few "
                         "events or censorings per domain (under the minimum cell count); use fewer groups or a "
                         "coarser time_grid")
    notes += _coarsening_note(grid, points, None)
    counts = [pool_counts(parts, points) for parts in groups.values()]
    at_risk, events = np.array([c[0] for c in counts]), np.array([c[1] for c in counts])
    stat, dof, observed, expected = logrank_statistic(at_risk, events)
    table = pd.DataFrame({"group": list(groups), "n": [sum(p["n"] for p in ps) for ps in groups.values()],
                          "observed": observed, "expected": expected})
    return LogrankResult(duration, event, by, stat, dof, float(chi2_sf(stat, dof)), table,
                         [grid[j] for j in points], req.problems, notes, req)


__all__ = ["grid_points", "kaplan_meier", "logrank"]
