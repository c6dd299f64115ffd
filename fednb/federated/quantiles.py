"""Federated quantiles by iterative refinement of counts, with no order statistic ever released.

Each round the analyst sends a grid of edges; every domain answers with the number of its values
below each edge, at the edges it can release (it merges adjacent bins until each holds 0 or at least
``min_cell_count`` rows, so every count it releases is exact and safe). From these step functions
the analyst bounds the pooled number of values below any edge, brackets each wanted order statistic,
and zooms the grid into the brackets. The answer is exact when a bracket closes on a single value
(integer data with half-integer edges); otherwise it is interpolated inside the final bracket and
``error_bound`` is that bracket's width. Counting-based bisection of order statistics as in
DataSHIELD's and others' federated quantiles, with disclosure control on every round.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

GRID = 32
MAX_ROUNDS = 8
MAX_EDGES = 1000


@dataclass
class Answer:
    """One domain's reply to a round: values below each released edge, and its row count."""

    n: int
    edges: list[float]
    below: list[int]

    def bounds(self, t: float) -> tuple[int, int]:
        """Least and most of this domain's values that can lie below ``t``."""
        i = bisect_right(self.edges, t)  # edges <= t
        lo = self.below[i - 1] if i > 0 else 0
        j = bisect_left(self.edges, t)  # first edge >= t
        hi = self.below[j] if j < len(self.edges) else self.n
        return lo, hi


@dataclass
class Bracket:
    lo: float
    hi: float
    estimate: float
    exact: bool = False


def bracket(answers: list[Answer], rank: int, grid_edges: Sequence[float], integer: bool) -> Bracket:
    """Where the 0-based order statistic ``rank`` of the pooled values surely lies."""
    points = sorted({e for a in answers for e in a.edges} | set(grid_edges))
    lo, hi = -math.inf, math.inf
    lo_count, hi_count = 0, sum(a.n for a in answers)
    for t in points:
        least = sum(a.bounds(t)[0] for a in answers)
        most = sum(a.bounds(t)[1] for a in answers)
        if most <= rank and t > lo:  # surely at most `rank` values below t: x_(rank) >= t
            lo, lo_count = t, most
        if least >= rank + 1 and t < hi:  # surely more than `rank` values below t: x_(rank) < t
            hi, hi_count = t, least
            break
    if integer and math.isfinite(lo) and math.isfinite(hi) and math.ceil(lo) == math.floor(hi - 1e-9) \
            and math.ceil(lo) <= hi:
        v = float(math.ceil(lo))
        return Bracket(lo, hi, v, exact=True)
    if math.isfinite(lo) and math.isfinite(hi):
        exact_edges = all(a.bounds(lo)[0] == a.bounds(lo)[1] and a.bounds(hi)[0] == a.bounds(hi)[1] for a in answers)
        if exact_edges and hi_count > lo_count:
            return Bracket(lo, hi, lo + (rank + 0.5 - lo_count) / (hi_count - lo_count) * (hi - lo))
    return Bracket(lo, hi, (lo + hi) / 2 if math.isfinite(lo + hi) else (lo if math.isfinite(lo) else hi))


def grid(spans: list[tuple[float, float]], integer: bool, size: int = GRID) -> list[float]:
    """Edges over the union of ``spans``; for integer data, at half-integers (one value per bin)."""
    merged: list[list[float]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    edges: set[float] = set()
    per = max(2, size // max(1, len(merged)))
    for lo, hi in merged:
        if integer:
            a, b = math.floor(lo) - 0.5, math.ceil(hi) + 0.5
            step = max(1.0, math.ceil((b - a) / per))
            edges.update(np.arange(a, b + step / 2, step).tolist())
        else:
            edges.update(np.linspace(lo, hi, per + 1).tolist())
    out = sorted(edges)
    return out[:: math.ceil(len(out) / MAX_EDGES)] if len(out) > MAX_EDGES else out


def federated_quantiles(ask: Callable[[list[float]], list[Answer]], qs: Sequence[float],
                        start: tuple[float, float], *, integer: bool, max_rounds: int = MAX_ROUNDS):
    """Run the protocol; ``ask(edges)`` returns every domain's :class:`Answer` for one round.

    Returns (values, error_bounds, rounds), one per q; a bound of 0 means exact.
    """
    lo, hi = start
    if not hi > lo:
        hi = lo + 1.0
    span = hi - lo
    edges = grid([(lo, hi)], integer)
    best: dict[int, Bracket] = {}
    rounds = 0
    n = 0
    while rounds < max_rounds:
        rounds += 1
        answers = ask(edges)
        n = sum(a.n for a in answers)
        if n == 0:
            raise ValueError("no rows to take quantiles of")
        ranks = sorted({k for q in qs for k in _ranks(q, n)[:2]})
        progress = False
        for k in ranks:
            b = bracket(answers, k, edges, integer)
            old = best.get(k)
            if old is None or (b.hi - b.lo) < (old.hi - old.lo) - 1e-12 or (b.exact and not old.exact):
                best[k] = b
                progress = True
        if all(best[k].exact for k in ranks) or not progress:
            break
        spans = []
        for k in ranks:
            b = best[k]
            if b.exact:
                continue
            a = b.lo if math.isfinite(b.lo) else edges[0] - span
            z = b.hi if math.isfinite(b.hi) else edges[-1] + span
            spans.append((a, z))
        edges = grid(spans, integer)
    values, bounds = [], []
    for q in qs:
        k0, k1, frac = _ranks(q, n)
        ends = []
        for k in (k0, k1):
            b = best[k]
            width = 0.0 if b.exact else (b.hi - b.lo)
            ends.append((b.estimate, width))
        values.append((1 - frac) * ends[0][0] + frac * ends[1][0])
        bounds.append((1 - frac) * ends[0][1] + frac * ends[1][1])
    return values, bounds, rounds


def _ranks(q: float, n: int) -> tuple[int, int, float]:
    """numpy's default ("linear") quantile: value at 0-based position h = (n - 1) q."""
    h = (n - 1) * q
    k = int(math.floor(h))
    return k, min(k + 1, n - 1), h - k
