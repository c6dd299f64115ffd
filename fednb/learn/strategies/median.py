"""Coordinate-wise median: Yin, Chen, Ramchandran, Bartlett, "Byzantine-Robust Distributed Learning:
Towards Optimal Statistical Rates", ICML 2018 (arXiv:1803.01498).

Each parameter of the next global model is the median of that parameter across the domains:
robust to a minority of bad or hostile updates.
"""

from __future__ import annotations

import numpy as np

from fednb.learn.strategies.base import Strategy, Update, Weights, cast_like, stack


class FedMedian(Strategy):
    def aggregate(self, current: Weights, updates: list[Update]) -> Weights:
        return cast_like({name: np.median(stack(updates, name), axis=0) for name in current}, current)
