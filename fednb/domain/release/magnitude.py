"""Magnitude rules for sums, means and cells of sums: is one contributor's value exposed?

A total of at least ``min_cohort`` rows can still reveal one row when that row dominates it (one
lithium pond's output, one hospital department's cost). Two standard tests, with the names and
defaults of ACRO/SACRO (Smith et al., "ACRO: automatic checking of research outputs", 2023; the
output-checking rules of trusted research environments) and Hundepool et al., *Statistical
Disclosure Control* (2012), §4.2.2:

- **(n, k)-dominance**: the ``n`` largest contributions make up more than ``k`` of the total
  (default n = 2, k = 0.9);
- **p% rule**: the total less the two largest contributions is under ``p`` of the largest, so the
  second-largest contributor could estimate the largest to within p % (default p = 0.10).

Contributions are taken in absolute value: a total of large positive and negative values can be
dominated as well, and a negative total must not make the rules vacuous.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fednb.locale import N_


def top_two(values: np.ndarray) -> tuple[float, float, float]:
    """(total, largest, second largest) of ``|values|``; NaNs are not contributions."""
    v = np.abs(np.asarray(values, dtype=float))
    v = v[~np.isnan(v)]
    if v.size == 0:
        return 0.0, 0.0, 0.0
    if v.size == 1:
        return float(v.sum()), float(v[0]), 0.0
    part = np.partition(v, v.size - 2)[-2:]
    return float(v.sum()), float(part.max()), float(part.min())


def dominated(values: np.ndarray, n: int = 2, k: float = 0.9) -> bool:
    """(n, k)-dominance: the ``n`` largest |contributions| exceed ``k`` of the total."""
    v = np.abs(np.asarray(values, dtype=float))
    v = v[~np.isnan(v)]
    total = v.sum()
    if total <= 0:
        return False
    top = np.sort(v)[-n:].sum() if v.size > n else total
    return bool(top > k * total)


def p_percent(values: np.ndarray, p: float = 0.10) -> bool:
    """p% rule: the rest of the total (less the two largest) is under ``p`` of the largest."""
    total, first, second = top_two(values)
    if first <= 0:
        return False
    return bool(total - first - second < p * first)


def sensitive(values: np.ndarray, *, n: int = 2, k: float = 0.9, p: float = 0.10) -> str | None:
    """Why a total of ``values`` may not be released, or None when both rules pass."""
    if dominated(values, n, k):
        return N_("its {n} largest contributions make up more than {k:.0%} of it (dominance rule)").format(n=n, k=k)
    if p_percent(values, p):
        return N_("the rest of it is less than {p:.0%} of its largest contribution (p% rule)").format(p=p)
    return None


def sensitive_groups(frame: pd.DataFrame, value: str, by: list[str], *, n: int = 2, k: float = 0.9,
                     p: float = 0.10) -> pd.Series:
    """Per group of ``by`` (the cells of a table of sums of ``value``), True where either rule fires.

    One sort and one groupby over the rows, not a loop per cell.
    """
    data = frame[by].assign(_v=pd.to_numeric(frame[value], errors="coerce").abs()).dropna(subset=["_v"])
    data = data.sort_values("_v", ascending=False, kind="stable")
    keys = [data[b] for b in by]
    rank = data.groupby(by, observed=True, sort=False).cumcount()
    total = data.groupby(keys, observed=True)["_v"].sum()
    first = data["_v"].where(rank == 0).groupby(keys, observed=True).sum()
    second = data["_v"].where(rank == 1).groupby(keys, observed=True).sum()
    top_n = data["_v"].where(rank < n).groupby(keys, observed=True).sum()
    dominance = (total > 0) & (top_n > k * total)
    p_rule = (first > 0) & ((total - first - second) < p * first)
    return (dominance | p_rule).rename("sensitive")
