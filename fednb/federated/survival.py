"""Federated survival analysis whose estimates equal the pooled ones on the grid-binned rows.

Each domain bins durations on the analyst's time grid and releases counts (``kaplan_meier``,
``logrank``) or risk-set sums (``coxph``), coarsening its grid where counts are small (see
:mod:`fednb.domain.run.builtins.survival`). The analyst keeps the grid points every domain kept,
merges each domain's intervals into those (sums, so exact), and computes:

- the Kaplan–Meier product-limit estimate (Kaplan & Meier 1958) with Greenwood's variance
  (Greenwood 1926) and log(−log) confidence bands (Kalbfleisch & Prentice 2002, §1.3), as lifelines;
- the log-rank test (Mantel 1966; Peto & Peto 1972), with its hypergeometric variance for ties;
- Cox regression (Cox 1972) by Newton–Raphson on the pooled partial likelihood, Breslow's or
  Efron's ties; with ``strata="domain"`` each domain is a stratum with its own baseline hazard and
  exact (unbinned) times, and only its log-likelihood, gradient and Hessian leave.

What binning changes: a row's duration becomes the end of its grid interval, and events after the
last point kept become censored there. Every estimate is then the exact estimate on those binned
rows (``benchmarks/survival_parity.py`` measures it against lifelines, and against the unbinned fit).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fednb import formula as formulas
from fednb import partial_likelihood as pl
from fednb.client.http import gather, run
from fednb.errors import DomainError, InvalidInput, ModelError, NotConverged, NotEnoughDomains
from fednb.federated.survival_result import CoxResult, LogrankResult, SurvivalCurves
from fednb.models import ROUND_FINAL

if TYPE_CHECKING:
    from fednb.client.dataset import FederatedDataset

DEFAULT_POINTS = 25
MAXITER = 50
TOL = 1e-10
NEGOTIATIONS = 4  # rounds to agree on the grid points every domain keeps


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
    from scipy.stats import norm

    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.cumprod(1 - events / at_risk)
        greenwood = np.cumsum(np.where(at_risk > events, events / (at_risk * (at_risk - events)), 0.0))
        z = norm.ppf(1 - alpha / 2)
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
             epsilon: float | None) -> tuple[Any, dict[str, dict]]:
    if epsilon is not None:
        raise InvalidInput("survival counts have no differentially private version yet: noise on the events and "
                           "censorings of each interval would need a budget per interval and per group, and the "
                           "at-risk numbers sum the noise of all later intervals; ask without epsilon=")
    req = data._builtin(name, args, where, timeout,
                        f"{name}: {args['duration']}, {args['event']}" + (f" by {args['by']}" if args.get("by") else ""))
    results = req.raw_results()
    if len(results) < min_domains:
        raise NotEnoughDomains(min_domains, len(results), req.problems)
    return req, results


def _coarsening_note(asked: list[float], points: list[int], level: Any) -> list[str]:
    if len(points) == len(asked):
        return []
    what = "the test" if level is None else _label(level)
    return [f"{what}: counts at {len(points)} of the {len(asked)} time points asked for; the domains merge intervals "
            "whose events or censorings number fewer than their minimum cell count"]


def kaplan_meier(data: FederatedDataset, duration: str, event: str, *, by: str | None = None, where: Any = None,
                 time_grid: Sequence[float] | int = DEFAULT_POINTS, alpha: float = 0.05, min_domains: int = 1,
                 timeout: float = 60.0, epsilon: float | None = None) -> SurvivalCurves:
    grid = grid_points(data, duration, time_grid)
    args = {"duration": duration, "event": event, "time_grid": grid, **({"by": by} if by else {})}
    req, results = _request(data, "kaplan_meier", args, where, timeout, min_domains, epsilon)
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
    by_domain = pd.DataFrame([{"domain": d, "n": r["n"], "suppressed": r["suppressed"], "merged": r["merged"]}
                              for d, r in results.items()])
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
    from scipy.stats import chi2

    if not by:
        raise InvalidInput("the log-rank test compares groups: name them with by=")
    grid = grid_points(data, duration, time_grid)
    req, results = _request(data, "logrank", {"duration": duration, "event": event, "time_grid": grid, "by": by},
                            where, timeout, min_domains, epsilon)
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
    return LogrankResult(duration, event, by, stat, dof, float(chi2.sf(stat, dof)), table,
                         [grid[j] for j in points], req.problems, notes, req)


# -- Cox regression ------------------------------------------------------------------------------

def parse_surv_formula(formula: str) -> tuple[str, str, str]:
    """``"duration + event ~ terms"`` -> (duration, event, ``"duration ~ terms"`` for the domains)."""
    if not isinstance(formula, str) or formula.count("~") != 1:
        raise InvalidInput('a Cox formula is "duration + event ~ age + C(sex)"')
    lhs, rhs = formula.split("~")
    names = [x.strip() for x in lhs.split("+")]
    if len(names) != 2 or not all(n.isidentifier() for n in names):
        raise InvalidInput(f"the left of '~' in {formula!r} must be two columns: duration + event")
    return names[0], names[1], f"{names[0]} ~ {rhs.strip()}"


class _CoxRounds:
    """One ``coxph`` request per domain, approved once for the model and a round budget; each
    Newton–Raphson step is a round carrying β and the agreed grid points."""

    def __init__(self, data: FederatedDataset, args: dict, where: Any, min_domains: int, timeout: float, budget: int):
        from fednb.client.dataset import parse_where

        self.data, self.args, self.min_domains, self.timeout, self.budget = data, args, min_domains, timeout, budget
        self.where = parse_where(where)
        self.request, self.parts, self.missing, self.count = None, [], {}, 0
        self.last: dict[str, dict] = {}

    def _open(self) -> None:
        body = {"dataset": self.data.name, "kind": "builtin", "name": "coxph",
                "args": {**self.args, **({"where": self.where} if self.where else {})},
                "description": f"coxph: {self.args['formula']} (event {self.args['event']}, {self.args['ties']})",
                "limits": {"max_rounds": self.budget}}
        self.request = self.data.fed.submit(self.data.clients, body)
        self.parts = self.request.wait_decided(self.timeout)
        approved = {p.domain for p in self.parts}
        self.missing = {d: why for d, why in self.request.problems.items() if d not in approved}
        if len(self.parts) < self.min_domains:
            raise NotEnoughDomains(self.min_domains, len(self.parts), self.missing)

    async def _one(self, part, number: int, inputs: dict) -> dict:
        deadline = time.monotonic() + self.timeout
        try:
            state = await part.client.submit_inputs_round(part.id, number, inputs, wait=self.timeout)
            while state["status"] not in ROUND_FINAL and time.monotonic() < deadline:
                state = await part.client.round(part.id, number, wait=deadline - time.monotonic())
        except DomainError as exc:
            return {"status": "failed", "reason": exc.message}
        if state["status"] == "blocked":
            return {**state, "reason": f"blocked by disclosure control: {state.get('reason')}"}
        if state["status"] not in ROUND_FINAL:
            return {"status": "failed", "reason": f"no answer within {self.timeout:g} s"}
        return state

    def ask(self, beta: np.ndarray | None, points: list[int] | None) -> dict[str, dict]:
        if self.request is None:
            self._open()
        self.count += 1
        inputs = {**({"beta": [float(b) for b in beta]} if beta is not None else {}),
                  **({"points": points} if points is not None else {})}
        states = run(gather(*(self._one(p, self.count, inputs) for p in self.parts)), self.timeout + 30)
        found = {p.domain: st["result"] for p, st in zip(self.parts, states) if st["status"] == "done"}
        problems = {p.domain: st.get("reason") or st["status"] for p, st in zip(self.parts, states)
                    if st["status"] != "done"}
        if self.count == 1:
            if len(found) < self.min_domains:
                raise NotEnoughDomains(self.min_domains, len(found), {**self.missing, **problems})
            self.parts = [p for p in self.parts if p.domain in found]
            self.missing.update(problems)
            if len({tuple(r["columns"]) for r in found.values()}) > 1:
                raise ModelError("the domains built different model columns; they may run different fednb versions")
        elif problems:
            lines = "; ".join(f"{d}: {why}" for d, why in problems.items())
            raise ModelError(f"a domain gave no result in round {self.count} ({lines}); every round needs the same "
                             "domains, so fit again (or connect without it)")
        self.last = found
        return found

    def close(self) -> None:
        if self.request is not None:
            self.request.finish()


def _unpack(r: dict, p: int, ties: str) -> pl.RiskSums:
    def full(upper: list) -> np.ndarray:
        out = np.zeros((len(upper), p, p))
        iu = np.triu_indices(p)
        for i, u in enumerate(upper):
            out[i][iu] = u
            out[i] = out[i] + np.triu(out[i], 1).T
        return out

    q = len(r["d"])
    efron = ties == "efron"
    return pl.RiskSums(np.asarray(r["d"], float), np.asarray(r["s0"], float), np.asarray(r["s1"], float).reshape(q, p),
                       full(r["s2"]), np.asarray(r["e0"] if efron else np.zeros(q), float),
                       np.asarray(r["e1"], float).reshape(q, p) if efron else np.zeros((q, p)),
                       full(r["e2"]) if efron else np.zeros((q, p, p)), np.asarray(r["xsum"], float))


def _evaluate(found: dict[str, dict], beta: np.ndarray, ties: str, stratified: bool):
    """Pooled log partial likelihood, gradient and Hessian (None when a domain's sums overflowed)."""
    if not all(r["finite"] for r in found.values()):
        return None
    p = len(beta)
    if stratified:
        iu = np.triu_indices(p)
        hess = np.zeros((p, p))
        loglik, grad = 0.0, np.zeros(p)
        for r in found.values():
            h = np.zeros((p, p))
            h[iu] = r["hessian"]
            hess += h + np.triu(h, 1).T
            loglik, grad = loglik + r["loglik"], grad + np.asarray(r["gradient"])
        return loglik, grad, hess
    sums = [_unpack(r, p, ties) for r in found.values()]
    total = sums[0]
    for s in sums[1:]:
        total = total + s
    return pl.loglik_gradient_hessian(total, beta, ties)


def coxph(formula: str, data: FederatedDataset, *, ties: str = "efron", strata: str | None = None,
          where: Any = None, levels: dict[str, list] | None = None, time_grid: Sequence[float] | int = 50,
          maxiter: int = MAXITER, tol: float = TOL, min_domains: int = 1, timeout: float = 60.0,
          epsilon: float | None = None) -> CoxResult:
    """Cox proportional hazards on a dataset spread over domains; equal to the pooled fit on the
    grid-binned rows (``strata="domain"``: to the fit stratified by domain on the exact rows)."""
    from fednb.federated.glm import agree_levels

    if ties not in pl.TIES:
        raise InvalidInput(f"ties must be one of {list(pl.TIES)}, not {ties!r}")
    if strata not in (None, "domain"):
        raise InvalidInput("strata= may be 'domain' (a baseline hazard per domain); stratifying by a column is not "
                           "available: fit the strata separately or add the column as a term")
    if epsilon is not None:
        raise InvalidInput("Cox regression has no differentially private version here: the risk-set sums at "
                           "coefficients the analyst chooses have no bounded sensitivity; ask without epsilon=")
    duration, event, domain_formula = parse_surv_formula(formula)
    spec = formulas.parse(domain_formula)
    if event in spec.variables:
        raise InvalidInput(f"the event column {event!r} is also a term")
    stratified = strata == "domain"
    args: dict[str, Any] = {"formula": domain_formula, "event": event, "ties": ties,
                            "levels": agree_levels(spec, data, levels or {})}
    if stratified:
        args["stratified"] = True
    else:
        args["time_grid"] = grid_points(data, duration, time_grid)
    rounds = _CoxRounds(data, args, where, min_domains, timeout, budget=maxiter + NEGOTIATIONS + 2)
    started = time.monotonic()
    try:
        found = rounds.ask(None, None)
        points = None if stratified else _agree_points(rounds, found)
        if points is not None:
            found = rounds.last
        fit = _newton(lambda b: _evaluate(rounds.ask(b, points), b, ties, stratified),
                      _evaluate(found, np.zeros(len(found[next(iter(found))]["columns"])), ties, stratified),
                      maxiter, tol)
    finally:
        rounds.close()
    names = list(next(iter(rounds.last.values()))["columns"])
    by_domain = pd.DataFrame([{"domain": d, "n": r["n"], "events": r["events"], "dropped": r["dropped"]}
                              for d, r in rounds.last.items()])
    grid = None if stratified else [args["time_grid"][j] for j in points]
    return CoxResult.build(formula, ties, strata, names, fit, by_domain, rounds.missing, rounds.count,
                           time.monotonic() - started, grid)


def _agree_points(rounds: _CoxRounds, found: dict[str, dict]) -> list[int]:
    """Grid points every domain releases: ask again on the points all kept (valid for each) until all agree."""
    for _ in range(NEGOTIATIONS):
        kept = [r["points"] for r in found.values()]
        agreed = sorted(set.intersection(*map(set, kept)))
        if all(k == agreed for k in kept):
            return agreed
        found = rounds.ask(None, agreed)
    raise ModelError("the domains could not agree on time points (each merges intervals with few events); use a "
                     "coarser time_grid or strata='domain'")


def _newton(evaluate, start, maxiter: int, tol: float) -> dict[str, Any]:
    """Newton–Raphson with step halving (as lifelines and R's coxph): stops when every step is below
    ``tol`` relative to the coefficient (or absolutely, near zero)."""
    if start is None:
        raise ModelError("the partial likelihood overflows at zero coefficients; rescale covariates with large values")
    loglik0, grad, hess = start
    p = len(grad)
    beta, current = np.zeros(p), start
    for iteration in range(1, maxiter + 1):
        loglik, grad, hess = current
        try:
            step = np.linalg.solve(-hess, grad)
        except np.linalg.LinAlgError:
            raise ModelError("the model's information matrix is singular: a term is constant or collinear with "
                             "others on the rows used; drop it") from None
        if np.all(np.abs(step) <= tol * np.maximum(np.abs(beta), 1.0)):
            return {"beta": beta, "hessian": hess, "loglik": loglik, "loglik0": loglik0, "iterations": iteration,
                    "converged": True}
        for _ in range(20):
            proposal = evaluate(beta + step)
            if proposal is not None and proposal[0] >= loglik - 1e-12 * abs(loglik):
                break
            step = step / 2
        else:
            raise NotConverged("Newton–Raphson could not improve the partial likelihood; rescale covariates or "
                               "drop terms that predict the event perfectly")
        beta, current = beta + step, proposal
    raise NotConverged(f"Cox regression did not converge in {maxiter} iterations; raise maxiter= or simplify the "
                       f"model (last log-likelihood {current[0]:.6g})")


__all__ = ["coxph", "grid_points", "kaplan_meier", "logrank"]
