"""Coordinate-wise trimmed mean: Yin, Chen, Ramchandran, Bartlett, "Byzantine-Robust Distributed
Learning: Towards Optimal Statistical Rates", ICML 2018 (arXiv:1803.01498).

For each parameter, the largest and smallest ``beta`` fraction of the domains' values are dropped
and the rest averaged.

beta: fraction trimmed at each end, in [0, 0.5).
"""

from __future__ import annotations

import math

import numpy as np

from fednb.learn.strategies.base import Strategy, Update, Weights, cast_like, stack


class FedTrimmedAvg(Strategy):
    def __init__(self, beta: float = 0.2):
        if not 0 <= beta < 0.5:
            raise ValueError("beta must be in [0, 0.5)")
        self.beta = beta

    def aggregate(self, current: Weights, updates: list[Update]) -> Weights:
        k = math.floor(self.beta * len(updates))
        out = {}
        for name in current:
            values = np.sort(stack(updates, name), axis=0)
            out[name] = values[k:len(updates) - k].mean(axis=0)
        return cast_like(out, current)
