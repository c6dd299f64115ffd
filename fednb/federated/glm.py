"""Federated generalised linear models whose estimates equal the pooled fit's.

Iteratively reweighted least squares (McCullagh & Nelder, *Generalized Linear Models*, 2nd ed.
1989, §2.5) needs the data only through XᵀWX and XᵀWz at the current coefficients, and those are
sums over rows, so over domains. Each round the analyst sends β to every domain (the ``glm``
built-in, :mod:`fednb.domain.run.builtins.glm`), adds up what they release, and solves for the next β,
as DataSHIELD's ``ds.glm`` does (Jones et al., 2012; Gaye et al., 2014). The fixed point is the
maximum-likelihood estimate on the concatenated rows, and (XᵀWX)⁻¹ there, times the dispersion,
is its covariance: the same numbers as a pooled fit, without any row leaving its domain.
A Gaussian model with the identity link needs only the first round: one least-squares step from
its sums is the fit, and the deviance there follows from the same sums (:func:`least_squares`).

Convergence is on the coefficients (every step below ``tol`` relative to the estimate or 1% of its
standard error), not only the deviance, so that the information matrix is taken at the optimum.
Perfect separation shows as a deviance that has stopped falling while steps stay the same size
(coefficients walking to infinity); it is reported, as are singular designs, instead of NaNs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fednb import formula as formulas
from fednb import formula_terms
from fednb.errors import (
    InvalidInput,
    ModelError,
    NotConverged,
    PerfectSeparation,
    SingularDesign,
)
from fednb.federated.rounds import IterativeRequest

if TYPE_CHECKING:
    from fednb.client.dataset import FederatedDataset
    from fednb.federated.glm_result import GlmResult

FAMILIES = ("gaussian", "binomial", "poisson")
MAXITER = 50
TOL = 1e-8
STALLED = 1e-6  # relative change in deviance under which it has stopped falling
STALL_ROUNDS = 3  # rounds of a stalled deviance with steps not shrinking: separation
MAX_HALVINGS = 10  # step-halving when a step overshoots into non-finite values (as R's glm.fit)
RANK_TOL = 1e-10  # smallest eigenvalue of the equilibrated XᵀWX below which the design is singular
# The closed-form residual sum of squares (:func:`deviance_at`) loses about log10(terms / result)
# digits to cancellation, on top of the ~1e-13 relative rounding of sums over millions of rows; past
# this ratio the domains sum the residuals themselves in one more round.
CANCELLATION_LIMIT = 1e4


@dataclass
class Sums:
    """XᵀWX, XᵀWz and the fit statistics at one β, of one domain or pooled over several."""

    names: list[str]
    n: int
    finite: bool
    xtwx: np.ndarray | None = None
    xtwz: np.ndarray | None = None
    deviance: float = math.nan
    pearson_chi2: float = math.nan
    loglik: float | None = None
    y_sum: float = math.nan

    @classmethod
    def from_result(cls, r: dict[str, Any]) -> Sums:
        names, p = list(r["columns"]), len(r["columns"])
        if not r.get("finite", False):
            return cls(names, int(r["n"]), False)
        full = np.zeros((p, p))
        full[np.triu_indices(p)] = r["xtwx"]
        full = full + np.triu(full, 1).T
        return cls(names, int(r["n"]), True, full, np.asarray(r["xtwz"], dtype=float), float(r["deviance"]),
                   float(r["pearson_chi2"]), None if r.get("loglik") is None else float(r["loglik"]),
                   float(r["y_sum"]))


    def dispersion(self, family: str) -> float:
        """1 for binomial and Poisson, Pearson χ²/(n − p) for the Gaussian (as statsmodels)."""
        if family != "gaussian":
            return 1.0
        dof = self.n - len(self.names)
        return self.pearson_chi2 / dof if dof > 0 else math.nan


def pool(parts: list[Sums]) -> Sums:
    """Sums over domains: every IRLS quantity is a sum over rows, so this is exact."""
    names, n = parts[0].names, sum(s.n for s in parts)
    if not all(s.finite for s in parts):
        return Sums(names, n, False)
    logliks = [s.loglik for s in parts]
    return Sums(names, n, True, sum(s.xtwx for s in parts), sum(s.xtwz for s in parts),
                sum(s.deviance for s in parts), sum(s.pearson_chi2 for s in parts),
                None if any(v is None for v in logliks) else sum(logliks), sum(s.y_sum for s in parts))


@dataclass
class Fit:
    """Where IRLS stopped: β, (XᵀWX)⁻¹ there, the sums there, and how it got there."""

    beta: np.ndarray
    inverse: np.ndarray
    sums: Sums
    iterations: int
    converged: bool
    deviances: list[float] = field(default_factory=list)


def check_rank(s: Sums) -> None:
    """Refuse a singular pooled design, naming the columns at fault."""
    diag = np.diag(s.xtwx)
    zero = [name for name, v in zip(s.names, diag) if not v > 0]
    if zero:
        raise SingularDesign(f"the model column(s) {', '.join(zero)} are zero on every row used, on every domain"
                             f"{_absent_levels(zero)}; leave them out (drop the term, or the level from levels=)")
    d = np.sqrt(diag)
    values, vectors = np.linalg.eigh(s.xtwx / np.outer(d, d))
    groups = []
    for k in np.flatnonzero(values < RANK_TOL):
        v = np.abs(vectors[:, k])
        groups.append([name for name, x in zip(s.names, v) if x > 0.01 * v.max()])
    if groups:
        which = "; ".join(", ".join(g) for g in groups)
        raise SingularDesign(f"the model's columns are collinear ({which}): one is a combination of the others on "
                             "the rows used, so their coefficients are not identified; drop one of them")


def _absent_levels(columns: list[str]) -> str:
    levels = [c.rsplit("[T.", 1)[1].rstrip("]") for c in columns if "[T." in c]
    return f" (level(s) {', '.join(levels)} occur nowhere in the selected rows)" if levels else ""


def newton(s: Sums) -> tuple[np.ndarray, np.ndarray]:
    """The next β and (XᵀWX)⁻¹ from pooled sums: Cholesky of the equilibrated XᵀWX (Jacobi scaling
    keeps columns of very different scales, like age and an indicator, accurate)."""
    d = np.sqrt(np.diag(s.xtwx))
    if not (d > 0).all():
        raise np.linalg.LinAlgError("a zero weight sum")
    lower = np.linalg.cholesky(s.xtwx / np.outer(d, d))  # raises LinAlgError unless positive definite
    lower_inv = np.linalg.solve(lower, np.eye(len(d)))
    beta = lower_inv.T @ (lower_inv @ (s.xtwz / d)) / d
    inverse = (lower_inv.T @ lower_inv) / np.outer(d, d)
    return beta, inverse


def _checked_start(start: Sums) -> Sums:
    if not start.finite:
        raise ModelError("the model's sums overflow at the starting values; rescale covariates with very large "
                         "values (e.g. income in thousands) or transform them (log)")
    check_rank(start)
    return start


def deviance_at(start: Sums, beta: np.ndarray) -> Sums | None:
    """The Gaussian's sums at ``beta`` from its start's, without another pass over the rows.

    The Gaussian start is β = 0 (w = 1, z = y), so it carries XᵀX, Xᵀy and, as its deviance, yᵀy;
    with the identity link w and XᵀWX are the same at every β, and the residual sum of squares is
    D(β) = yᵀy − 2βᵀXᵀy + βᵀXᵀXβ (Seber & Lee, *Linear Regression Analysis*, 2nd ed. 2003, §3.1),
    which is also Pearson's χ². None when that difference would lose more than
    :data:`CANCELLATION_LIMIT` to rounding, or the start is not β = 0 (its deviance is not yᵀy)."""
    yty = start.deviance
    cross, square = float(beta @ start.xtwz), float(beta @ start.xtwx @ beta)
    deviance = yty - 2 * cross + square
    terms = abs(yty) + 2 * abs(cross) + abs(square)
    if not (start.pearson_chi2 == yty and math.isfinite(terms) and deviance > 0
            and terms <= CANCELLATION_LIMIT * deviance):
        return None
    return Sums(start.names, start.n, True, start.xtwx, start.xtwz, deviance, deviance, None, start.y_sum)


def pooled_start(parts: list[Sums], family: str) -> Sums:
    """The domains' starts pooled. A Gaussian start with deviance 0 where Xᵀy is not 0 started at
    μ = y (a domain of an earlier version): its yᵀy is missing from the pooled deviance, so the
    deviance is marked unknown and :func:`least_squares` takes the IRLS rounds instead."""
    pooled = pool(parts)
    if family == "gaussian" and any(s.finite and s.deviance == 0 and np.any(s.xtwz) for s in parts):
        pooled.deviance = pooled.pearson_chi2 = math.nan
    return pooled


def least_squares(ask: Callable[[np.ndarray | None], Sums], *, maxiter: int = MAXITER, tol: float = TOL) -> Fit:
    """The Gaussian fit with the identity link from one round of sums.

    IRLS with W = I is weighted least squares with constant weights, so its first step from any start
    is the fixed point β̂ = (XᵀX)⁻¹Xᵀy (McCullagh & Nelder 1989, §2.5), and the deviance, scale and
    Pearson's χ² there follow from the start's sums (:func:`deviance_at`): one pass over each
    domain's rows instead of one per IRLS round. Where the closed form would lose digits to
    cancellation (a near-perfect fit, an outcome far from 0 next to its residuals), IRLS continues
    from the same start and the domains sum the residuals at β̂.
    """
    start = _checked_start(ask(None))
    beta, inverse = newton(start)
    at = deviance_at(start, beta)
    if at is None:
        return irls(ask, "gaussian", maxiter=maxiter, tol=tol, start=start)
    return Fit(beta, inverse, at, 1, True, [at.deviance])


def irls(ask: Callable[[np.ndarray | None], Sums], family: str, *, maxiter: int = MAXITER,
         tol: float = TOL, start: Sums | None = None) -> Fit:
    """Run IRLS; ``ask(beta)`` returns the pooled :class:`Sums` at ``beta`` (``None``: the start,
    unless ``start`` already holds them).

    Raises :class:`SingularDesign`, :class:`PerfectSeparation` or :class:`NotConverged`
    (whose ``result`` is then filled in by the caller).
    """
    start = _checked_start(ask(None) if start is None else start)
    names = start.names
    beta, _ = newton(start)
    anchor = np.zeros_like(beta)  # where to halve back to if the first step overshoots
    betas: list[np.ndarray] = []
    deviances: list[float] = []
    last_step, stalls = math.inf, 0
    s = start
    for iteration in range(1, maxiter + 1):
        s = ask(beta)
        halvings = 0
        while not s.finite:
            if halvings == MAX_HALVINGS:
                raise NotConverged(
                    f"the fitted values overflow (round {iteration}, after {halvings} step halvings); rescale "
                    "covariates with large values or simplify the model")
            beta, halvings = (beta + anchor) / 2, halvings + 1
            s = ask(beta)
        try:
            new, inverse = newton(s)
        except np.linalg.LinAlgError:
            # the start's design had full rank, so the weights themselves vanished: separation
            raise _separation(family, names, betas + [beta]) from None
        step = new - beta
        se = np.sqrt(np.maximum(np.diag(inverse), 0) * s.dispersion(family))
        betas.append(beta)
        deviances.append(s.deviance)
        if np.all(np.abs(step) <= tol * (np.abs(new) + 0.01 * se)):
            return Fit(new, inverse, s, iteration, True, deviances)
        size = float(np.max(np.abs(step)))
        if len(deviances) > 1 and _stalled(deviances) and size > 0.5 * last_step:
            stalls += 1
            if stalls >= STALL_ROUNDS:
                raise _separation(family, names, betas)
        else:
            stalls = 0
        anchor, beta, last_step = beta, new, size
    if stalls:  # out of rounds while walking away, not while closing in
        raise _separation(family, names, betas)
    fit = Fit(beta, inverse, s, maxiter, False, deviances)
    change = abs(deviances[-1] - deviances[-2]) if len(deviances) > 1 else math.nan
    raise NotConverged(f"IRLS did not converge in {maxiter} iteration(s) (last change in deviance {change:.3g}); "
                       "raise maxiter=, rescale covariates with large values, or simplify the model",
                       result=fit)


def _stalled(deviances: list[float]) -> bool:
    return abs(deviances[-1] - deviances[-2]) <= STALLED * (abs(deviances[-1]) + 0.1)


def _separation(family: str, names: list[str], betas: list[np.ndarray]) -> PerfectSeparation:
    """Name the coefficients still walking away: separation's signature (Albert & Anderson, 1984)."""
    last, before = betas[-1], betas[max(0, len(betas) - 4)]
    growth = np.abs(last - before) / (np.abs(last) + 1e-12)
    terms = [n for n, g in zip(names, growth) if g > 1e-3 * max(growth.max(), 1e-300)] or list(names)
    what = ("the outcome is perfectly predicted (fitted probabilities reach 0 or 1)" if family == "binomial"
            else "some rows' counts are all zero where the model can fit them exactly (fitted means reach 0)")
    return PerfectSeparation(
        f"perfect separation: {what}, so the coefficients of {', '.join(terms)} grow without bound and have no "
        "finite estimate. Drop those terms, merge the levels where every outcome is the same, or narrow the "
        "selection", terms)


