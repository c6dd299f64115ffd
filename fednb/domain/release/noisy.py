"""Differentially private built-ins: the same statistics, released with calibrated noise.

Neighbouring datasets differ by one row added or removed. Each release is ε-DP with Laplace noise
(Dwork & Roth, *The Algorithmic Foundations of Differential Privacy*, 2014, Thm 3.6) or (ε, δ)-DP
with analytically calibrated Gaussian noise (Balle & Wang 2018), with these sensitivities:

- ``count``: one row changes n by 1.
- ``sum``: values are clamped to the owner's bounds [lo, hi] (``fednb domain set-bounds``); one row
  changes the sum by at most max(|lo|, |hi|).
- ``mean``: a noisy count and a noisy sum of x − c, c = (lo + hi)/2, whose sensitivity is
  (hi − lo)/2, each with ε/2 (Dwork & Roth 2014, §3.5.1 composition; the centring halves the noise
  on the sum, as in Smith 2011's "Privacy-preserving statistical estimation").
- ``variance``: noisy count, Σ(x − c) and Σ(x − c)² (sensitivity ((hi − lo)/2)²), ε/3 each.
- ``histogram``, ``crosstab``: one row is in one cell, so each cell gets noise of sensitivity 1 at
  the full ε (parallel composition, Dwork & Roth 2014, §3.3 "histogram queries"). Bins and levels
  are public; "(other)" is always present so the table's shape does not depend on the data.
- ``kaplan_meier``: the same, on the table of events and censorings per interval and group
  (:func:`fednb.domain.run.builtins.survival.noisy_table`).

``quantiles`` and ``glm`` have no noisy version. They release exact counts (quantiles) and exact
counts and sums (the GLM's n, Σy, XᵀWz), so under a policy that lists ``count`` (or, for the GLM,
``sum``, ``mean`` or ``variance``) in ``privacy.noisy`` they are refused with that reason rather
than quietly released exactly outside the budget. A noisy IRLS or a
noisy quantile protocol would need its own accounting; refusing is the honest default until then.

Noisy releases skip the exact small-cell rules: the noise protects small groups, and a threshold on
an exact count would itself leak outside the budget. Noisy values are released on a lattice finer than
the noise by 2¹² (so their low bits say nothing; :mod:`fednb.privacy.mechanisms`), not rounded to it,
with their noise's standard deviation, so the analyst's pooled estimate carries error bars.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fednb.domain.review.policy import NOISY_BUILTINS, Policy
from fednb.domain.run.builtins.registry import REGISTRY, Context, column, numeric, select
from fednb.errors import InvalidInput
from fednb.locale import N_
from fednb.privacy.mechanisms import Noise, calibrate, new_rng

NEEDS_BOUNDS = ("sum", "mean", "variance")
# Built-ins with no noisy version, and the noisy statistics whose exact values they release.
EXACT_ONLY = {"quantiles": ("count", "histogram"), "glm": ("count", "sum", "mean", "variance")}
PARTS = {"count": 1, "sum": 1, "mean": 2, "variance": 3, "histogram": 1, "crosstab": 1, "kaplan_meier": 1}


@dataclass(frozen=True)
class Spend:
    epsilon: float
    delta: float
    mechanism: str


def wanted(name: str, args: dict[str, Any], policy: Policy) -> bool:
    """Whether this built-in is released with noise: the analyst asked, or the policy requires it
    (for an exact-only built-in, :func:`plan` then refuses it)."""
    return args.get("privacy") is not None or name in policy.privacy.noisy or bool(exact_under_noise(name, policy))


def exact_under_noise(name: str, policy: Policy) -> list[str]:
    """The statistics the policy releases only with noise that exact-only built-in ``name`` would
    release exactly (quantiles: counts; a GLM: n and sums of the outcome and covariates)."""
    return [s for s in EXACT_ONLY.get(name, ()) if s in policy.privacy.noisy]


def plan(name: str, args: dict[str, Any], policy: Policy, analyst: str, dataset: str) -> Spend:
    """What one release will spend; refuses (``InvalidInput``, at submission) what the policy does not
    allow, including an exact-only built-in whose counts or sums the policy releases only with noise."""
    covered = exact_under_noise(name, policy)
    if covered:
        raise InvalidInput(N_("this domain releases {covered} only with noise (privacy.noisy in its policy), and "
                             "{name} has no noisy version: it would release them exactly, outside the privacy "
                             "budget, so it is refused here; use the noisy {covered} instead").format(
            covered=", ".join(covered), name=name))
    if name not in NOISY_BUILTINS:
        raise InvalidInput(N_("{name} has no noisy (differentially private) version; noise is available for "
                             "{available}").format(name=name, available=list(NOISY_BUILTINS)))
    asked = args.get("privacy") or {}
    rules = policy.privacy
    epsilon = asked.get("epsilon") or rules.query_epsilon
    if epsilon > rules.max_query_epsilon:
        raise InvalidInput(N_("one release may spend at most epsilon {limit:g} here "
                             "(the policy's max_query_epsilon); you asked for {epsilon:g}").format(
            limit=rules.max_query_epsilon, epsilon=epsilon))
    mechanism = asked.get("mechanism") or "laplace"
    delta = 0.0
    if mechanism == "gaussian":
        allowance = rules.allowance(analyst, dataset)
        delta = asked.get("delta") or allowance.delta / 100
        if allowance.delta <= 0:
            raise InvalidInput(N_("this domain gives no delta budget, so only the Laplace mechanism can be used"))
    return Spend(float(epsilon), float(delta), mechanism)


def check(name: str, args: dict[str, Any], bounds: dict[str, list[float]]) -> None:
    """At submission: the column of a noisy sum, mean or variance needs the owner's bounds."""
    if name in NEEDS_BOUNDS:
        col = args.get("column")
        if col not in bounds:
            raise InvalidInput(N_("a noisy {name} of {column!r} needs clamping bounds, and the owner has set none "
                                 "for this column; ask them to run `fednb domain set-bounds DIR DATASET {column} LO "
                                 "HI`").format(name=name, column=col))


