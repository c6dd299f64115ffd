"""The ``glm`` built-in: one domain's sufficient statistics for one IRLS step of a GLM.

For the coefficients β the analyst sends (or the family's starting values on the first round), the
domain returns XᵀWX, XᵀWz, the deviance, Pearson's χ² and n, where W and z are the working
weights and response of iteratively reweighted least squares (McCullagh & Nelder, *Generalized
Linear Models*, 2nd ed. 1989, §2.5). Summed over domains they give the pooled fit's IRLS step
exactly, as in DataSHIELD's ``ds.glm`` (Jones et al., 2012; Gaye et al., 2014). The analyst's side
is :mod:`fednb.federated.glm`.

What leaves the domain has a size fixed by the number of parameters p, never by the rows. It is
refused (``Blocked``) when the rows number fewer than the minimum cohort; when the residual degrees
of freedom n - p are under ``safe_dof_threshold`` (ACRO's rule for regressions) or p exceeds
``max_parameters_per_row`` · n (a saturated model, DataSHIELD's ``nfilter.glm``), since such a fit
passes through the rows; and, like DataSHIELD's ``glmDS1`` checks but whatever the coding, when any
model column or the outcome has between 1 and min_cell_count - 1 rows off its most common value
(its sums would describe a handful of people: a one-person indicator coded 0/1 or 0/2 alike), or
when one or two rows dominate a column's or the outcome's sum (the dominance and p% rules).
Categorical terms are coded over the public levels only: a level the analyst names that the
listing does not show has no rows here, so ``levels=`` cannot probe for hidden rare categories.
``dropped`` (rows without every model column) is released only when it is 0 or at least the
minimum cell count, otherwise as null with ``dropped_below`` (it would count a few people).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from fednb import formula as formulas
from fednb.domain.release import disclosure
from fednb.domain.review.policy import DisclosureSection
from fednb.domain.run.builtins import design_sql, glm_sql
from fednb.domain.run.builtins.registry import Args, Context, Scalar, register, used_columns
from fednb.errors import InvalidInput
from fednb.locale import N_

EXTRA_VALUES = 4  # deviance, Pearson chi2, log-likelihood, sum of y
_EPS = np.finfo(float).eps
CACHED_DESIGNS = 8  # a fit asks for the same design every round; building it is most of a round's work
CACHE_MAX_BYTES = 64 * 2**20


class GlmArgs(Args):
    formula: str = Field(max_length=formulas.MAX_LENGTH)
    family: Literal["gaussian", "binomial", "poisson"]
    levels: dict[str, list[Scalar]] = Field(default_factory=dict, max_length=50)
    beta: list[float] | None = Field(None, max_length=500,
                                     description="Coefficients of this step; none: the family's start.")

    @field_validator("formula")
    @classmethod
    def _readable(cls, v: str) -> str:
        formulas.parse(v)
        return v

    @field_validator("levels")
    @classmethod
    def _few_levels(cls, v: dict[str, list]) -> dict[str, list]:
        if any(len(lv) > 1000 for lv in v.values()):
            raise ValueError("at most 1000 levels per column")
        return v


@dataclass(frozen=True)
class Family:
    """Link, variance and deviance of a GLM family (McCullagh & Nelder 1989, table 2.1)."""

    name: str
    start: Callable[[np.ndarray], np.ndarray]  # mu from y, as R's glm.fit family$initialize
    link: Callable[[np.ndarray], np.ndarray]  # eta from mu
    inverse: Callable[[np.ndarray], np.ndarray]  # mu from eta
    dmu_deta: Callable[[np.ndarray], np.ndarray]
    variance: Callable[[np.ndarray], np.ndarray]
    deviance: Callable[[np.ndarray, np.ndarray], float]
    loglik: Callable[[np.ndarray, np.ndarray], float | None]  # at scale 1; None where it needs the scale
    check: Callable[[np.ndarray, str], None]


def _clip(mu: np.ndarray) -> np.ndarray:
    # as statsmodels' Logit link: fitted probabilities stay a float's width inside (0, 1)
    return np.clip(mu, _EPS, 1 - _EPS)


def _expit(eta: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return _clip(np.where(eta >= 0, 1 / (1 + np.exp(-eta)), np.exp(eta) / (1 + np.exp(eta))))


def _ylogy(y: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """y log(y / mu), 0 where y is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / mu), 0.0)


