"""Cox's partial likelihood on a time grid, from sums over risk sets: shared by domains and analysts.

Durations are binned on a grid of points t_1 < ... < t_m: a row belongs to interval j when
t_{j-1} < duration <= t_j (t_0 = -inf); a row with duration > t_m is censored at t_m. Binning is what lets a
domain release counts and sums per interval instead of exact event times; on the binned data
everything below is the textbook estimator, so pooled results equal a pooled fit on the binned rows.

The partial likelihood (Cox 1972) needs the data only through, for each interval j with events,
S0_j = Σ_{R_j} exp(xβ), S1_j = Σ_{R_j} x exp(xβ), S2_j = Σ_{R_j} x xᵀ exp(xβ) over the risk set
R_j (rows whose interval is j or later), the same sums E0_j, E1_j, E2_j over the d_j events in j,
and the sum of x over all events. These are sums over rows, so over domains: summing them gives the
pooled risk sets exactly, as in WebDISCO (Lu et al., *JAMIA* 22(6), 2015). Ties follow Breslow
(1974) or Efron (1977), whose l-th tied death sees S − (l/d)·E; Efron's is lifelines' and R's default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TIES = ("breslow", "efron")


def intervals(durations: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Interval index of each duration: j where grid[j-1] < t <= grid[j]; len(grid) beyond the last point."""
    return np.searchsorted(np.asarray(grid, dtype=float), durations, side="left")


