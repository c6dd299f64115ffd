"""One column's coarsened distribution, as both mock tiers draw from it.

A marginal turns uniform numbers ``u`` in [0, 1) into column values (inverse-CDF sampling), so
tier 0 feeds it independent uniforms and tier 1 feeds it uniforms whose normal scores carry the
real columns' correlations (a Gaussian copula, see :mod:`fednb.domain.data.copula`). What a
marginal may reveal is fixed here, for both tiers:

- numbers and dates: an equal-frequency histogram (at most 20 bins of at least 2k rows) whose outer
  edges are the k-th smallest and k-th largest values rounded outwards (extremes are never shown),
  uniform inside each bin; a value that fills whole bins (a spike of zeros) stays a point mass;
- categories, booleans and numbers with few distinct values (codes, scores, counts stored as
  floats): levels seen at least ``k`` times, with their frequencies; rarer levels are never drawn
  (they are coarsened away);
- free text and identifiers: placeholders (``name-7``), so no real string is ever reproduced;
- missing values: at the real rate rounded to two decimals, only when at least ``k`` are missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtri

from fednb.domain.data import columns as cols

TEXT_PLACEHOLDERS = 20


@dataclass
class Marginal:
    """What the mock keeps of one real column."""

    name: str
    kind: str  # "levels", "numeric", "datetime", "text" or "empty"
    dtype: Any
    missing: float  # share of mock values left missing
    levels: list[Any] | None = None
    cdf: np.ndarray | None = None  # levels: cumulative shares; numeric: CDF at the knots ``edges``
    edges: np.ndarray | None = None
    decimals: int | None = None  # numbers: decimal places; dates: the time step in nanoseconds
    integer: bool = False
    ordered: bool = False

    def sample(self, u: np.ndarray) -> pd.Series:
        """Values for uniforms ``u`` (inverse-CDF sampling), before missing values are added."""
        rows = len(u)
        if self.kind == "levels":
            idx = np.minimum(np.searchsorted(self.cdf, u, side="right"), len(self.levels) - 1)
            return pd.Series([self.levels[i] for i in idx], dtype=object)
        if self.kind in ("numeric", "datetime"):
            drawn = np.interp(u, self.cdf, self.edges)
            if self.kind == "datetime":  # ``decimals`` holds the real values' time step, in ns
                step = self.decimals or 1
                stamps = pd.Series(pd.to_datetime((np.round(drawn / step) * step).astype("int64")))
                tz = getattr(self.dtype, "tz", None)
                return stamps.dt.tz_localize("UTC").dt.tz_convert(tz) if tz is not None else stamps
            if self.integer:
                return pd.Series(np.round(drawn).astype("int64"))
            return pd.Series(np.round(drawn, self.decimals) if self.decimals is not None else drawn)
        if self.kind == "text":
            return pd.Series([f"{self.name}-{i % TEXT_PLACEHOLDERS}" for i in range(rows)], dtype=object)
        return pd.Series([np.nan] * rows, dtype=float)

    def level_means(self) -> np.ndarray:
        """E[z | level] for a standard normal z cut at the levels' CDF intervals."""
        lower = ndtri(np.clip(np.concatenate([[0.0], self.cdf[:-1]]), 0, 1))
        upper = ndtri(np.clip(self.cdf, 0, 1))
        shares = np.diff(np.concatenate([[0.0], self.cdf]))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nan_to_num((norm_pdf(lower) - norm_pdf(upper)) / shares)

    def attenuation(self) -> float:
        """How much scoring levels by their mean normal score shrinks a correlation: a latent
        normal correlation rho shows as rho * sd(E[z | level]) (1 for numbers and dates)."""
        if self.kind != "levels":
            return 1.0
        shares = np.diff(np.concatenate([[0.0], self.cdf]))
        return float(np.sqrt(np.sum(shares * self.level_means() ** 2))) or 1.0

    def scores(self, s: pd.Series, rng: np.random.Generator) -> np.ndarray | None:
        """Normal scores of the real values under this marginal (the copula's input): numbers by
        their ranks (ties broken at random), levels by their mean score E[z | level] (no jitter, so
        no added noise); missing and coarsened-away values get independent normals. ``None`` for
        columns that carry no order (text, empty)."""
        z = rng.standard_normal(len(s))
        if self.kind == "levels":
            where = {lvl: i for i, lvl in enumerate(self.levels)}
            idx = np.array([where.get(v, -1) for v in s.to_numpy(dtype=object)])
            known = idx >= 0
            z[known] = self.level_means()[idx[known]]
            return z
        if self.kind in ("numeric", "datetime"):
            present = s.notna().to_numpy()
            raw = cols.as_float(s[present])
            order = np.lexsort((rng.random(len(raw)), raw))
            ranks = np.empty(len(raw))
            ranks[order] = np.arange(len(raw))
            z[present] = ndtri((ranks + 0.5) / len(raw))
            return z
        return None