def _binary(y: np.ndarray, outcome: str) -> None:
    if not np.isin(y, (0.0, 1.0)).all():
        raise InvalidInput(N_("the binomial family needs a 0/1 or boolean outcome; {outcome!r} has other values").format(
            outcome=outcome))


def _counts(y: np.ndarray, outcome: str) -> None:
    if (y < 0).any():
        raise InvalidInput(N_("the poisson family needs counts; {outcome!r} has negative values").format(outcome=outcome))


def _poisson_loglik(y: np.ndarray, mu: np.ndarray) -> float:
    from scipy.special import gammaln

    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sum(np.where(y > 0, y * np.log(mu), 0.0) - mu - gammaln(y + 1)))


FAMILIES: dict[str, Family] = {
    "gaussian": Family(
        # β = 0 rather than R's μ = y: the same XᵀWX and XᵀWz (w = 1, z = y either way), and the deviance
        # there is yᵀy, from which the analyst's side finds the fit's own in the same round
        "gaussian", start=np.zeros_like, link=lambda mu: mu, inverse=lambda eta: eta,
        dmu_deta=np.ones_like, variance=np.ones_like,
        deviance=lambda y, mu: float(np.sum((y - mu) ** 2)), loglik=lambda y, mu: None,
        check=lambda y, outcome: None),
    "binomial": Family(
        "binomial", start=lambda y: (y + 0.5) / 2, link=lambda mu: np.log(mu / (1 - mu)), inverse=_expit,
        dmu_deta=lambda mu: mu * (1 - mu), variance=lambda mu: mu * (1 - mu),
        deviance=lambda y, mu: float(2 * np.sum(_ylogy(y, mu) + _ylogy(1 - y, 1 - mu))),
        loglik=lambda y, mu: float(np.sum(y * np.log(mu) + (1 - y) * np.log(1 - mu))),
        check=_binary),
    "poisson": Family(
        "poisson", start=lambda y: y + 0.1, link=np.log, inverse=np.exp,
        dmu_deta=lambda mu: mu, variance=lambda mu: mu,
        deviance=lambda y, mu: float(2 * np.sum(_ylogy(y, mu) - (y - mu))), loglik=_poisson_loglik,
        check=_counts),
}


def released_values(p: int) -> int:
    """Values one round releases for p parameters: XᵀWX's upper triangle, XᵀWz and the scalars."""
    return p * (p + 1) // 2 + p + EXTRA_VALUES


def glm_in_engine(a: GlmArgs, scan: Any, ctx: Context) -> dict[str, Any]:
    """The step in the dataset's engine (:mod:`.glm_sql`), out of core; a formula the SQL design cannot
    express (see :mod:`.design_sql`), or wider than ``glm_sql.MAX_SQL_COLUMNS``, runs in memory."""
    spec = formulas.parse(a.formula)
    d = design_sql.compile_design(spec, scan.schema, a.levels, ctx.levels)
    if d is None or len(d.names) > glm_sql.MAX_SQL_COLUMNS:
        return glm(a, scan.frame(used_columns(a, scan.schema.columns)), ctx)
    rules, p, family = ctx.rules, len(d.names), FAMILIES[a.family]
    known, sums = glm_sql.step(scan, d, rules, a.family, a.beta)
    n = known.n
    disclosure.check_cohort(n, rules, N_("the rows with every model column present"))
    _check_size(n, p, rules)
    known.check_small_groups(scan)
    ctx.evidence["rows"] = known.evidence(scan)
    if (a.family == "binomial" and known.stats["not_binary"]) or (a.family == "poisson" and known.stats["negative"]):
        family.check(np.array([-1.0]), spec.outcome)  # raises, naming the outcome
    if a.beta is not None and len(a.beta) != p:
        raise InvalidInput(f"beta has {len(a.beta)} values but the design has {p} columns {d.names}")
    out: dict[str, Any] = {"n": n, **disclosure.dropped_rows(known.selected - n, rules), "columns": d.names}
    if a.beta is not None and not np.all(np.isfinite(a.beta)):
        return {**out, "finite": False}
    stats = sums()
    if stats["bad"]:
        return {**out, "finite": False}
    loglik = stats.get("loglik")
    if a.family == "poisson":
        loglik = float(loglik) - known.gammaln(scan)
    upper = [float(stats[f"xwx_{i}_{j}"]) for i in range(p) for j in range(i, p)]
    xtwz = [float(stats[f"xwz_{i}"]) for i in range(p)]
    values = {"deviance": float(stats["deviance"]), "pearson_chi2": float(stats["pearson_chi2"]),
              "loglik": None if loglik is None else float(loglik), "y_sum": float(stats["y_sum"])}
    numbers = [*upper, *xtwz, *(v for v in values.values() if v is not None)]
    if not np.all(np.isfinite(numbers)):
        return {**out, "finite": False}
    return {**out, "finite": True, "xtwx": upper, "xtwz": xtwz, **values}


