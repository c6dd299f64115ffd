"""Mock datasets: synthetic look-alikes an analyst can see and dry-run code on.

Two tiers, chosen per dataset in ``policy.toml`` (``[mock]``):

- tier 0: every column drawn on its own from its coarsened marginal
  (:mod:`fednb.domain.data.marginals`); the values' joint distribution is never read;
- tier 1: the same marginals joined by a Gaussian copula (:mod:`fednb.domain.data.copula`), so
  pairwise relationships survive and code that works on the mock behaves like it on the real data.

Either way the mock has exactly the requested number of rows and the real columns and dtypes; its
length is the listing's rounded row count (capped), never the exact one; and no mock row equals a
real record: a row equal to a combination of values that fewer than ``k`` real rows share is drawn
again. A combination shared by ``k`` or more real rows describes a group that the cell rule would
release as a count anyway, not a person, so on coarse data (every combination of a few categories
is some real row) such rows are allowed; without that, a mock of coarse data would be empty.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fednb.domain.data import copula, marginals
from fednb.domain.data.columns import (  # the metadata reads these from here too
    as_float,
    column_kind,
    has_levels,
    nice_ceil,
    nice_floor,
    numeric_bins,
    public_range,
    revealed_levels,
)

__all__ = ["TIERS", "column_kind", "has_levels", "make_mock", "mock_rows", "nice_ceil", "nice_floor",
           "numeric_bins", "public_range", "rare_matches", "revealed_levels"]

TIERS = (0, 1)
REDRAW_ROUNDS = 20
COMPARED_KINDS = ("levels", "numeric", "datetime")
MISSING = "\x00missing"  # how a missing text value is hashed (no real string looks like it)


def mock_rows(real_rows: int, round_to: int, cap: int) -> int:
    """The mock's length: the real row count rounded like the listing, at least ``round_to``, at most
    ``cap``, so it says nothing the listing does not."""
    rounded = int(round(real_rows / round_to) * round_to)
    return int(min(cap, max(round_to, rounded)))


def make_mock(df: pd.DataFrame, *, min_cell_count: int, rows: int | None = None, seed: int = 0,
              tier: int = 0) -> pd.DataFrame:
    """A synthetic frame with ``df``'s columns and dtypes, exactly ``rows`` long (default: the row
    count rounded to 10, at most 500)."""
    if tier not in TIERS:
        raise ValueError(f"mock tier must be one of {TIERS}, not {tier!r}")
    rng = np.random.default_rng(seed)
    k = max(1, int(min_cell_count))
    rows = int(rows if rows is not None else mock_rows(len(df), 10, 500))
    fitted = [marginals.fit(df[name], str(name), k) for name in df.columns]
    corr = copula.fit_correlation(df, fitted, rng) if tier == 1 else None

    def draw(n: int) -> pd.DataFrame:
        u = copula.draw_uniforms(corr, n, rng) if corr is not None else rng.random((n, len(fitted)))
        return pd.DataFrame({m.name: marginals.finish(m, m.sample(u[:, j]), rng) for j, m in enumerate(fitted)},
                            columns=list(df.columns))

    compared = [m.name for m in fitted if m.kind in COMPARED_KINDS]
    return _without_real_records(df, draw(rows), draw, k, rng, compared)


def compared_columns(df: pd.DataFrame, k: int) -> list[str]:
    """The columns whose mock values come from the real ones: a record is matched on these, so a
    placeholder column (free text, an identifier) cannot hide a copied combination of the others."""
    return [str(c) for c in df.columns if marginals.fit(df[c], str(c), k).kind in COMPARED_KINDS]


def canonical_hashes(df: pd.DataFrame) -> np.ndarray:
    """One hash per row that is equal for equal values whatever the dtypes (an int 3 in the real
    data and a float 3.0 in the mock are the same record)."""
    norm = {}
    for name in df.columns:
        s = df[name]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s) or pd.api.types.is_datetime64_any_dtype(s):
            norm[name] = pd.Series(as_float(s), index=df.index)
        else:
            text = s.astype(object).astype(str).to_numpy(dtype=object)
            text[s.isna().to_numpy()] = MISSING
            norm[name] = pd.Series(text, index=df.index)
    return pd.util.hash_pandas_object(pd.DataFrame(norm, index=df.index), index=False).to_numpy()


def rare_combinations(real: pd.DataFrame, k: int) -> np.ndarray:
    """Sorted hashes of the combinations of values that fewer than ``k`` real rows share."""
    counts = pd.Series(canonical_hashes(real)).value_counts()
    return np.sort(counts.index[counts < k].to_numpy())


def is_member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """``np.isin`` for a small ``values`` and a large, already sorted set (no re-sorting per call)."""
    if len(sorted_set) == 0:
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[at] == values


def rare_matches(real: pd.DataFrame, mock: pd.DataFrame, k: int) -> np.ndarray:
    """Which mock rows equal a combination of values that fewer than ``k`` real rows share, on the
    columns drawn from real values."""
    on = compared_columns(real, k)
    if not on:
        return np.zeros(len(mock), dtype=bool)
    return is_member(canonical_hashes(mock[on]), rare_combinations(real[on], k))


def _without_real_records(real: pd.DataFrame, mock: pd.DataFrame, draw, k: int,
                          rng: np.random.Generator, compared: list[str]) -> pd.DataFrame:
    """Redraw rows that equal a rare real combination; rows that keep matching (tiny, coarse data
    where every combination is a rare real row) take a copy of an accepted row, or, if none was
    accepted, a missing value in one column, which no real row of that column has."""
    if not compared:
        return mock
    rare = rare_combinations(real[compared], k)

    def clashes(frame: pd.DataFrame) -> np.ndarray:
        return is_member(canonical_hashes(frame[compared]), rare)

    clash = clashes(mock)
    for _ in range(REDRAW_ROUNDS):
        if not clash.any():
            return mock
        redraw = draw(int(clash.sum()))
        redraw.index = mock.index[clash]
        mock = _replace_rows(mock, clash, redraw)
        clash = clashes(mock)
    if not clash.any():
        return mock
    if (~clash).any():
        donors = rng.choice(np.flatnonzero(~clash), size=int(clash.sum()))
        copies = mock.iloc[donors].copy()
        copies.index = mock.index[clash]
        return _replace_rows(mock, clash, copies)
    return _blank_one_column(mock, rng, compared)


def _replace_rows(mock: pd.DataFrame, which: np.ndarray, new: pd.DataFrame) -> pd.DataFrame:
    out = pd.concat([mock[~which], new]).sort_index()
    for name in mock.columns:
        if out[name].dtype != mock[name].dtype:
            try:
                out[name] = out[name].astype(mock[name].dtype)
            except (TypeError, ValueError):
                pass
    return out.reset_index(drop=True)


def _blank_one_column(mock: pd.DataFrame, rng: np.random.Generator, compared: list[str]) -> pd.DataFrame:
    out = mock.copy()
    which = rng.integers(0, len(compared), size=len(out))
    for j, name in enumerate(compared):
        rows = which == j
        if rows.any():
            col = out[name]
            if pd.api.types.is_integer_dtype(col):
                col = col.astype("Int64")
            elif pd.api.types.is_bool_dtype(col):
                col = col.astype("boolean")
            elif not isinstance(col.dtype, pd.CategoricalDtype) and not pd.api.types.is_float_dtype(col) \
                    and not pd.api.types.is_datetime64_any_dtype(col):
                col = col.astype(object)
            col = col.copy()
            col[rows] = None
            out[name] = col
    return out
