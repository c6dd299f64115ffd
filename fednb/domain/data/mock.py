"""Mock datasets: synthetic look-alikes an analyst can see and dry-run code on.

Each column is drawn on its own from a coarsened marginal of the real column, so no real row is
copied and joint structure is not revealed:
- numbers: an equal-frequency histogram whose outer edges are the k-th smallest and k-th largest
  values rounded outwards (extremes are never shown), values drawn uniformly inside bins;
- categories and booleans: levels seen at least ``min_cell_count`` times, with their frequencies;
  rarer levels are not revealed at all (not in the values, not in the dtype's categories);
- dates: as numbers; free text: placeholders; missing values at the real (rounded) rate.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

MAX_BINS = 20
TEXT_LEVELS = 50  # more distinct strings than this and a column is free text, not a category


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


CODE_LEVELS = 20  # an integer column with this few distinct values is a code (0/1, a score), with levels


def has_levels(s: pd.Series, kind: str) -> bool:
    return kind in ("categorical", "boolean") or (kind == "integer" and s.nunique(dropna=True) <= CODE_LEVELS)


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


def numeric_bins(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Equal-frequency bin edges and counts with the tails (k rows each side) folded in."""
    values = np.sort(values.astype(float))
    n = len(values)
    if n < 2 * k:
        return None
    lo, hi = nice_floor(values[k - 1]), nice_ceil(values[n - k])
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


def public_range(s: pd.Series, k: int) -> list[float] | None:
    values = s.dropna().to_numpy()
    if pd.api.types.is_datetime64_any_dtype(s) or len(values) < 2 * k:
        return None
    bins = numeric_bins(values, k)
    return None if bins is None else [float(bins[0][0]), float(bins[0][-1])]


def revealed_levels(s: pd.Series, k: int) -> list[Any]:
    counts = s.value_counts(dropna=True)
    levels = [lvl for lvl, c in counts.items() if c >= k]
    try:
        return sorted(levels)
    except TypeError:
        return levels


def _draw_numeric(s: pd.Series, k: int, rows: int, rng: np.random.Generator) -> pd.Series:
    is_dt = pd.api.types.is_datetime64_any_dtype(s)
    values = s.dropna()
    raw = values.astype("int64").to_numpy() if is_dt else values.to_numpy(dtype=float)
    bins = numeric_bins(raw, k)
    if bins is None:
        return pd.Series([np.nan] * rows, dtype=float)
    edges, counts = bins
    which = rng.choice(len(counts), size=rows, p=counts / counts.sum())
    drawn = rng.uniform(edges[which], edges[which + 1])
    if is_dt:
        return pd.Series(pd.to_datetime(drawn.astype("int64")))
    if pd.api.types.is_integer_dtype(s):
        return pd.Series(np.round(drawn).astype("int64"))
    decimals = _decimals(values)
    return pd.Series(np.round(drawn, decimals) if decimals is not None else drawn)


def _decimals(values: pd.Series) -> int | None:
    """Round mock numbers like the real ones are rounded (a bmi of 27.3 stays one decimal)."""
    sample = values.to_numpy(dtype=float)[:1000]
    for d in range(0, 7):
        if np.allclose(sample, np.round(sample, d), rtol=0, atol=1e-9):
            return d
    return None


def _draw_levels(s: pd.Series, k: int, rows: int, rng: np.random.Generator) -> pd.Series:
    counts = s.value_counts(dropna=True)
    counts = counts[counts >= k]
    if counts.empty:
        return pd.Series([None] * rows, dtype=object)
    levels = list(counts.index)
    drawn = rng.choice(len(levels), size=rows, p=(counts / counts.sum()).to_numpy())
    return pd.Series([levels[i] for i in drawn], dtype=object)


def make_mock(df: pd.DataFrame, *, min_cell_count: int, rows: int | None = None, seed: int = 0) -> pd.DataFrame:
    """A synthetic frame with ``df``'s columns and dtypes and coarsened marginals.

    Rows that happen to equal a real row (likely when every column is coarse) are drawn again, and
    dropped if they keep matching: a mock never shows a real record, even by chance.
    """
    rng = np.random.default_rng(seed)
    rows = int(rows if rows is not None else min(len(df), 500))
    mock = _draw_frame(df, min_cell_count, rows, rng)
    real = set(pd.util.hash_pandas_object(df, index=False))
    for _ in range(20):
        clash = pd.util.hash_pandas_object(mock, index=False).isin(real).to_numpy()
        if not clash.any():
            return mock
        redraw = _draw_frame(df, min_cell_count, int(clash.sum()), rng)
        mock = pd.concat([mock[~clash], redraw], ignore_index=True)
    clash = pd.util.hash_pandas_object(mock, index=False).isin(real).to_numpy()
    return mock[~clash].reset_index(drop=True)


def _draw_frame(df: pd.DataFrame, min_cell_count: int, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    k = max(1, min_cell_count)
    out: dict[str, pd.Series] = {}
    for name in df.columns:
        s = df[name]
        kind = column_kind(s)
        if has_levels(s, kind):
            col = _draw_levels(s, k, rows, rng)
        elif kind in ("integer", "numeric", "datetime"):
            col = _draw_numeric(s, k, rows, rng)
        else:
            col = pd.Series([f"{name}-{i % 20}" for i in range(rows)], dtype=object)
        missing = round(float(s.isna().mean()), 2)
        if missing > 0:
            col = col.astype(object if kind not in ("integer", "numeric") else float)
            col[rng.random(rows) < missing] = None
        out[name] = _like(col, s, kind, k)
    return pd.DataFrame(out)


def _like(col: pd.Series, real: pd.Series, kind: str, k: int) -> pd.Series:
    """Cast to the real column's dtype without leaking unrevealed categories."""
    dtype = real.dtype
    try:
        if isinstance(dtype, pd.CategoricalDtype):
            return col.astype(pd.CategoricalDtype(revealed_levels(real, k), ordered=dtype.ordered))
        if kind == "boolean" and col.isna().any():
            return col.astype("boolean")
        if kind == "integer" and col.isna().any():
            return col.astype("Int64")
        return col.astype(dtype)
    except (TypeError, ValueError):
        return col
