"""The special functions the privacy math needs, in the standard library: the normal CDF and its
logarithm far into the tail, a log-sum-exp, log-gamma and generalised binomial coefficients.

They follow the methods of scipy.special (Cephes) and are checked against it to 1e-10 relative in
the test suite, so the accountant and the Gaussian mechanism give the same ε and δ without scipy:

- Φ(x) = erfc(−x/√2)/2, with no cancellation in the left tail;
- log Φ(x): log1p(−Φ(−x)) above 0, log Φ(x) down to −20, and below that the asymptotic series
  Φ(x) = φ(x)/(−x) · Σₙ (−1)ⁿ (2n−1)!!/x²ⁿ (Abramowitz & Stegun 26.2.12), whose terms at |x| ≥ 20
  fall under the double's precision long before they start to grow;
- C(α, i) = Πⱼ₌₀^{i−1} (α−j)/(j+1) for real α and whole i ≥ 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

_SQRT2 = math.sqrt(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def ndtr(x: float) -> float:
    """Φ(x), the standard normal CDF."""
    return 0.5 * math.erfc(-x / _SQRT2)


def log_ndtr(x: float) -> float:
    """log Φ(x), accurate where Φ(x) itself underflows (x far below −38)."""
    if math.isnan(x):
        return math.nan
    if x > 0:  # Φ(x) near 1: the log of 1 - Φ(-x), without cancellation
        return math.log1p(-0.5 * math.erfc(x / _SQRT2))
    if x > -20:
        return math.log(0.5 * math.erfc(-x / _SQRT2))
    if math.isinf(x):
        return -math.inf
    inv_x2 = 1.0 / (x * x)
    total, term, n = 1.0, 1.0, 1
    while True:
        term *= -(2 * n - 1) * inv_x2
        if abs(term) < 1e-17 * abs(total):
            break
        total += term
        n += 1
    return -0.5 * x * x - _LOG_SQRT_2PI - math.log(-x) + math.log(total)


def logsumexp(values: Iterable[float]) -> float:
    """log Σ exp(vᵢ) without overflow: the largest term factored out."""
    vs = [float(v) for v in values]
    top = max(vs, default=-math.inf)
    if math.isinf(top):
        return top
    return top + math.log(math.fsum(math.exp(v - top) for v in vs))


def gammaln(x: float) -> float:
    """log |Γ(x)|."""
    return math.lgamma(x)


def binom(alpha: float, i: int) -> float:
    """The generalised binomial coefficient C(α, i) for real α and whole i ≥ 0."""
    out = 1.0
    for j in range(i):
        out *= (alpha - j) / (j + 1)
    return out