# -- fitting through domains ---------------------------------------------------------------------

def glm(formula: str, data: FederatedDataset, family: str = "gaussian", *, where: Any = None,
        levels: dict[str, list] | None = None, maxiter: int = MAXITER, tol: float = TOL, min_domains: int = 1,
        timeout: float = 60.0) -> GlmResult:
    """Fit a GLM to a dataset on several domains; the estimates equal a pooled fit's.

    ``formula`` is Wilkinson notation (``"readmitted ~ age + bmi + C(sex) + smoker"``); categorical
    columns and ``C(column)`` terms are coded over the levels in the public metadata (sorted; the
    first is the reference), or over ``levels={column: [...]}``. ``family`` is ``"gaussian"``
    (identity link), ``"binomial"`` (logit; a 0/1 or boolean outcome) or ``"poisson"`` (log).
    Rows with a missing value in a used column are dropped on each domain (``by_domain`` says how
    many). ``where`` filters rows as in the pooled statistics. Domains that refuse (too few rows for
    the parameters) are left out and named in ``missing``, unless fewer than ``min_domains`` remain.
    """
    from fednb.federated.glm_result import GlmResult

    if family not in FAMILIES:
        raise InvalidInput(f"family must be one of {list(FAMILIES)}, not {family!r}")
    if not isinstance(formula, str):
        raise InvalidInput("a model formula is a string like \"readmitted ~ age + C(sex)\"")
    spec = formula_terms.read(formula)
    agreed = agree_levels(spec, data, levels or {})
    # each IRLS step is one round, each step halving one more; one more for the null model
    rounds = _Rounds(data, {"formula": formula, "family": family, "levels": agreed}, where, min_domains, timeout,
                     budget=3 * maxiter + 2)
    try:
        try:
            if family == "gaussian":
                fit = least_squares(rounds.ask, maxiter=maxiter, tol=tol)
            else:
                fit = irls(rounds.ask, family, maxiter=maxiter, tol=tol)
        except NotConverged as exc:
            if exc.result is not None:
                exc.result = GlmResult.build(formula, family, exc.result, rounds.report(), None)
            raise
        except SingularDesign as exc:
            if not rounds.missing:
                raise
            left_out = "; ".join(f"{d}: {why}" for d, why in rounds.missing.items())
            raise SingularDesign(f"{exc} (fitted without {left_out})") from None
        null = rounds.null_model(fit, family)
    finally:
        rounds.close()
    return GlmResult.build(formula, family, fit, rounds.report(), null)