def glm(a: GlmArgs, df: pd.DataFrame, ctx: Context) -> dict[str, Any]:
    """The step in memory, on the selected rows of the used columns (formulaic's design matrix)."""
    spec = formulas.parse(a.formula)
    d = _design(spec, public_levels_only(df, spec, a.levels, ctx.levels), a.levels)
    n, p = d.X.shape[0], len(d.names)
    disclosure.check_cohort(n, ctx.rules, N_("the rows with every model column present"))
    _check_size(n, p, ctx.rules)
    _check_small_groups(d, spec, a.levels, ctx.rules)
    ctx.rows_used(d.frame.index)
    family = FAMILIES[a.family]
    family.check(d.y, spec.outcome)
    if a.beta is None:
        mu = family.start(d.y)
        eta = family.link(mu)
    else:
        if len(a.beta) != p:
            raise InvalidInput(f"beta has {len(a.beta)} values but the design has {p} columns {d.names}")
        with np.errstate(over="ignore", invalid="ignore"):
            eta = d.X @ np.asarray(a.beta, dtype=float)
            mu = family.inverse(eta)
    out: dict[str, Any] = {"n": n, **disclosure.dropped_rows(d.dropped, ctx.rules), "columns": d.names}
    with np.errstate(all="ignore"):
        gprime = family.dmu_deta(mu)
        w = gprime ** 2 / family.variance(mu)
        z = eta + (d.y - mu) / gprime
        xtwx = (d.X * w[:, None]).T @ d.X
        xtwz = d.X.T @ (w * z)
        stats = {"deviance": family.deviance(d.y, mu),
                 "pearson_chi2": float(np.sum((d.y - mu) ** 2 / family.variance(mu))),
                 "loglik": family.loglik(d.y, mu), "y_sum": float(d.y.sum())}
    upper = xtwx[np.triu_indices(p)]
    numbers = [*upper, *xtwz, *(v for v in stats.values() if v is not None)]
    if not np.all(np.isfinite(numbers)):
        # coefficients far outside the data's range (an overshooting step): the analyst halves it
        return {**out, "finite": False}
    return {**out, "finite": True, "xtwx": upper.tolist(), "xtwz": xtwz.tolist(), **stats}


_cache: OrderedDict[str, formulas.Design] = OrderedDict()
_cache_lock = threading.Lock()


def _design(spec: formulas.Spec, df: pd.DataFrame, levels: dict[str, list]) -> formulas.Design:
    """The design matrix, from a small cache keyed by the formula, the levels and the used data's hash."""
    used = [spec.outcome, *spec.variables]
    if not set(used) <= set(df.columns):
        return formulas.design(spec, df, levels)  # raises, naming the missing column
    h = hashlib.sha256(json.dumps([spec.formula, levels, used], default=str).encode())
    h.update(pd.util.hash_pandas_object(df[used], index=False).to_numpy().tobytes())
    key = h.hexdigest()
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    d = formulas.design(spec, df, levels)
    if d.X.nbytes <= CACHE_MAX_BYTES // CACHED_DESIGNS:
        with _cache_lock:
            _cache[key] = d
            while len(_cache) > CACHED_DESIGNS:
                _cache.popitem(last=False)
    return d


