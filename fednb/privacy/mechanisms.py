"""Noise calibrated to sensitivity: the Laplace and Gaussian mechanisms.

- Laplace (Dwork, McSherry, Nissim & Smith 2006; Dwork & Roth, *The Algorithmic Foundations of
  Differential Privacy*, 2014, Thm 3.6): adding Lap(Δ₁/ε) to a query of L1 sensitivity Δ₁ is ε-DP.
- Gaussian, analytically calibrated (Balle & Wang, "Improving the Gaussian Mechanism for
  Differential Privacy: Analytical Calibration and Optimal Denoising", ICML 2018, Thm 8): N(0, σ²)
  on a query of L2 sensitivity Δ₂ is (ε, δ)-DP iff
  Φ(Δ/2σ − εσ/Δ) − e^ε Φ(−Δ/2σ − εσ/Δ) ≤ δ. Unlike the classical σ = Δ√(2 ln(1.25/δ))/ε
  (Dwork & Roth 2014, Thm A.1) it holds for every ε and gives the smallest σ.

Sensitivities here are for add/remove-one-row neighbours (unbounded DP). Noise is drawn from a
generator seeded with 128 bits from the operating system unless a generator is passed (tests).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Literal

import numpy as np

Mechanism = Literal["laplace", "gaussian"]


def new_rng() -> np.random.Generator:
    """A generator nobody can predict: its seed never leaves this process."""
    return np.random.default_rng(secrets.randbits(128))


def laplace_scale(sensitivity: float, epsilon: float) -> float:
    """b of Lap(b) for an ε-DP release of a query with L1 sensitivity ``sensitivity``."""
    _check(epsilon, 0.0)
    return float(sensitivity) / epsilon


def gaussian_delta(mu: float, epsilon: float) -> float:
    """Smallest δ for which a Gaussian mechanism with Δ/σ = ``mu`` is (ε, δ)-DP (Balle & Wang 2018).

    The same curve is exact for any (adaptive) composition of Gaussian mechanisms, with
    mu = sqrt(Σ (Δᵢ/σᵢ)²) (Dong, Roth & Su, "Gaussian Differential Privacy", 2019, Cor. 3.3).
    """
    from scipy.special import log_ndtr, ndtr

    if mu <= 0:
        return 0.0
    a, b = -epsilon / mu + mu / 2, -epsilon / mu - mu / 2
    return float(max(0.0, ndtr(a) - math.exp(min(epsilon + log_ndtr(b), 0.0))))


def gaussian_sigma(sensitivity: float, epsilon: float, delta: float) -> float:
    """Smallest σ for an (ε, δ)-DP Gaussian release of L2 sensitivity ``sensitivity`` (Balle & Wang 2018)."""
    _check(epsilon, delta)
    if not 0 < delta < 1:
        raise ValueError("the Gaussian mechanism needs 0 < delta < 1")
    lo, hi = 1e-6, 1.0
    while gaussian_delta(1 / hi, epsilon) > delta:  # delta falls as sigma (per unit sensitivity) grows
        lo, hi = hi, hi * 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if gaussian_delta(1 / mid, epsilon) > delta:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * hi:
            break
    return float(sensitivity) * hi


@dataclass(frozen=True)
class Noise:
    """One calibrated noise source: ``scale`` is Laplace's b or Gaussian's σ; ``std`` its standard deviation."""

    mechanism: Mechanism
    epsilon: float
    delta: float
    sensitivity: float
    scale: float

    @property
    def std(self) -> float:
        return self.scale * math.sqrt(2) if self.mechanism == "laplace" else self.scale

    def sample(self, rng: np.random.Generator, size=None) -> np.ndarray | float:
        if self.scale == 0:
            return np.zeros(size) if size is not None else 0.0
        if self.mechanism == "laplace":
            return rng.laplace(0.0, self.scale, size)
        return rng.normal(0.0, self.scale, size)


def calibrate(mechanism: Mechanism, sensitivity: float, epsilon: float, delta: float = 0.0) -> Noise:
    """The noise for one release. Laplace ignores ``delta`` (it is pure ε-DP, δ = 0).

    For a vector release, ``sensitivity`` is its L1 norm bound (Laplace) or L2 norm bound (Gaussian).
    """
    if mechanism == "laplace":
        return Noise("laplace", epsilon, 0.0, sensitivity, laplace_scale(sensitivity, epsilon))
    if mechanism == "gaussian":
        return Noise("gaussian", epsilon, delta, sensitivity, gaussian_sigma(sensitivity, epsilon, delta))
    raise ValueError(f"unknown mechanism {mechanism!r}; use 'laplace' or 'gaussian'")


def _check(epsilon: float, delta: float) -> None:
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ValueError("epsilon must be a positive number")
    if not 0 <= delta < 1:
        raise ValueError("delta must be in [0, 1)")
