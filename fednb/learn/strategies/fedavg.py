"""FedAvg: McMahan, Moore, Ramage, Hampson, Agüera y Arcas, "Communication-Efficient Learning of
Deep Networks from Decentralized Data", AISTATS 2017 (arXiv:1602.05629).

The next global model is the average of the domains' models weighted by their sample counts.
"""

from __future__ import annotations

import numpy as np

from fednb.learn.strategies.base import Strategy, Update, Weights, cast_like, stack


class FedAvg(Strategy):
    def aggregate(self, current: Weights, updates: list[Update]) -> Weights:
        n = np.array([u.n for u in updates], dtype=np.float64)
        share = n / n.sum()
        averaged = {name: np.tensordot(share, stack(updates, name), axes=1) for name in current}
        return cast_like(averaged, current)
