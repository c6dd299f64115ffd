"""Pooling noisy (differentially private) releases, with the standard error the noise adds.

Each domain releases noisy sums (on a lattice far finer than the noise) with the exact standard
deviation of its discrete noise (see :mod:`fednb.domain.release.noisy`); exact parts from domains that added none count with deviation 0. Noises
are independent across domains and components, so variances add; ratios (a mean, a variance) get
theirs by the delta method (first-order Taylor expansion, e.g. Casella & Berger, *Statistical
Inference*, 2nd ed., §5.5.4). The standard error is of the noise only: how far the released value
may be from the exact pooled statistic, not the sampling error of the data.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from fednb.federated.stats import sum_crosstabs


def noisy(parts: dict[str, dict]) -> bool:
    return any(isinstance(p, dict) and p.get("dp") for p in parts.values())


def _std(p: dict, key: str) -> float:
    return float(((p.get("dp") or {}).get("std") or {}).get(key, 0.0))


def spent(parts: dict[str, dict]) -> dict[str, float]:
    return {d: float(p["dp"]["epsilon"]) for d, p in parts.items() if p.get("dp")}


def count(parts: dict[str, dict]) -> tuple[float, float]:
    value = sum(float(p["n"]) for p in parts.values())
    return value, math.sqrt(sum(_std(p, "n") ** 2 for p in parts.values()))


def total(parts: dict[str, dict]) -> tuple[float, float]:
    value = sum(float(p["sum"]) for p in parts.values())
    return value, math.sqrt(sum(_std(p, "sum") ** 2 for p in parts.values()))


def _moments(p: dict) -> tuple[float, float, float, np.ndarray]:
    """(N, S1 = Σx, S2 = Σx² or nan) of one part and the covariance of their noise (3×3)."""
    dp = p.get("dp")
    if not dp:
        n, mean = float(p["n"]), float(p["mean"])
        s2 = float(p["m2"]) + n * mean * mean if p.get("m2") is not None else math.nan
        return n, n * mean, s2, np.zeros((3, 3))
    c, n, t = float(dp["center"]), float(p["n"]), float(p["t"])
    vn, vt = _std(p, "n") ** 2, _std(p, "t") ** 2
    q = float(p["q"]) if "q" in p else math.nan
    vq = _std(p, "q") ** 2
    # S1 = c N + T, S2 = Q + 2c T + c² N, with N, T, Q independent
    jac = np.array([[1, 0, 0], [c, 1, 0], [c * c, 2 * c, 1]], dtype=float)
    cov = jac @ np.diag([vn, vt, vq]) @ jac.T
    return n, c * n + t, q + 2 * c * t + c * c * n, cov


def mean(parts: dict[str, dict]) -> tuple[float, float]:
    n, s1, cov = 0.0, 0.0, np.zeros((3, 3))
    for p in parts.values():
        pn, ps1, _, pc = _moments(p)
        n, s1, cov = n + pn, s1 + ps1, cov + pc
    m = s1 / n
    grad = np.array([-s1 / n**2, 1 / n])  # d(S1/N) / d(N, S1)
    return m, float(math.sqrt(max(grad @ cov[:2, :2] @ grad, 0.0)))


def variance(parts: dict[str, dict], ddof: int = 1) -> tuple[float, float]:
    n, s1, s2, cov = 0.0, 0.0, 0.0, np.zeros((3, 3))
    for p in parts.values():
        pn, ps1, ps2, pc = _moments(p)
        n, s1, s2, cov = n + pn, s1 + ps1, s2 + ps2, cov + pc
    d = n - ddof
    m2 = s2 - s1 * s1 / n
    value = max(m2, 0.0) / d
    grad = np.array([(s1 * s1 / n**2) / d - m2 / d**2, -2 * s1 / (n * d), 1 / d])
    return value, float(math.sqrt(max(grad @ cov @ grad, 0.0)))


def cells(parts: dict[str, dict], key: str) -> tuple[list, list[float]]:
    """Cell-wise sums of flat cell lists (None: suppressed by an exact domain) and their standard errors."""
    rows = [[float(c) if c is not None else None for c in p[key]] for p in parts.values()]
    stds = [_std(p, "cell") for p in parts.values()]
    values = [None if any(c is None for c in col) else float(sum(col)) for col in zip(*rows)]
    se = math.sqrt(sum(s * s for s in stds))
    return values, [se] * len(values)


def histogram(parts: dict[str, dict]) -> tuple[pd.DataFrame, pd.Series]:
    flat = {d: {"cells": [p["below"], *p["counts"], p["above"]], "dp": p.get("dp")} for d, p in parts.items()}
    values, se = cells(flat, "cells")
    edges = next(iter(parts.values()))["edges"]
    frame = pd.DataFrame({"left": [-np.inf, *edges], "right": [*edges, np.inf],
                          "count": pd.array(values, dtype="Float64")})
    return frame, pd.Series(se, name="se")


def crosstab(parts: dict[str, dict]) -> tuple[pd.DataFrame, float]:
    return sum_crosstabs(parts, "Float64", float), math.sqrt(sum(_std(p, "cell") ** 2 for p in parts.values()))


def secure(fields: dict[str, float], public: dict[str, dict], statistic: str) -> tuple[float, float]:
    """Value and noise standard error of a secure count, sum or mean from the summed ``fields``."""
    noisy_parts = [p["dp"] for p in public.values() if p.get("dp")]
    if statistic == "count":
        return fields["n"], math.sqrt(sum(d["std"].get("n", 0.0) ** 2 for d in noisy_parts))
    if statistic == "sum":
        return fields["sum"], math.sqrt(sum(d["std"].get("sum", 0.0) ** 2 for d in noisy_parts))
    n, s = fields["n"], fields["sum"]
    m = s / n
    var_n = sum(d["std"]["n"] ** 2 for d in noisy_parts)
    var_s = sum(d["center"] ** 2 * d["std"]["n"] ** 2 + d["std"]["t"] ** 2 for d in noisy_parts)
    cov = sum(d["center"] * d["std"]["n"] ** 2 for d in noisy_parts)
    return m, math.sqrt(max(var_s - 2 * m * cov + m * m * var_n, 0.0)) / n


def interval(value: Any, se: Any, level: float) -> tuple[Any, Any]:
    """Normal-approximation interval value ± z·se (the sum of independent noises is close to normal)."""
    from fednb.federated.distributions import norm_ppf

    z = norm_ppf(0.5 + level / 2)
    return value - z * se, value + z * se