def agree_levels(spec: formulas.Spec, data: FederatedDataset, overrides: dict[str, list]) -> dict[str, list]:
    """The levels every domain codes categorical columns over: the public ones, or the analyst's."""
    unknown = sorted(set(overrides) - set(spec.variables))
    if unknown:
        raise InvalidInput(f"levels= names {unknown}, which the formula does not use")
    if data.column(spec.outcome)["kind"] in ("categorical", "text"):
        raise InvalidInput(f"the outcome {spec.outcome!r} is categorical; the model needs a numeric, 0/1 or "
                           "boolean outcome")
    agreed: dict[str, list] = {}
    for name in spec.variables:
        meta = data.column(name)
        if name in overrides:
            agreed[name] = list(overrides[name])
        elif name in spec.categorical or meta["kind"] in ("categorical", "text"):
            if not meta["levels"]:
                raise InvalidInput(f"column {name!r} has no public levels (too many, or all too rare to publish), "
                                   "so it cannot be a categorical term; pass levels={...} or leave it out")
            agreed[name] = sorted(meta["levels"], key=lambda v: (type(v).__name__, v))
        if name in agreed and len(set(map(repr, agreed[name]))) != len(agreed[name]):
            raise InvalidInput(f"the levels of {name!r} repeat a value: {agreed[name]}")
    return agreed