def release(name: str, args: dict[str, Any], df: pd.DataFrame, ctx: Context, bounds: dict[str, list[float]],
            spend: Spend, rng: np.random.Generator | None = None) -> dict[str, Any]:
    """The noisy result of built-in ``name`` on the private frame."""
    parsed = REGISTRY[name].args.model_validate(args)
    rows = select(df, parsed.where)
    rng = rng or new_rng()
    k = PARTS[name]
    share = (spend.epsilon / k, spend.delta / k)

    def noise(sensitivity: float) -> Noise:
        return calibrate(spend.mechanism, sensitivity, *share)

    info: dict[str, Any] = {"mechanism": spend.mechanism, "epsilon": spend.epsilon, "delta": spend.delta}
    if name == "count":
        n = int(len(rows) if parsed.column is None else column(rows, parsed.column).notna().sum())
        nz = noise(1.0)
        return {"n": nz.release(n, rng), "dp": {**info, "std": {"n": nz.std}}}
    if name == "histogram":
        return _histogram(numeric(rows, parsed.column), parsed.bins, noise(1.0), rng, info)
    if name == "crosstab":
        return _crosstab(rows, parsed.row, parsed.col, ctx.levels, noise(1.0), rng, info)
    if name == "kaplan_meier":
        from fednb.domain.run.builtins.survival import noisy_table

        nz = noise(1.0)
        return {"groups": noisy_table(parsed, rows, ctx.levels, nz, rng), "dp": {**info, "std": {"cell": nz.std}}}
    lo, hi = bounds[parsed.column]
    x = np.clip(numeric(rows, parsed.column), lo, hi)
    info["bounds"] = [lo, hi]
    if name == "sum":
        nz = noise(max(abs(lo), abs(hi)))
        return {"sum": nz.release(float(x.sum()), rng), "dp": {**info, "std": {"sum": nz.std}}}
    c, half = (lo + hi) / 2, (hi - lo) / 2
    n_noise, t_noise = noise(1.0), noise(half)
    n = n_noise.release(len(x), rng)
    t = t_noise.release(float((x - c).sum()), rng)
    info.update(center=c, std={"n": n_noise.std, "t": t_noise.std})
    mean = c + t / n if n >= 1 else None
    if name == "mean":
        return {"n": n, "t": t, "mean": mean, "dp": info}
    q_noise = noise(half * half)
    q = q_noise.release(float(((x - c) ** 2).sum()), rng)
    info["std"]["q"] = q_noise.std
    m2 = max(q - t * t / n, 0.0) if n >= 1 else None
    return {"n": n, "t": t, "q": q, "mean": mean, "m2": m2, "dp": info}


def _histogram(values: np.ndarray, edges: list[float], nz: Noise, rng: np.random.Generator,
               info: dict) -> dict[str, Any]:
    inner, _ = np.histogram(values, bins=np.asarray(edges))
    cells = np.concatenate([[np.sum(values < edges[0])], inner, [np.sum(values > edges[-1])]]).astype(float)
    noisy = nz.release(cells, rng)
    return {"edges": list(edges), "below": float(noisy[0]), "counts": noisy[1:-1].tolist(),
            "above": float(noisy[-1]), "dp": {**info, "std": {"cell": nz.std}}}


def _crosstab(df: pd.DataFrame, row: str, col: str, levels: dict[str, list], nz: Noise,
              rng: np.random.Generator, info: dict) -> dict[str, Any]:
    pair = df[[column(df, row).name, column(df, col).name]].dropna()
    labels = []
    for name in (row, col):
        public = levels.get(name)
        if public is None:
            raise InvalidInput(N_("column {name!r} is not categorical; crosstab needs categories").format(name=name))
        labels.append((list(public) + ["(other)"], pair[name].where(pair[name].isin(public), "(other)")))
    (rl, rv), (cl, cv) = labels
    table = pd.crosstab(pd.Categorical(rv, categories=rl), pd.Categorical(cv, categories=cl),
                        dropna=False).reindex(index=rl, columns=cl, fill_value=0).to_numpy(dtype=float)
    noisy = nz.release(table, rng)
    plain = [v.item() if hasattr(v, "item") else v for v in rl], [v.item() if hasattr(v, "item") else v for v in cl]
    return {"rows": plain[0], "cols": plain[1], "counts": noisy.tolist(), "dp": {**info, "std": {"cell": nz.std}}}
