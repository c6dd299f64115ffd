"""Federated quantiles by iterative histogram refinement.

No domain releases an order statistic (that is one person's value). Instead every round asks each
domain for counts over a shared grid of bin edges (the ``quantiles`` built-in, with small cells
suppressed), pools them, finds the bin holding each wanted rank, and zooms the grid into it. The
answer is exact when the bracket closes on one value held by at least ``min_cell_count`` rows (e.g.
integer ages); otherwise it is the linear interpolation inside the final bracket, and
``error_bound`` is the bracket's width. This is the bisection of order statistics by counting
(e.g. Beaver et al.'s and DataSHIELD's iterative quantile approaches) with disclosure control on
every round.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

GRID = 48
MAX_ROUNDS = 6
MAX_EDGES = 1000


@dataclass
class Bracket:
    lo: float
    hi: float
    estimate: float
    rows: float = math.inf  # at most this many rows lie inside

    def narrowed(self, other: Bracket) -> Bracket:
        """Both brackets hold the value, so their intersection does; an earlier round is never unlearnt."""
        lo, hi = max(self.lo, other.lo), min(self.hi, other.hi)
        if hi < lo:  # cannot happen with consistent answers; keep the newer one
            return other
        best = other if other.hi - other.lo <= self.hi - self.lo else self
        estimate = min(max(best.estimate, lo), hi)
        return Bracket(lo, hi, estimate, min(self.rows, other.rows))


def locate(edges: Sequence[float], pooled: list[int | None], n: int, rank: int) -> Bracket:
    """The narrowest interval that surely holds the value of 0-based order statistic ``rank``.

    ``pooled`` has len(edges) + 1 cells: below edges[0], the bins, above edges[-1]. A suppressed
    cell (None) holds between 0 and the count nobody accounts for.
    """
    known = sum(c for c in pooled if c is not None)
    unknown = max(0, n - known)
    lower = np.array([0 if c is None else c for c in pooled], dtype=float)
    upper = np.array([unknown if c is None else c for c in pooled], dtype=float)
    bounds = [-math.inf] + list(edges) + [math.inf]
    # rows before cell j: at least what the cells before surely hold, and at least n minus what the
    # cells from j on can hold; at most the converse
    before_lo = np.concatenate([[0], np.cumsum(lower)])
    before_hi = np.concatenate([[0], np.cumsum(upper)])
    after_lo = np.concatenate([np.cumsum(lower[::-1])[::-1], [0]])
    after_hi = np.concatenate([np.cumsum(upper[::-1])[::-1], [0]])
    cum_lo = np.maximum(before_lo, n - after_hi)
    cum_hi = np.minimum(before_hi, n - after_lo)
    candidates = [j for j in range(len(pooled)) if cum_lo[j] <= rank < cum_hi[j + 1]]
    first, last = candidates[0], candidates[-1]
    lo, hi = bounds[first], bounds[last + 1]
    rows = float(cum_hi[last + 1] - cum_lo[first])
    if first == last and pooled[first] and unknown == 0 and math.isfinite(lo) and math.isfinite(hi):
        # one known bin: place the rank inside it as if its values were evenly spread
        estimate = lo + (rank - cum_lo[first] + 0.5) / pooled[first] * (hi - lo)
    else:
        estimate = (lo + hi) / 2
    return Bracket(lo, hi, estimate, rows)


def grid(brackets: list[Bracket], integer: bool, rows_per_bin: float = 10) -> list[float]:
    """Edges inside each bracket, no finer than its rows allow without suppression; for integer
    data, edges at half-integers so that bins end up holding one value each."""
    edges: set[float] = set()
    for b in brackets:
        size = int(max(2, min(GRID, b.rows // rows_per_bin))) if math.isfinite(b.rows) else GRID
        if integer:
            lo, hi = math.floor(b.lo + 0.5) - 0.5, math.ceil(b.hi - 0.5) + 0.5
            step = max(1.0, math.ceil((hi - lo) / size))
            edges.update(np.arange(lo, hi + step / 2, step).tolist())
        else:
            edges.update(np.linspace(b.lo, b.hi, size + 1).tolist())
    out = sorted(edges)
    if len(out) > MAX_EDGES:
        out = out[:: math.ceil(len(out) / MAX_EDGES)]
    return out


def _exact(b: Bracket, integer: bool) -> bool:
    return integer and math.isfinite(b.lo) and b.hi - b.lo <= 1.0 + 1e-9


def federated_quantiles(ask: Callable[[list[float]], tuple[list[int | None], int]], qs: Sequence[float],
                        start: tuple[float, float], *, integer: bool, max_rounds: int = MAX_ROUNDS,
                        rows_per_bin: float = 10):
    """Run the protocol. ``ask(edges)`` returns (pooled cells, pooled n) for one round.

    Returns (values, error_bounds, rounds), one value and bound per q; a bound of 0 means exact.
    """
    lo, hi = start
    if not hi > lo:
        hi = lo + 1.0
    edges = grid([Bracket(lo, hi, lo)], integer, rows_per_bin)
    brackets: dict[int, Bracket] = {}
    rounds, n = 0, 0
    while rounds < max_rounds:
        rounds += 1
        pooled, n = ask(edges)
        if n == 0:
            raise ValueError("no rows to take quantiles of")
        wanted = sorted({k for q in qs for k in _ranks(q, n)[:2]})
        span = max(hi - lo, 1.0)
        new = {}
        for k in wanted:
            b = locate(edges, pooled, n, k)
            if math.isinf(b.lo):  # beyond the grid: look further out next round
                b = Bracket(min(edges) - span, b.hi, b.estimate, b.rows)
            if math.isinf(b.hi):
                b = Bracket(b.lo, max(edges) + span, b.estimate, b.rows)
            new[k] = brackets[k].narrowed(b) if k in brackets else b
        shrunk = not brackets or any(
            new[k].hi - new[k].lo < brackets[k].hi - brackets[k].lo - 1e-12 for k in new if k in brackets)
        brackets = new
        if all(_exact(b, integer) for b in brackets.values()) or not shrunk:
            break
        edges = grid(list(brackets.values()), integer, rows_per_bin)
        lo, hi = edges[0], edges[-1]
    values, bounds = [], []
    for q in qs:
        k0, k1, frac = _ranks(q, n)
        parts = []
        for k in (k0, k1):
            b = brackets[k]
            parts.append((float(round((b.lo + b.hi) / 2)), 0.0) if _exact(b, integer)
                         else (float(b.estimate), float(b.hi - b.lo)))
        values.append((1 - frac) * parts[0][0] + frac * parts[1][0])
        bounds.append((1 - frac) * parts[0][1] + frac * parts[1][1])
    return values, bounds, rounds


def _ranks(q: float, n: int) -> tuple[int, int, float]:
    """numpy's default ("linear") quantile: value at 0-based position h = (n - 1) q."""
    h = (n - 1) * q
    k = int(math.floor(h))
    return k, min(k + 1, n - 1), h - k
