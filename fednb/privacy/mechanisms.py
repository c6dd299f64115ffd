"""Noise calibrated to sensitivity: the Laplace and Gaussian mechanisms.

- Laplace (Dwork, McSherry, Nissim & Smith 2006; Dwork & Roth, *The Algorithmic Foundations of
  Differential Privacy*, 2014, Thm 3.6): adding Lap(Δ₁/ε) to a query of L1 sensitivity Δ₁ is ε-DP.
- Gaussian, analytically calibrated (Balle & Wang, "Improving the Gaussian Mechanism for
  Differential Privacy: Analytical Calibration and Optimal Denoising", ICML 2018, Thm 8): N(0, σ²)
  on a query of L2 sensitivity Δ₂ is (ε, δ)-DP iff
  Φ(Δ/2σ − εσ/Δ) − e^ε Φ(−Δ/2σ − εσ/Δ) ≤ δ. Unlike the classical σ = Δ√(2 ln(1.25/δ))/ε
  (Dwork & Roth 2014, Thm A.1) it holds for every ε and gives the smallest σ.

Sensitivities here are for add/remove-one-row neighbours (unbounded DP).

Both are released on a lattice, never as float noise on a float (Mironov, "On Significance of the
Least Significant Bits for Differential Privacy", CCS 2012, whose attack reads one person's data
from the low bits of a float release). The value is rounded to the grid γ = 2^(⌊log₂ Δ⌋ − 12), a
power of two, and integer noise is added in units of γ: the discrete Laplace for Laplace, the
discrete Gaussian for Gaussian (Canonne, Kamath & Steinke, "The Discrete Gaussian for Differential
Privacy", NeurIPS 2020), sampled exactly (:mod:`fednb.privacy.discrete`). The release γ·(round(v/γ)
+ Z) is a multiple of γ whatever v's low bits were. Rounding moves a neighbour by at most one more
step, so the noise is calibrated to the rounded query's sensitivity ⌊Δ/γ⌋ + 1 steps (at most
Δ(1 + 2⁻¹¹)): the ε (and δ) spent are exactly those asked, the noise 0.05 % larger at most.

- Discrete Laplace of scale b/γ on a query of integer sensitivity k is ε-DP for b/γ ≥ k/ε, exactly
  as the continuous one (Canonne et al. 2020, §2; the geometric mechanism of Ghosh, Roughgarden &
  Sundararajan 2009).
- The discrete Gaussian's exact (ε, δ) curve (Canonne et al. 2020, Thm 7) approaches Balle & Wang's
  for the continuous Gaussian as σ/γ grows; at σ/γ ≥ 2¹² they agree to within 10⁻⁷ relative
  (checked in the tests), and σ is calibrated for δ(1 − 10⁻³) to stay below the δ spent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from fednb.privacy import discrete

Mechanism = Literal["laplace", "gaussian"]
GRID_BITS = 12  # the lattice step is 2^-12 of the sensitivity's power of two
DELTA_MARGIN = 1e-3  # the discrete Gaussian is calibrated for delta * (1 - DELTA_MARGIN)


def new_rng() -> discrete.Source:
    """Uniform integers nobody can predict: the operating system's CSPRNG."""
    return discrete.system_source()


def source(rng: Any) -> discrete.Source:
    """The integer source of ``rng``: itself, or for a seeded ``numpy`` generator (tests), one seeded from it."""
    if isinstance(rng, np.random.Generator):
        return discrete.seeded_source(int(rng.integers(2**63)))
    return rng if rng is not None else new_rng()


def grid(sensitivity: float) -> float:
    """The lattice step for a query of this sensitivity: a power of two, 2^-12 of it or finer."""
    return math.ldexp(1.0, math.floor(math.log2(sensitivity)) - GRID_BITS)


def laplace_scale(sensitivity: float, epsilon: float) -> float:
    """b of Lap(b) for an ε-DP release of a query with L1 sensitivity ``sensitivity``."""
    _check(epsilon, 0.0)
    return float(sensitivity) / epsilon


