"""The digits task shared by the learning benchmarks (issue 4's Flower comparison, issue 5's
secure aggregation and DP runs).

scikit-learn's digits, stratified 80/20 train/test split (seed 42), the training rows split non-IID
across domains by label groups ({0-3}, {4-6}, {7-9} for 3 domains; one label each for 10); an MLP
64-32-10 trained with SGD (lr 0.05, momentum 0.9, batch 32, 1 local epoch per round); the test set
evaluated centrally. :func:`federation` serves one domain per part, with owners approving.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

PIXELS = [f"p{i}" for i in range(64)]
GROUPS_3 = [(0, 1, 2, 3), (4, 5, 6), (7, 8, 9)]
CONFIG = {"lr": 0.05, "momentum": 0.9, "batch_size": 32, "epochs": 1}


def split(groups=GROUPS_3, seed: int = 42) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """The training rows of each domain, and the test set."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    frame = pd.DataFrame(digits.data.astype(np.int64), columns=PIXELS)
    frame["label"] = digits.target
    train, test = train_test_split(frame, test_size=0.2, stratify=frame["label"], random_state=seed)
    parts = [train[train["label"].isin(g)].reset_index(drop=True) for g in groups]
    return parts, test.reset_index(drop=True)


def label_groups(domains: int) -> list[tuple[int, ...]]:
    """Label-skewed groups for 1 to 10 domains: each domain holds a few labels, no label two domains."""
    if not 1 <= domains <= 10:
        raise ValueError("the digits task splits over 1 to 10 domains")
    if domains == 3:
        return GROUPS_3
    return [tuple(int(c) for c in chunk) for chunk in np.array_split(np.arange(10), domains)]


class DigitsMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.net(x)


def digits_tensors(df, **config):
    """Pixels scaled to [0, 1] and labels (DP-SGD's data function; a helper of the others)."""
    import torch

    x = torch.tensor(df[[f"p{i}" for i in range(64)]].to_numpy() / 16.0, dtype=torch.float32)
    return x, torch.tensor(df["label"].to_numpy(), dtype=torch.long)


def train_digits(model, df, lr=0.05, momentum=0.9, batch_size=32, epochs=1, **config):
    """One domain's local training: SGD with momentum over its rows, in a seeded order."""
    import torch

    x, y = digits_tensors(df)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    loss_fn = torch.nn.CrossEntropyLoss()
    order = torch.Generator().manual_seed(config.get("round", 0))
    total, seen = 0.0, 0
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=order)
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            seen += len(idx)
    return {"loss": total / max(seen, 1)}


def accuracy(model: nn.Module, test: pd.DataFrame) -> float:
    with torch.no_grad():
        x = torch.tensor(test[PIXELS].to_numpy() / 16.0, dtype=torch.float32)
        return float((model(x).argmax(1).numpy() == test["label"].to_numpy()).mean())


@contextlib.contextmanager
def federation(root: Path, parts: list[pd.DataFrame], token: str, *, policy_edits: dict[str, str] | None = None):
    """One served domain per part (torch warm in its sandbox), owners approving every training request."""
    from fednb.demo.local import create_domain, serving
    from fednb.demo.workshop import approving

    edits = {"warm_torch = false": "warm_torch = true", **(policy_edits or {})}
    folders = {}
    for i, part in enumerate(parts):
        create_domain(root, f"digits-{i}", part, "digits", token=token, analyst="bench", policy_edits=edits).close()
        folders[f"digits-{i}"] = root / f"digits-{i}"
    with serving(list(folders.values())) as servers, approving(folders, None, "benchmark"):
        yield servers


def centralized(parts: list[pd.DataFrame], test: pd.DataFrame, epochs: int = 10, seed: int = 0) -> float:
    """The same model and optimiser on all training rows together: the ceiling to compare with."""
    torch.manual_seed(seed)
    model = DigitsMLP()
    everything = pd.concat(parts, ignore_index=True)
    for epoch in range(epochs):
        train_digits(model, everything, round=epoch, **CONFIG)
    return accuracy(model, test)
