"""How useful and how risky a mock is, measured against the real data when the dataset is added.

Utility (is code written on the mock meaningful?):
- ``marginal_distance``: per column, the Kolmogorov-Smirnov statistic for numbers and dates, the
  total variation distance for categories (0 = same distribution, 1 = disjoint);
- ``correlation_error``: mean and largest absolute difference between the real and the mock
  Spearman correlations over all pairs of columns (categories coded by their shared level order);
- ``pmse``: the propensity-score mean squared error of Snoke, Raab, Nowok, Dibben & Slavkovic
  ("General and specific utility measures for synthetic data", JRSS A 2018): a logistic model tries
  to tell real from mock rows; ``pmse_ratio`` divides by its expectation when they cannot be told
  apart, so about 1 is indistinguishable and large values mean the mock is easy to spot.

Risk (could the mock give away a person?):
- ``exact_match_rate``: share of mock rows equal to some real row; ``rare_match_rate``: equal to a
  combination fewer than ``k`` real rows share (the guard keeps it at 0);
- distance to closest record (DCR, Gower's distance) in the holdout design of Platzer & Reutterer
  ("Holdout-based fidelity and privacy assessment of mixed-type synthetic data", Frontiers in Big
  Data 2021): a shadow mock is built from half of the real rows; ``closer_to_real`` is the share of
  its rows nearer to those training rows than to the unseen half. About 0.5 means the mock is no
  closer to the people it was built from than to anyone else; well above 0.5 means memorisation;
- ``rare_category_exposure``: mock values that are categories seen fewer than ``k`` times, or numbers
  outside the public range (both kept at 0 by the coarsening).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from fednb.domain.data import columns as cols
from fednb.domain.data.mock import canonical_hashes, compared_columns, is_member

SAMPLE_ROWS = 5_000  # the report's distances and models use at most this many rows of each side
DCR_ROWS = 2_000
MAX_INTERACTIONS = 200
MIN_HOLDOUT = 50  # below this many rows per half, the DCR comparison is not a measurement


def build_report(real: pd.DataFrame, mock: pd.DataFrame, shadow_maker: Callable[[pd.DataFrame, int], pd.DataFrame],
                 *, k: int, tier: int, seed: int = 0) -> dict[str, Any]:
    """The full report, as plain JSON. ``shadow_maker(train, rows)`` builds a mock the same way from
    a subset of the real rows (for the holdout comparison)."""
    rng = np.random.default_rng(seed)
    measured = [c for c in real.columns if cols.column_kind(real[c]) != "text"]
    r = _sample(real, SAMPLE_ROWS, rng)
    m = _sample(mock, SAMPLE_ROWS, rng)
    marginal = {str(c): round(_marginal_distance(r[c], m[c]), 4) for c in measured}
    corr = _correlation_error(r[measured], m[measured])
    pmse, ratio = _pmse(r[measured], m[measured], rng)
    dcr = _dcr(real, shadow_maker, rng)
    report = {
        "tier": tier, "rows": len(mock),
        "utility": {"marginal_distance": marginal,
                    "mean_marginal_distance": round(float(np.mean(list(marginal.values()))), 4) if marginal else None,
                    "correlation_error": corr, "pmse": pmse, "pmse_ratio": ratio},
        "risk": {**_matches(real, mock, k),
                 "rare_category_exposure": _rare_exposure(real, mock, k),
                 **dcr},
    }
    report["sha256"] = hashlib.sha256(json.dumps(report, sort_keys=True).encode()).hexdigest()
    return report


def _matches(real: pd.DataFrame, mock: pd.DataFrame, k: int) -> dict[str, float]:
    """Shares of mock rows equal to any real row, and to a combination fewer than ``k`` real rows
    share, on the columns drawn from real values (placeholders would hide every match)."""
    on = compared_columns(real, k)
    if not on:
        return {"exact_match_rate": 0.0, "rare_match_rate": 0.0}
    counts = pd.Series(canonical_hashes(real[on])).value_counts()
    mock_rows = canonical_hashes(mock[on])
    any_row = is_member(mock_rows, np.sort(counts.index.to_numpy()))
    rare = is_member(mock_rows, np.sort(counts.index[counts < k].to_numpy()))
    return {"exact_match_rate": round(float(any_row.mean()), 4), "rare_match_rate": round(float(rare.mean()), 4)}


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """What analysts see in the dataset's metadata: a few numbers, no per-column detail."""
    u, r = report["utility"], report["risk"]
    return {"tier": report["tier"], "rows": report["rows"],
            "mean_marginal_distance": u["mean_marginal_distance"],
            "correlation_error": u["correlation_error"]["mean"], "pmse_ratio": u["pmse_ratio"],
            "exact_match_rate": r["exact_match_rate"], "rare_match_rate": r["rare_match_rate"],
            "closer_to_real": r["closer_to_real"]}


