"""FedAdam: Reddi, Charles, Zaheer, Garrett, Rush, Konečný, Kumar, McMahan, "Adaptive Federated
Optimization", ICLR 2021 (arXiv:2003.00295).

The average change of the domains' models is a pseudo-gradient; the server applies Adam to it.

eta: server learning rate; beta_1, beta_2: moment decay; tau: adaptivity (the epsilon of Adam).
"""

from __future__ import annotations

import numpy as np

from fednb.learn.strategies.base import Strategy, Update, Weights, cast_like, stack


class FedAdam(Strategy):
    def __init__(self, eta: float = 0.01, beta_1: float = 0.9, beta_2: float = 0.99, tau: float = 1e-3):
        self.eta, self.beta_1, self.beta_2, self.tau = eta, beta_1, beta_2, tau
        self._m: dict[str, np.ndarray] = {}
        self._v: dict[str, np.ndarray] = {}

    def aggregate(self, current: Weights, updates: list[Update]) -> Weights:
        n = np.array([u.n for u in updates], dtype=np.float64)
        share = n / n.sum()
        out = {}
        for name, value in current.items():
            x = value.astype(np.float64)
            delta = np.tensordot(share, stack(updates, name), axes=1) - x
            if not np.issubdtype(value.dtype, np.floating):
                out[name] = x + delta  # counters and buffers are averaged, not optimised
                continue
            m = self.beta_1 * self._m.get(name, np.zeros_like(x)) + (1 - self.beta_1) * delta
            v = self.beta_2 * self._v.get(name, np.zeros_like(x)) + (1 - self.beta_2) * delta * delta
            self._m[name], self._v[name] = m, v
            out[name] = x + self.eta * m / (np.sqrt(v) + self.tau)
        return cast_like(out, current)

    def state(self) -> dict[str, np.ndarray]:
        return {**{f"m.{k}": v for k, v in self._m.items()}, **{f"v.{k}": v for k, v in self._v.items()}}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self._m = {k[2:]: v for k, v in state.items() if k.startswith("m.")}
        self._v = {k[2:]: v for k, v in state.items() if k.startswith("v.")}