class _Rounds(IterativeRequest):
    """The GLM's rounds: each IRLS step carries the current coefficients; what comes back is pooled."""

    name = "glm"

    def description(self) -> str:
        return f"glm: {self.args['formula']} ({self.args['family']})"

    start: Sums | None = None

    def ask(self, beta: np.ndarray | None) -> Sums:
        parts = self.round({"beta": [float(b) for b in beta]} if beta is not None else {})
        sums = [Sums.from_result(r) for r in parts.values()]
        if beta is None:
            self.start = pooled_start(sums, self.args["family"])
            return self.start
        return pool(sums)

    def report(self) -> tuple[list[dict], dict[str, str], int]:
        rows = [{"domain": d, "n": p["n"], "dropped": shown_dropped(p)} for d, p in self.last.items()]
        return rows, self.missing, self.count

    def null_model(self, fit: Fit, family: str) -> Sums | None:
        """Deviance of the intercept-only model on the same rows: one more round at β = (g(ȳ), 0, ...)."""
        if "Intercept" not in fit.sums.names:
            return None
        ybar = fit.sums.y_sum / fit.sums.n
        link = {"gaussian": lambda m: m, "binomial": lambda m: math.log(m / (1 - m)), "poisson": math.log}[family]
        if (family == "binomial" and not 0 < ybar < 1) or (family == "poisson" and not ybar > 0):
            return None
        beta = np.zeros(len(fit.sums.names))
        beta[fit.sums.names.index("Intercept")] = link(ybar)
        closed = None if family != "gaussian" or self.start is None else deviance_at(self.start, beta)
        if closed is not None:
            return closed
        try:
            null = self.ask(beta)
        except ModelError:
            return None
        return null if null.finite else None


def shown_dropped(part: dict) -> int | str:
    """A domain shows how many rows it dropped only as 0 or at least its minimum cell count."""
    if part.get("dropped") is not None:
        return part["dropped"]
    return f"1-{part.get('dropped_below', 5) - 1}"