def exact_intervals(durations: np.ndarray, event: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Unbinned: with ``times`` the distinct event times, an event's index is its time's, a censored
    row's the last event time at or before it (at risk there, gone after); −1 before the first."""
    at_or_before = np.searchsorted(times, durations, side="right") - 1
    return np.where(event, np.searchsorted(times, durations, side="left"), at_or_before)


def bin_rows(durations: np.ndarray, event: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interval of each row and whether it is an event there. Rows beyond the last point count as
    censored at it (administrative censoring at the end of the grid), so every row exits inside."""
    index = intervals(durations, grid)
    m = len(grid)
    return np.minimum(index, m - 1), np.asarray(event, dtype=bool) & (index < m)


def exits(index: np.ndarray, event: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Events and censorings per interval (the m intervals; rows beyond are not counted)."""
    inside = index < m
    events = np.bincount(index[inside & event], minlength=m)[:m]
    censored = np.bincount(index[inside & ~event], minlength=m)[:m]
    return events.astype(int), censored.astype(int)


def coarsen(events: np.ndarray, censored: np.ndarray, n: int, k: int) -> list[int]:
    """Grid points to keep so that, in every merged interval, events and censorings are each 0 or at
    least ``k``, and the rows beyond the last kept point are 0 or at least ``k``.

    Merging adjacent intervals keeps every released count exact (global recoding, Hundepool et al.,
    *Statistical Disclosure Control*, 2012, §5.3); suppressing a cell instead would break the
    product-limit and be recoverable from the at-risk numbers, which are cumulative sums. Intervals
    are split top-down on the same halving tree for every domain, so the points all domains keep
    (the intersection, which merges each domain's valid intervals, so is valid for each) stay many.
    """
    ends = np.concatenate([[0], np.cumsum(events)]), np.concatenate([[0], np.cumsum(censored)])

    def ok(lo: int, hi: int) -> bool:
        return all(c[hi] - c[lo] == 0 or c[hi] - c[lo] >= k for c in ends)

    def cut(lo: int, hi: int) -> list[int]:
        mid = (lo + hi) // 2
        if hi - lo > 1 and ok(lo, mid) and ok(mid, hi):
            return cut(lo, mid) + cut(mid, hi)
        return [hi - 1]

    m = len(events)
    kept = cut(0, m) if m and ok(0, m) else []
    return trim(kept, events, censored, n, k)


def trim(kept: list[int], events: np.ndarray, censored: np.ndarray, n: int, k: int) -> list[int]:
    """Drop the last points while the rows beyond them number 1..k−1 (merging them into "beyond")."""
    cumulative = np.cumsum(np.asarray(events) + np.asarray(censored))
    kept = list(kept)
    while kept and 0 < n - int(cumulative[kept[-1]]) < k:
        kept.pop()
    return kept


def valid(kept: list[int], events: np.ndarray, censored: np.ndarray, n: int, k: int) -> bool:
    """Whether releasing counts at ``kept`` obeys the rule of :func:`coarsen`."""
    if not kept:
        return True
    merged = merge(np.asarray(events), kept), merge(np.asarray(censored), kept)
    beyond = n - int(sum(merged[0]) + sum(merged[1]))
    return all(((m == 0) | (m >= k)).all() for m in merged) and (beyond == 0 or beyond >= k)


def merge(counts: np.ndarray, kept: list[int]) -> np.ndarray:
    """Per-interval counts summed into the intervals that end at the kept points."""
    cumulative = np.concatenate([[0], np.cumsum(counts)])
    ends = np.asarray(kept, dtype=int) + 1
    return np.diff(np.concatenate([[0], cumulative[ends]]))


@dataclass
class RiskSums:
    """The partial likelihood's sums at one β for the event intervals (of one domain, or pooled)."""

    d: np.ndarray  # events per interval (q,)
    s0: np.ndarray  # (q,)
    s1: np.ndarray  # (q, p)
    s2: np.ndarray  # (q, p, p)
    e0: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    xsum: np.ndarray  # Σ x over all events (p,)

    def __add__(self, other: RiskSums) -> RiskSums:
        return RiskSums(*(a + b for a, b in zip(self.fields(), other.fields())))

    def fields(self) -> tuple[np.ndarray, ...]:
        return self.d, self.s0, self.s1, self.s2, self.e0, self.e1, self.e2, self.xsum


def risk_sums(X: np.ndarray, beta: np.ndarray, index: np.ndarray, event: np.ndarray, points: list[int]) -> RiskSums:
    """Sums over risk sets and event sets at the intervals ending at ``points`` (indexes of kept grid
    points; ``index`` is each row's coarse interval, ``len(points)`` beyond the last)."""
    q, p = len(points), X.shape[1]
    w = np.exp(X @ beta)
    own = [np.flatnonzero(index == c) for c in range(q + 1)]
    d, s0, s1, s2 = np.zeros(q), np.zeros(q + 1), np.zeros((q + 1, p)), np.zeros((q + 1, p, p))
    e0, e1, e2 = np.zeros(q), np.zeros((q, p)), np.zeros((q, p, p))
    for c, rows in enumerate(own):
        wx = X[rows] * w[rows, None]
        s0[c], s1[c], s2[c] = w[rows].sum(), wx.sum(axis=0), X[rows].T @ wx
        if c < q:
            ev = rows[event[rows]]
            wxe = X[ev] * w[ev, None]
            d[c], e0[c], e1[c], e2[c] = len(ev), w[ev].sum(), wxe.sum(axis=0), X[ev].T @ wxe
    # risk set of interval c: every row whose interval is c or later
    s0, s1, s2 = (np.cumsum(a[::-1], axis=0)[::-1][:q] for a in (s0, s1, s2))
    xsum = X[(index < q) & event].sum(axis=0)
    return RiskSums(d, s0, s1, s2, e0, e1, e2, xsum)


#: tied events handled at once by :func:`loglik_gradient_hessian` (bounds its arrays to this many times p)
TIED_AT_ONCE = 1 << 14


def loglik_gradient_hessian(r: RiskSums, beta: np.ndarray, ties: str) -> tuple[float, np.ndarray, np.ndarray]:
    """The log partial likelihood, its gradient and Hessian at ``beta`` from (pooled) sums.

    The l-th of the d tied events of interval j (l = 0..d−1) contributes with the risk set less the
    share f = l/d of the events' own sums (Efron; f = 0 for Breslow), a0 = S0 − f·E0 and so on:
    −log a0 to the log-likelihood, −a1/a0 to the gradient and −(a2/a0 − (a1/a0)(a1/a0)ᵀ) to the
    Hessian. The events are taken in blocks of :data:`TIED_AT_ONCE`, whatever the intervals, and
    Σ a2/a0 over a block is S2 weighted by Σ 1/a0 less E2 weighted by Σ f/a0, per interval, so
    memory holds a block of p-vectors and never a p×p matrix per event."""
    p = len(beta)
    loglik, grad, hess = float(r.xsum @ beta), r.xsum.astype(float).copy(), np.zeros((p, p))
    at = np.flatnonzero(r.d > 0)
    d = np.rint(np.asarray(r.d, dtype=float)[at]).astype(np.int64)
    ends = np.cumsum(d)
    for start in range(0, int(ends[-1]) if len(ends) else 0, TIED_AT_ONCE):
        event = np.arange(start, min(start + TIED_AT_ONCE, int(ends[-1])))
        k = np.searchsorted(ends, event, side="right")  # the event's interval, as a position in ``at``
        f = (event - (ends[k] - d[k])) / d[k] if ties == "efron" else np.zeros(len(event))
        j = at[k]
        a0 = r.s0[j] - f * r.e0[j]
        mean = (r.s1[j] - f[:, None] * r.e1[j]) / a0[:, None]
        loglik -= float(np.sum(np.log(a0)))
        grad -= mean.sum(axis=0)
        first, last = k[0], k[-1] + 1
        span = at[first:last]
        inverse = np.bincount(k - first, 1 / a0, minlength=last - first)
        shared = np.bincount(k - first, f / a0, minlength=last - first)
        hess -= np.tensordot(inverse, r.s2[span], axes=1) - np.tensordot(shared, r.e2[span], axes=1) - mean.T @ mean
    return loglik, grad, hess