def norm_pdf(z: np.ndarray) -> np.ndarray:
    """The standard normal density, 0 at +-infinity."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(np.isfinite(z), np.exp(-0.5 * np.square(np.where(np.isfinite(z), z, 0.0))) / np.sqrt(2 * np.pi), 0.0)


def fit(s: pd.Series, name: str, k: int) -> Marginal:
    """The coarsened marginal of real column ``s`` with cell threshold ``k``."""
    kind = cols.column_kind(s)
    missing_count = int(s.isna().sum())
    missing = round(missing_count / max(len(s), 1), 2) if missing_count >= k else 0.0
    ordered = isinstance(s.dtype, pd.CategoricalDtype) and bool(s.dtype.ordered)
    base = dict(name=name, dtype=s.dtype, missing=missing, ordered=ordered)
    if cols.has_levels(s, kind) or (kind == "numeric" and s.nunique(dropna=True) <= cols.CODE_LEVELS):
        counts = s.value_counts(dropna=True)
        counts = counts[counts >= k]
        if counts.empty:
            return Marginal(kind="empty", **base)
        levels = cols.sort_levels(list(counts.index))
        shares = np.array([counts[lvl] for lvl in levels], dtype=float)
        return Marginal(kind="levels", levels=levels, cdf=np.cumsum(shares) / shares.sum(), **base)
    if kind in ("integer", "numeric", "datetime"):
        values = s.dropna()
        knots = cols.quantile_knots(cols.as_float(values), k, dates=kind == "datetime")
        if knots is None:
            return Marginal(kind="empty", **base)
        edges, cdf = knots
        return Marginal(kind="datetime" if kind == "datetime" else "numeric", edges=edges, cdf=cdf,
                        integer=kind == "integer",
                        decimals=cols.time_step(values) if kind == "datetime" else cols.decimals(values),
                        **base)
    return Marginal(kind="text", **base)


def finish(m: Marginal, values: pd.Series, rng: np.random.Generator) -> pd.Series:
    """Add missing values and cast to the real column's dtype, never leaking coarsened-away levels."""
    col = values
    if m.missing > 0:
        col = col.astype(float if m.kind == "numeric" and not m.integer else object)
        col[rng.random(len(col)) < m.missing] = None
    return cast_like(col, m)


def cast_like(col: pd.Series, m: Marginal) -> pd.Series:
    dtype = m.dtype
    try:
        if isinstance(dtype, pd.CategoricalDtype):
            return col.astype(pd.CategoricalDtype(m.levels or [], ordered=m.ordered))
        if pd.api.types.is_bool_dtype(dtype) and col.isna().any():
            return col.astype("boolean")
        if pd.api.types.is_integer_dtype(dtype) and col.isna().any():
            return col.astype("Int64")
        return col.astype(dtype)
    except (TypeError, ValueError):
        return col