def _sample(df: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    if len(df) <= n:
        return df.reset_index(drop=True)
    return df.iloc[np.sort(rng.choice(len(df), n, replace=False))].reset_index(drop=True)


def _is_numeric(s: pd.Series) -> bool:
    kind = cols.column_kind(s)
    return kind in ("numeric", "datetime") or (kind == "integer" and not cols.has_levels(s, kind))


def _marginal_distance(real: pd.Series, mock: pd.Series) -> float:
    if _is_numeric(real):
        a, b = cols.as_float(real), cols.as_float(mock)
        a, b = np.sort(a[np.isfinite(a)]), np.sort(b[np.isfinite(b)])
        if len(a) == 0 or len(b) == 0:
            return 1.0 if len(a) != len(b) else 0.0
        grid = np.concatenate([a, b])
        return float(np.max(np.abs(np.searchsorted(a, grid, side="right") / len(a)
                                   - np.searchsorted(b, grid, side="right") / len(b))))
    p = real.astype(object).where(real.notna(), "<missing>").astype(str).value_counts(normalize=True)
    q = mock.astype(object).where(mock.notna(), "<missing>").astype(str).value_counts(normalize=True)
    return float(0.5 * p.subtract(q, fill_value=0).abs().sum())


def _codes(real: pd.DataFrame, mock: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Both frames as floats: numbers as they are, levels coded by one shared sorted order."""
    a, b = [], []
    for c in real.columns:
        if _is_numeric(real[c]):
            a.append(cols.as_float(real[c]))
            b.append(cols.as_float(mock[c]))
            continue
        ra, mb = real[c].astype(object), mock[c].astype(object)
        levels = {v: i for i, v in enumerate(cols.sort_levels(list(pd.unique(pd.concat([ra, mb]).dropna().astype(str)))))}
        a.append(ra.map(lambda v: levels.get(str(v), np.nan) if pd.notna(v) else np.nan).to_numpy(dtype=float))
        b.append(mb.map(lambda v: levels.get(str(v), np.nan) if pd.notna(v) else np.nan).to_numpy(dtype=float))
    return np.column_stack(a) if a else np.empty((len(real), 0)), np.column_stack(b) if b else np.empty((len(mock), 0))


def _correlation_error(real: pd.DataFrame, mock: pd.DataFrame) -> dict[str, float | None]:
    if real.shape[1] < 2:
        return {"mean": None, "max": None}
    a, b = _codes(real, mock)
    with np.errstate(invalid="ignore", divide="ignore"):
        ca = pd.DataFrame(a).corr(method="spearman").to_numpy()
        cb = pd.DataFrame(b).corr(method="spearman").to_numpy()
    upper = np.triu_indices(a.shape[1], 1)
    diff = np.abs(np.nan_to_num(ca[upper]) - np.nan_to_num(cb[upper]))
    return {"mean": round(float(diff.mean()), 4), "max": round(float(diff.max()), 4)}


def _design(frame: pd.DataFrame, reference: pd.DataFrame) -> np.ndarray:
    """The propensity model's terms: standardised numbers with their squares and a missing flag,
    one-hot levels (the 10 most common in ``reference``), and the products of pairs of main effects
    from different columns, so that a mock which loses relationships between columns is told apart
    (Snoke et al. 2018 use first-order interactions for the same reason)."""
    squares, mains = [], []
    for c in reference.columns:
        if _is_numeric(reference[c]):
            ref = cols.as_float(reference[c])
            ref = ref[np.isfinite(ref)]
            mu, sd = (ref.mean(), ref.std() or 1.0) if len(ref) else (0.0, 1.0)
            x = (cols.as_float(frame[c]) - mu) / sd
            miss = ~np.isfinite(x)
            x = np.where(miss, 0.0, x)
            mains.append((c, x))
            squares += [x ** 2, miss.astype(float)]
        else:
            top = reference[c].astype(object).astype(str).value_counts().index[:10]
            vals = frame[c].astype(object).astype(str).to_numpy()
            mains += [(c, (vals == lvl).astype(float)) for lvl in top[1:]]
    pairs = [a * b for i, (ca, a) in enumerate(mains) for cb, b in mains[i + 1:] if ca != cb][:MAX_INTERACTIONS]
    return np.column_stack([np.ones(len(frame)), *[m for _, m in mains], *squares, *pairs])


def _pmse(real: pd.DataFrame, mock: pd.DataFrame, rng: np.random.Generator) -> tuple[float | None, float | None]:
    if real.shape[1] == 0:
        return None, None
    both = pd.concat([real, mock], ignore_index=True)
    x = _design(both, real)
    y = np.r_[np.zeros(len(real)), np.ones(len(mock))]
    p = _logistic(x, y)
    c = len(mock) / len(both)
    pmse = float(np.mean((p - c) ** 2))
    expected = (x.shape[1] - 1) * (1 - c) ** 2 * c / len(both)
    return round(pmse, 6), round(pmse / expected, 3) if expected > 0 else None


def _logistic(x: np.ndarray, y: np.ndarray, iterations: int = 25, ridge: float = 1e-4) -> np.ndarray:
    """Fitted probabilities of a ridge-stabilised logistic regression (Newton-Raphson)."""
    beta = np.zeros(x.shape[1])
    for _ in range(iterations):
        p = expit(x @ beta)
        w = p * (1 - p)
        hess = x.T @ (x * w[:, None]) + ridge * len(y) * np.eye(x.shape[1])
        step = np.linalg.solve(hess, x.T @ (y - p) - ridge * len(y) * beta)
        beta += step
        if np.max(np.abs(step)) < 1e-6:
            break
    return expit(x @ beta)


def _gower(a: pd.DataFrame, b: pd.DataFrame, reference: pd.DataFrame) -> np.ndarray:
    """For each row of ``a``, Gower's distance (Gower, Biometrics 1971) to its nearest row of ``b``."""
    best = np.full(len(a), np.inf)
    num = [c for c in reference.columns if _is_numeric(reference[c])]
    cat = [c for c in reference.columns if c not in num]
    scale = {c: _spread(cols.as_float(reference[c])) for c in num}
    an = {c: cols.as_float(a[c]) / scale[c] for c in num}
    bn = {c: cols.as_float(b[c]) / scale[c] for c in num}
    ac = {c: a[c].astype(object).astype(str).to_numpy() for c in cat}
    bc = {c: b[c].astype(object).astype(str).to_numpy() for c in cat}
    width = max(len(num) + len(cat), 1)
    for start in range(0, len(b), 500):
        stop = start + 500
        d = np.zeros((len(a), min(stop, len(b)) - start))
        for c in num:
            diff = np.abs(an[c][:, None] - bn[c][None, start:stop])
            d += np.where(np.isnan(diff), np.where(np.isnan(an[c])[:, None] & np.isnan(bn[c][None, start:stop]), 0, 1),
                          np.minimum(diff, 1.0))
        for c in cat:
            d += ac[c][:, None] != bc[c][None, start:stop]
        best = np.minimum(best, d.min(axis=1) / width)
    return best


def _spread(values: np.ndarray) -> float:
    """The 5-95% range that scales a number's Gower distance (1 when it cannot be measured)."""
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return 1.0
    return float(np.percentile(values, 95) - np.percentile(values, 5)) or 1.0


def _dcr(real: pd.DataFrame, shadow_maker, rng: np.random.Generator) -> dict[str, Any]:
    """The holdout comparison: a shadow mock of one half, distances to that half and to the other."""
    measured = [c for c in real.columns if cols.column_kind(real[c]) != "text"]
    pool = _sample(real, 2 * DCR_ROWS, rng)
    order = rng.permutation(len(pool))
    half = len(pool) // 2
    train, holdout = pool.iloc[order[:half]].reset_index(drop=True), pool.iloc[order[half:2 * half]].reset_index(drop=True)
    out: dict[str, Any] = {"holdout_rows": half, "closer_to_real": None, "dcr_mock": None, "dcr_holdout": None}
    if half < MIN_HOLDOUT or not measured:
        out["dcr_note"] = f"too few rows to compare with a holdout (fewer than {MIN_HOLDOUT} per half)"
        return out
    shadow = shadow_maker(train, half)
    to_train = _gower(shadow[measured], train[measured], real[measured])
    to_holdout = _gower(shadow[measured], holdout[measured], real[measured])
    holdout_to_train = _gower(holdout[measured], train[measured], real[measured])
    closer = np.mean(np.where(to_train < to_holdout, 1.0, np.where(to_train == to_holdout, 0.5, 0.0)))
    pct = (5, 25, 50)
    out.update({"closer_to_real": round(float(closer), 4),
                "dcr_mock": {f"p{q}": round(float(np.percentile(to_train, q)), 4) for q in pct},
                "dcr_holdout": {f"p{q}": round(float(np.percentile(holdout_to_train, q)), 4) for q in pct}})
    return out


def _rare_exposure(real: pd.DataFrame, mock: pd.DataFrame, k: int) -> dict[str, int]:
    rare_values = 0
    outside_range = 0
    for c in real.columns:
        s = real[c]
        kind = cols.column_kind(s)
        if cols.has_levels(s, kind):
            counts = s.value_counts(dropna=True)
            rare = set(map(str, counts.index[counts < k]))
            rare_values += int(mock[c].dropna().astype(object).astype(str).isin(rare).sum())
        elif kind in ("integer", "numeric"):
            bounds = cols.public_range(s, k)
            values = cols.as_float(mock[c])
            values = values[np.isfinite(values)]
            if bounds is None:
                outside_range += len(values)
            else:
                outside_range += int(((values < bounds[0]) | (values > bounds[1])).sum())
    return {"rare_level_values": rare_values, "values_outside_public_range": outside_range}
