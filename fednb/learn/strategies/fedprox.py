"""FedProx: Li, Sahu, Zaheer, Sanjabi, Talwalkar, Smith, "Federated Optimization in Heterogeneous
Networks", MLSys 2020 (arXiv:1812.06127).

Aggregates like FedAvg; each domain adds the proximal term mu/2 ||w - w_global||^2 to its local loss.
The domains' training function receives ``proximal_mu`` and ``global_params`` in its config; use
:func:`fednb.learn.proximal_term` there.

mu: strength of the proximal term (0 is FedAvg).
"""

from __future__ import annotations

from fednb.learn.strategies.fedavg import FedAvg


class FedProx(FedAvg):
    def __init__(self, mu: float = 0.01):
        if mu < 0:
            raise ValueError("mu must be >= 0")
        self.mu = mu

    def configure(self, round_number: int) -> dict:
        return {"proximal_mu": self.mu}