def gaussian_delta(mu: float, epsilon: float) -> float:
    """Smallest δ for which a Gaussian mechanism with Δ/σ = ``mu`` is (ε, δ)-DP (Balle & Wang 2018).

    The same curve is exact for any (adaptive) composition of Gaussian mechanisms, with
    mu = sqrt(Σ (Δᵢ/σᵢ)²) (Dong, Roth & Su, "Gaussian Differential Privacy", 2019, Cor. 3.3).
    """
    from fednb.privacy.special import log_ndtr, ndtr

    if mu <= 0:
        return 0.0
    a, b = -epsilon / mu + mu / 2, -epsilon / mu - mu / 2
    return max(0.0, ndtr(a) - math.exp(min(epsilon + log_ndtr(b), 0.0)))


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
    """One calibrated noise source on the lattice ``step`` (γ): ``scale`` is the discrete Laplace's b or
    the discrete Gaussian's σ, in the data's units; ``std`` the noise's standard deviation."""

    mechanism: Mechanism
    epsilon: float
    delta: float
    sensitivity: float
    scale: float
    step: float = 0.0
    units: Fraction = Fraction(0)  # the scale in lattice steps, exact: what the sampler uses

    @property
    def std(self) -> float:
        if self.scale == 0:
            return 0.0
        if self.mechanism == "laplace":
            return self.step * math.sqrt(discrete.laplace_variance(self.scale / self.step))
        return self.scale  # the discrete Gaussian's variance is σ² to within exp(−2π²σ²/γ²) (Canonne et al. §2)

    def release(self, value: Any, rng: Any = None) -> Any:
        """``value`` (a number or an array) rounded to the lattice, plus exact integer noise on it:
        each entry is γ·(round(v/γ) + Z), a multiple of γ. The only way a noisy value leaves."""
        if self.scale == 0:
            return value
        rng = source(rng)
        units = self.units
        draw = (lambda: discrete.discrete_laplace(units, rng)) if self.mechanism == "laplace" else \
            (lambda: discrete.discrete_gaussian(units * units, rng))
        values = np.asarray(value, dtype=np.float64)
        out = np.array([self.step * (round(v / self.step) + draw()) for v in values.ravel().tolist()], dtype=np.float64)
        return float(out[0]) if values.ndim == 0 else out.reshape(values.shape)


def calibrate(mechanism: Mechanism, sensitivity: float, epsilon: float, delta: float = 0.0) -> Noise:
    """The noise for one release. Laplace ignores ``delta`` (it is pure ε-DP, δ = 0).

    For a vector release, ``sensitivity`` is its L1 norm bound (Laplace) or L2 norm bound (Gaussian).
    The scale is that of the query rounded to the lattice, whose sensitivity is ⌊Δ/γ⌋ + 1 steps.
    """
    if mechanism not in ("laplace", "gaussian"):
        raise ValueError(f"unknown mechanism {mechanism!r}; use 'laplace' or 'gaussian'")
    if sensitivity == 0:
        return Noise(mechanism, epsilon, delta if mechanism == "gaussian" else 0.0, 0.0, 0.0)
    step = grid(sensitivity)
    steps = math.floor(sensitivity / step) + 1
    if mechanism == "laplace":
        laplace_scale(1.0, epsilon)  # checks epsilon
        units = Fraction(steps) / Fraction(epsilon)  # exactly steps/ε: the float ε is a dyadic rational
        return Noise("laplace", epsilon, 0.0, sensitivity, step * float(units), step, units)
    units = Fraction(gaussian_sigma(steps, epsilon, delta * (1 - DELTA_MARGIN)))
    return Noise("gaussian", epsilon, delta, sensitivity, step * float(units), step, units)


def _check(epsilon: float, delta: float) -> None:
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ValueError("epsilon must be a positive number")
    if not 0 <= delta < 1:
        raise ValueError("delta must be in [0, 1)")
