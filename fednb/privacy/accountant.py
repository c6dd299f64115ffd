"""The domain's accountant for DP-SGD: Rényi differential privacy of the sampled Gaussian mechanism.

One DP-SGD step (Abadi et al., "Deep Learning with Differential Privacy", CCS 2016) samples each row
with probability q (Poisson), clips each row's gradient to norm C and adds N(0, (zC)²) to their sum:
a sampled Gaussian mechanism with noise multiplier z. Its Rényi DP of order α is log(A_α)/(α−1)
(Mironov, Talwar & Zhang, "Rényi Differential Privacy of the Sampled Gaussian Mechanism", 2019,
§3.3): for integer α, A_α = Σₖ C(α,k) (1−q)^(α−k) qᵏ exp((k²−k)/(2z²)); for fractional α, the
same paper's two convergent series split at z0 = z² log(1/q − 1) + 1/2. RDP adds up over steps
(Mironov, "Rényi Differential Privacy", CSF 2017, Prop. 1) and converts to (ε, δ) by
ε = RDP(α) + log((α−1)/α) − (log δ + log α)/(α−1), minimised over α (Balle, Barthe, Gaboardi, Hsu &
Sato, "Hypothesis Testing Interpretations and Renyi Differential Privacy", AISTATS 2020, Thm 21;
the conversion Opacus uses), over the same orders as Opacus' ``RDPAccountant.DEFAULT_ALPHAS``
(1.1 to 10.9 by 0.1, then 12 to 63), so the two give the same ε. Pure Python and numpy
(:mod:`fednb.privacy.special`): the domain process never imports torch for this.
"""

from __future__ import annotations

import math

import numpy as np

ORDERS = tuple(1 + x / 10.0 for x in range(1, 100)) + tuple(range(12, 64))


def rdp_sampled_gaussian(q: float, z: float, order: float) -> float:
    """RDP of order ``order`` (> 1) of one sampled Gaussian step."""
    from fednb.privacy.special import gammaln, logsumexp

    if not 0 < q <= 1:
        raise ValueError("the sample rate must be in (0, 1]")
    if z <= 0:
        return math.inf
    if q == 1:
        return order / (2 * z * z)
    if not float(order).is_integer():
        return _log_a_fractional(q, z, float(order)) / (order - 1)
    order = int(order)
    log_terms = (gammaln(order + 1) - gammaln(k + 1) - gammaln(order - k + 1)
                 + k * math.log(q) + (order - k) * math.log1p(-q) + (k * k - k) / (2 * z * z)
                 for k in range(order + 1))
    return logsumexp(log_terms) / (order - 1)


def _log_a_fractional(q: float, z: float, alpha: float) -> float:
    """log A_α for fractional α (Mironov, Talwar & Zhang 2019, §3.3): two alternating series in the
    generalised binomial coefficients, summed in log space until their terms fall below e⁻³⁰."""
    from fednb.privacy.special import binom, log_ndtr

    def log_erfc(x: float) -> float:
        return math.log(2) + log_ndtr(-x * math.sqrt(2))

    def log_add(a: float, b: float) -> float:
        lo, hi = min(a, b), max(a, b)
        return hi if lo == -math.inf else math.log1p(math.exp(lo - hi)) + hi

    def log_sub(a: float, b: float) -> float:
        if b == -math.inf:
            return a
        if a <= b:
            return -math.inf
        try:
            return math.log(math.expm1(a - b)) + b
        except OverflowError:
            return a

    log_a0 = log_a1 = -math.inf
    z0 = z * z * math.log(1 / q - 1) + 0.5
    i = 0
    while True:
        coef = binom(alpha, i)
        log_coef, j = math.log(abs(coef)), alpha - i
        log_s0 = (log_coef + i * math.log(q) + j * math.log1p(-q) + (i * i - i) / (2 * z * z)
                  + math.log(0.5) + log_erfc((i - z0) / (math.sqrt(2) * z)))
        log_s1 = (log_coef + j * math.log(q) + i * math.log1p(-q) + (j * j - j) / (2 * z * z)
                  + math.log(0.5) + log_erfc((z0 - j) / (math.sqrt(2) * z)))
        step = log_add if coef > 0 else log_sub
        log_a0, log_a1 = step(log_a0, log_s0), step(log_a1, log_s1)
        i += 1
        if max(log_s0, log_s1) < -30:
            return log_add(log_a0, log_a1)


def rdp(q: float, z: float, steps: int, orders=ORDERS) -> np.ndarray:
    return np.array([steps * rdp_sampled_gaussian(q, z, a) for a in orders])


def epsilon(q: float, z: float, steps: int, delta: float, orders=ORDERS) -> float:
    """ε after ``steps`` sampled Gaussian steps at sample rate q and noise multiplier z, for this δ."""
    if steps <= 0:
        return 0.0
    if not 0 < delta < 1:
        raise ValueError("delta must be in (0, 1)")
    orders_arr = np.asarray(orders, dtype=float)
    values = rdp(q, z, steps, orders)
    eps = values + np.log1p(-1 / orders_arr) - (math.log(delta) + np.log(orders_arr)) / (orders_arr - 1)
    eps = eps[np.isfinite(eps)]
    return float(max(0.0, eps.min())) if eps.size else math.inf


def noise_multiplier(target_epsilon: float, q: float, steps: int, delta: float) -> float:
    """The smallest z (to 0.1 %) whose ε after ``steps`` steps is at most ``target_epsilon``."""
    if target_epsilon <= 0:
        raise ValueError("the target epsilon must be positive")
    lo, hi = 0.0, 1.0
    while epsilon(q, hi, steps, delta) > target_epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e6:
            raise ValueError(f"no noise level reaches epsilon {target_epsilon} in {steps} steps")
    while hi - lo > 1e-3 * hi:
        mid = (lo + hi) / 2
        if epsilon(q, mid, steps, delta) > target_epsilon:
            lo = mid
        else:
            hi = mid
    return hi
