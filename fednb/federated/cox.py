"""Federated Cox regression, equal to the pooled fit on the grid-binned rows.

Cox's partial likelihood (Cox 1972) is maximised by Newton–Raphson on sums over risk sets that each
domain computes at the round's coefficients (:mod:`fednb.partial_likelihood`, the ``coxph`` built-in
of :mod:`fednb.domain.run.builtins.survival`): summed over domains they are the pooled risk sets'
sums, so every step, the estimate and its information matrix are those of the pooled rows binned
on the time grid, with Breslow's (1974) or Efron's (1977) ties. The domains first agree on the grid
points all of them release (each merges intervals with few events). With ``strata="domain"`` each
domain is a stratum with its own baseline hazard and exact times, and only its log-likelihood,
gradient and Hessian leave. Like the GLM, the request is approved once for a round budget.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fednb import formula_terms
from fednb import partial_likelihood as pl
from fednb.errors import InvalidInput, ModelError, NotConverged
from fednb.federated.glm import shown_dropped
from fednb.federated.rounds import IterativeRequest
from fednb.federated.survival import grid_points
from fednb.federated.survival_result import CoxResult

if TYPE_CHECKING:
    from fednb.client.dataset import FederatedDataset

MAXITER = 50
TOL = 1e-10
NEGOTIATIONS = 4  # rounds to agree on the grid points every domain keeps


def parse_surv_formula(formula: str) -> tuple[str, str, str]:
    """``"duration + event ~ terms"`` -> (duration, event, ``"duration ~ terms"`` for the domains)."""
    if not isinstance(formula, str) or formula.count("~") != 1:
        raise InvalidInput('a Cox formula is "duration + event ~ age + C(sex)"')
    lhs, rhs = formula.split("~")
    names = [x.strip() for x in lhs.split("+")]
    if len(names) != 2 or not all(n.isidentifier() for n in names):
        raise InvalidInput(f"the left of '~' in {formula!r} must be two columns: duration + event")
    return names[0], names[1], f"{names[0]} ~ {rhs.strip()}"


class _CoxRounds(IterativeRequest):
    """Cox's rounds: each Newton–Raphson step carries β and the agreed grid points."""

    name = "coxph"

    def description(self) -> str:
        return f"coxph: {self.args['formula']} (event {self.args['event']}, {self.args['ties']})"

    def ask(self, beta: np.ndarray | None, points: list[int] | None) -> dict[str, dict]:
        return self.round({**({"beta": [float(b) for b in beta]} if beta is not None else {}),
                           **({"points": points} if points is not None else {})})


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
    spec = formula_terms.read(domain_formula)
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
    by_domain = pd.DataFrame([{"domain": d, "n": r["n"], "events": r["events"], "dropped": shown_dropped(r)}
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



__all__ = ["coxph", "parse_surv_formula"]
