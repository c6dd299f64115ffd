"""Aggregation strategies, one file each, each citing its paper."""

from fednb.learn.strategies.base import Strategy, Update
from fednb.learn.strategies.fedadam import FedAdam
from fednb.learn.strategies.fedavg import FedAvg
from fednb.learn.strategies.fedprox import FedProx
from fednb.learn.strategies.median import FedMedian
from fednb.learn.strategies.trimmed_mean import FedTrimmedAvg

__all__ = ["Strategy", "Update", "FedAvg", "FedProx", "FedAdam", "FedMedian", "FedTrimmedAvg"]
