"""Real vectors in the ring Z/2⁶⁴Z, where secure aggregation adds masked inputs.

A value v is encoded as round(v · 2^FRAC_BITS) mod 2⁶⁴ (two's complement, numpy ``uint64``
wraparound); sums of encodings decode to the sum of the values as long as the true sum stays within
±2^(63−FRAC_BITS). With 24 fraction bits each value is within 2⁻²⁵ ≈ 3·10⁻⁸ of its encoding and
sums up to ±5.5·10¹¹ decode exactly (Bonawitz et al. 2017, §3, encode inputs in Z_R).
"""

from __future__ import annotations

import numpy as np

FRAC_BITS = 24
LIMIT = float(2 ** (63 - FRAC_BITS))  # the largest |sum| that still decodes


def encode(values: np.ndarray, *, parties: int = 1) -> np.ndarray:
    """float vector → uint64 ring elements; refuses values whose sum over ``parties`` could overflow."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(x)):
        raise ValueError("secure aggregation needs finite values")
    bound = LIMIT / max(parties, 1)
    if x.size and np.abs(x).max() >= bound:
        raise ValueError(f"a value of {np.abs(x).max():.3g} is outside the fixed-point range "
                         f"(|value| < {bound:.3g} for {parties} parties)")
    return np.rint(x * 2.0 ** FRAC_BITS).astype(np.int64).view(np.uint64)


def decode(ring: np.ndarray) -> np.ndarray:
    """uint64 ring elements → floats (reading them as signed 64-bit integers)."""
    return np.asarray(ring, dtype=np.uint64).view(np.int64).astype(np.float64) / 2.0 ** FRAC_BITS
