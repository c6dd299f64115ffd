"""Federated learning with torch (the ``fednb[learn]`` extra): a Trainer and aggregation strategies.

Importing this module imports torch; ``import fednb`` never does.
"""

from fednb.learn.strategies import FedAdam, FedAvg, FedMedian, FedProx, FedTrimmedAvg, Strategy, Update
from fednb.learn.trainer import Trainer, proximal_term

__all__ = ["Trainer", "proximal_term", "Strategy", "Update", "FedAvg", "FedProx", "FedAdam", "FedMedian",
           "FedTrimmedAvg"]
