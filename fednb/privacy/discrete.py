"""Exact samplers for the discrete Laplace and discrete Gaussian distributions on the integers.

Noise drawn as a float (``numpy``'s ``laplace``, ``normal``) and added to a float leaves traces in
the result's low-order bits: Mironov ("On Significance of the Least Significant Bits for
Differential Privacy", CCS 2012) shows that some outputs are possible with one input and impossible
with its neighbour, so one release can answer a yes/no question about one person with certainty.
Noise on the integers, sampled exactly, has no such bits: every integer output is possible under
every input, with probabilities whose ratio the privacy analysis bounds.

Samplers of Canonne, Kamath & Steinke, "The Discrete Gaussian for Differential Privacy", NeurIPS
2020, §5: Algorithm 1 (Bernoulli(exp(−γ)) for rational γ), Algorithm 2 (discrete Laplace) and
Algorithm 3 (discrete Gaussian, by rejection from a discrete Laplace). They use only uniform
integers and exact rational arithmetic (:class:`fractions.Fraction`), so no floating-point rounding
enters the distribution. Randomness comes from a ``random.Random``-like source's ``randrange``: the
operating system's CSPRNG (:class:`secrets.SystemRandom`) in production, a seeded one in tests.
"""

from __future__ import annotations

import math
import random
import secrets
from fractions import Fraction
from typing import Protocol


class Source(Protocol):
    def randrange(self, stop: int) -> int: ...


def system_source() -> Source:
    """Uniform integers from the operating system: nobody can predict or replay the noise."""
    return secrets.SystemRandom()


def seeded_source(seed: int) -> Source:
    """A reproducible source, for tests only."""
    return random.Random(seed)


def bernoulli(p: Fraction, rng: Source) -> bool:
    """True with probability ``p`` (0 ≤ p ≤ 1), exactly."""
    return rng.randrange(p.denominator) < p.numerator


def bernoulli_exp(gamma: Fraction, rng: Source) -> bool:
    """True with probability exp(−γ), γ ≥ 0 rational (Canonne, Kamath & Steinke 2020, Algorithm 1)."""
    while gamma > 1:  # exp(−γ) = exp(−1)^⌊γ⌋ · exp(−(γ − ⌊γ⌋))
        if not bernoulli_exp(Fraction(1), rng):
            return False
        gamma -= 1
    k = 1
    while bernoulli(gamma / k, rng):
        k += 1
    return k % 2 == 1


def discrete_laplace(scale: Fraction, rng: Source) -> int:
    """Y with P[Y = y] ∝ exp(−|y| / scale) (Canonne, Kamath & Steinke 2020, Algorithm 2)."""
    t, s = scale.numerator, scale.denominator  # scale = t / s
    while True:
        u = rng.randrange(t)
        if not bernoulli_exp(Fraction(u, t), rng):
            continue
        v = 0
        while bernoulli_exp(Fraction(1), rng):
            v += 1
        y = (u + t * v) // s
        negative = rng.randrange(2) == 1
        if negative and y == 0:
            continue
        return -y if negative else y


def discrete_gaussian(sigma2: Fraction, rng: Source) -> int:
    """Y with P[Y = y] ∝ exp(−y² / 2σ²) (Canonne, Kamath & Steinke 2020, Algorithm 3)."""
    t = math.isqrt(sigma2.numerator // sigma2.denominator) + 1  # ⌊σ⌋ + 1
    while True:
        y = discrete_laplace(Fraction(t), rng)
        gap = abs(y) - sigma2 / t
        if bernoulli_exp(gap * gap / (2 * sigma2), rng):
            return y


def laplace_variance(scale: float) -> float:
    """Variance of the discrete Laplace of this scale: 2e^(−1/b) / (1 − e^(−1/b))²."""
    q = math.exp(-1.0 / scale)
    return 2.0 * q / (-math.expm1(-1.0 / scale)) ** 2