def public_levels_only(df: pd.DataFrame, spec: formulas.Spec, asked: dict[str, list],
                        public: dict[str, list]) -> pd.DataFrame:
    """The frame with values of categorical terms outside the listing's levels made missing.

    Whatever levels the analyst names, the rows of a hidden (rare) level are then dropped the same
    way, and a named hidden level is an empty column: the result does not depend on the guess.
    """
    changed = {}
    for name in spec.variables:
        if name not in asked or name not in df.columns:
            continue
        if name not in public:
            raise InvalidInput(N_("{name!r} has no public levels in this dataset's listing, so it cannot be a "
                                  "categorical term here; use it as a number or ask the owner").format(name=name))
        changed[name] = df[name].where(df[name].isin(public[name]))
    return df.assign(**changed) if changed else df



def _check_size(n: int, p: int, rules: DisclosureSection) -> None:
    """Residual degrees of freedom and saturation, in place of a count of released values: IRLS
    sums have a fixed size, and what makes a fit disclose rows is too few rows per parameter."""
    if n - p < rules.safe_dof_threshold:
        raise disclosure.Blocked(
            N_("a model with {p} parameters on these rows leaves fewer than {threshold} residual "
               "degrees of freedom (the domain's safe_dof_threshold), so its fit would describe individual rows; "
               "use fewer terms or more rows").format(p=p, threshold=rules.safe_dof_threshold))
    if p > rules.max_parameters_per_row * n:
        raise disclosure.Blocked(
            N_("a model with {p} parameters is saturated for these rows (more than {limit:g}"
               " parameters per row, the domain's max_parameters_per_row); use fewer terms or more rows").format(
                p=p, limit=rules.max_parameters_per_row))


def _check_small_groups(d: formulas.Design, spec: formulas.Spec, levels: dict[str, list],
                        rules: DisclosureSection) -> None:
    """Refuse sums over 1..k-1 people: any model column, or the outcome, whose values other than its
    most common one cover fewer than k rows, whatever its coding (0/1, 0/2, an interaction)."""
    k = rules.min_cell_count
    columns = [(name, d.X[:, j]) for j, name in enumerate(d.names)] + [(f"outcome {spec.outcome}", d.y)]
    for name, col in columns:
        if _off_mode(col) in range(1, k):
            where = N_("the outcome") if name.startswith("outcome ") else N_("the model column {name!r}").format(
                name=name)
            raise disclosure.Blocked(
                N_("{where} differs from its most common value on fewer than {k} rows here, under the minimum "
                   "cell count; merge rare levels, drop the term or widen the selection").format(where=where, k=k))
    for name, col in columns:  # each column's sum is in XᵀWX (gaussian: exactly), the outcome's is y_sum
        where = "the outcome" if name.startswith("outcome ") else f"the model column {name!r}"
        disclosure.check_magnitude(col, rules, f"the sums of {where}")
    for name in spec.variables:
        if name in levels:
            counts = d.frame[name].value_counts()
            if ((counts > 0) & (counts < k)).any():
                raise disclosure.Blocked(N_("a level of {name!r} has fewer than {k} rows here, under the minimum "
                                            "cell count; merge rare levels or leave them out of levels=").format(
                    name=name, k=k))


def _off_mode(col: np.ndarray) -> int:
    """Rows whose value is not the column's most common value."""
    if col.size == 0:
        return 0
    _, counts = np.unique(col, return_counts=True)
    return int(col.size - counts.max())


class GlmRound(BaseModel):
    """One IRLS round's input: the current coefficients (none: the family's starting values)."""

    model_config = ConfigDict(extra="forbid")
    beta: list[float] | None = Field(None, max_length=500)


register("glm", GlmArgs, glm_in_engine, round_inputs=GlmRound, sql=True)
