"""Shamir's secret sharing over the prime field of the Mersenne prime 2⁵²¹ − 1.

Shamir, "How to Share a Secret", CACM 1979: a secret s < p is the constant term of a random
polynomial of degree t − 1; share i is (i, f(i)); any t shares give s by Lagrange interpolation at 0,
fewer say nothing about it. Secure aggregation (Bonawitz et al. 2017) shares each domain's masking
key and self-mask seed this way, so the masks of a domain that drops out can still be removed.
The field holds any 64-byte secret; coefficients come from ``secrets``.
"""

from __future__ import annotations

import secrets

PRIME = 2**521 - 1


def split(secret: int, xs: list[int], threshold: int) -> dict[int, int]:
    """Shares {x: f(x)} of ``secret`` for each x in ``xs`` (non-zero, distinct); any ``threshold`` rebuild it."""
    if not 0 <= secret < PRIME:
        raise ValueError("the secret must be an integer in [0, 2^521 - 1)")
    if not 1 <= threshold <= len(xs):
        raise ValueError(f"threshold {threshold} must be between 1 and the {len(xs)} shares")
    if len(set(xs)) != len(xs) or any(x % PRIME == 0 for x in xs):
        raise ValueError("share points must be distinct and non-zero")
    coefficients = [secret] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    out = {}
    for x in xs:
        y = 0
        for c in reversed(coefficients):  # Horner
            y = (y * x + c) % PRIME
        out[x] = y
    return out


def combine(shares: dict[int, int]) -> int:
    """The secret from shares {x: y} (at least the threshold of them), by Lagrange interpolation at 0."""
    if not shares:
        raise ValueError("no shares to combine")
    secret = 0
    points = list(shares.items())
    for i, (xi, yi) in enumerate(points):
        num, den = 1, 1
        for j, (xj, _) in enumerate(points):
            if i != j:
                num = num * (-xj) % PRIME
                den = den * (xi - xj) % PRIME
        secret = (secret + yi * num * pow(den, -1, PRIME)) % PRIME
    return secret
