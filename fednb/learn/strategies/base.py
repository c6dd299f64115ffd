"""The common base of aggregation strategies: one round's updates in, the next global weights out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Weights = dict[str, np.ndarray]


@dataclass
class Update:
    """What one domain released for a round."""

    domain: str
    weights: Weights
    n: int
    metrics: dict[str, Any] = field(default_factory=dict)


class Strategy:
    """Subclasses override :meth:`aggregate` (and :meth:`configure` to send settings to the domains)."""

    def configure(self, round_number: int) -> dict[str, Any]:
        """Extra settings for the domains' training function this round."""
        return {}

    def aggregate(self, current: Weights, updates: list[Update]) -> Weights:
        raise NotImplementedError

    def state(self) -> dict[str, np.ndarray]:
        """Tensors to checkpoint between rounds (optimizer moments...)."""
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state` returned (after a kernel restart)."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


def stack(updates: list[Update], name: str) -> np.ndarray:
    """One parameter of every update, stacked along a new first axis, as float64."""
    return np.stack([u.weights[name].astype(np.float64) for u in updates])


def cast_like(values: dict[str, np.ndarray], like: Weights) -> Weights:
    """Back to each parameter's own dtype (integer buffers are rounded)."""
    out = {}
    for name, value in values.items():
        dtype = like[name].dtype
        out[name] = (np.rint(value) if np.issubdtype(dtype, np.integer) else value).astype(dtype)
    return out
