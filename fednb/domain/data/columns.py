"""What kind of values a column holds, and the coarsened facts about it that may be shown.

Shared by the dataset metadata (levels, public range) and the mock (which draws from the same
coarsened facts), so neither reveals more than the other: levels seen fewer than ``k`` times and the
``k`` most extreme values at either end are never shown.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

MAX_BINS = 20
TEXT_LEVELS = 50  # more distinct strings than this and a column is free text, not a category
CODE_LEVELS = 20  # an integer column with this few distinct values is a code (0/1, a score), with levels


def column_kind(s: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(s):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(s):
        return "datetime"
    if pd.api.types.is_integer_dtype(s):
        return "integer"
    if pd.api.types.is_numeric_dtype(s):
        return "numeric"
    if isinstance(s.dtype, pd.CategoricalDtype) or s.nunique(dropna=True) <= TEXT_LEVELS:
        return "categorical"
    return "text"


def has_levels(s: pd.Series, kind: str) -> bool:
    return kind in ("categorical", "boolean") or (kind == "integer" and s.nunique(dropna=True) <= CODE_LEVELS)


def as_float(s: pd.Series) -> np.ndarray:
    """Numbers, booleans and datetimes (as nanoseconds) as floats; missing values as NaN."""
    if pd.api.types.is_datetime64_any_dtype(s):
        ns = s.dt.tz_convert("UTC").dt.tz_localize(None) if getattr(s.dt, "tz", None) is not None else s
        out = ns.to_numpy(dtype="datetime64[ns]").view("int64").astype(float)
        out[s.isna().to_numpy()] = np.nan
        return out
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def nice_floor(x: float) -> float:
    return _nice(x, math.floor)


def nice_ceil(x: float) -> float:
    return _nice(x, math.ceil)


def _nice(x: float, rnd) -> float:
    """Round to two significant digits in the given direction (hides the exact extreme value)."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    step = 10 ** (math.floor(math.log10(abs(x))) - 1)
    return float(rnd(x / step) * step)


def month_floor(ns: float) -> float:
    return float(pd.Timestamp(int(ns)).to_period("M").start_time.value)


def month_ceil(ns: float) -> float:
    return float((pd.Timestamp(int(ns)).to_period("M") + 1).start_time.value)


def numeric_bins(values: np.ndarray, k: int, *, dates: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
    """Equal-frequency bin edges and counts with the tails (k rows each side) folded in. The outer
    edges are rounded outwards: numbers to two significant digits, dates (nanoseconds) to months."""
    values = np.sort(np.asarray(values, dtype=float))
    values = values[np.isfinite(values)]
    n = len(values)
    if n < 2 * k:
        return None
    floor, ceil = (month_floor, month_ceil) if dates else (nice_floor, nice_ceil)
    lo, hi = floor(values[k - 1]), ceil(values[n - k])
    if hi <= lo:
        hi = lo + 1.0
    nbins = int(max(1, min(MAX_BINS, n // (2 * k))))
    edges = np.unique(np.quantile(np.clip(values, lo, hi), np.linspace(0, 1, nbins + 1)))
    edges[0], edges[-1] = lo, hi
    edges = np.unique(edges)
    if len(edges) < 2:
        edges = np.array([lo, hi])
    counts, _ = np.histogram(np.clip(values, lo, hi), bins=edges)
    return edges, counts


def quantile_knots(values: np.ndarray, k: int, *, dates: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
    """The same coarsened distribution as :func:`numeric_bins`, as knots of a piecewise-linear
    quantile function: (values, probabilities). Repeated knots are kept, so a value that many rows
    share (a spike of zeros in a count) stays a point mass instead of being smeared over a bin."""
    bins = numeric_bins(values, k, dates=dates)
    if bins is None:
        return None
    edges = bins[0]
    lo, hi = edges[0], edges[-1]
    finite = np.asarray(values, dtype=float)
    finite = np.clip(finite[np.isfinite(finite)], lo, hi)
    nbins = int(max(1, min(MAX_BINS, len(finite) // (2 * k))))
    probs = np.linspace(0, 1, nbins + 1)
    knots = np.quantile(finite, probs)
    knots[0], knots[-1] = lo, hi
    return np.maximum.accumulate(knots), probs


def public_range(s: pd.Series, k: int) -> list[float] | None:
    values = s.dropna().to_numpy()
    if pd.api.types.is_datetime64_any_dtype(s) or len(values) < 2 * k:
        return None
    bins = numeric_bins(values, k)
    return None if bins is None else [float(bins[0][0]), float(bins[0][-1])]


def sort_levels(levels: list[Any]) -> list[Any]:
    try:
        return sorted(levels)
    except TypeError:
        return levels


def revealed_levels(s: pd.Series, k: int) -> list[Any]:
    counts = s.value_counts(dropna=True)
    return sort_levels([lvl for lvl, c in counts.items() if c >= k])


def time_step(values: pd.Series) -> int:
    """The coarsest unit, in nanoseconds, that all the real timestamps are whole multiples of (a
    day, a second, ...), so mock dates look like real ones."""
    ns = as_float(values.dropna().iloc[:1000])
    for step in (86_400 * 10**9, 3_600 * 10**9, 60 * 10**9, 10**9, 10**6, 10**3):
        if np.all(np.mod(ns, step) == 0):
            return step
    return 1


def decimals(values: pd.Series) -> int | None:
    """Round mock numbers like the real ones are rounded (a bmi of 27.3 stays one decimal)."""
    sample = values.to_numpy(dtype=float)[:1000]
    for d in range(0, 7):
        if np.allclose(sample, np.round(sample, d), rtol=0, atol=1e-9):
            return d
    return None
