"""The digits task shared by the privacy benchmarks: scikit-learn's ``load_digits`` split over N
domains with label skew (Dirichlet(0.5) class proportions, Hsu et al. 2019), an MLP 64-32-10, and
owners who approve every request as it arrives."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from fednb.domain import Domain
from fednb.domain.process import DomainProcess

PIXELS = [f"p{i}" for i in range(64)]


class MLP(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.net(x)


def digits_tensors(df, **config):
    import torch

    x = torch.tensor(df[[f"p{i}" for i in range(64)]].to_numpy() / 16.0, dtype=torch.float32)
    return x, torch.tensor(df["label"].to_numpy(), dtype=torch.long)


def train(model, df, epochs=1, lr=0.1, batch_size=32, **config):
    import torch

    x, y = digits_tensors(df)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    order = torch.randperm(len(x))
    for _ in range(epochs):
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    return {"loss": float(loss)}


def split(domains: int, seed: int = 0, alpha: float = 0.5):
    """(frames per domain, test x, test y): 80 % of the digits split with label skew, 20 % held out."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))
    cut = int(0.8 * len(order))
    train_idx, test_idx = order[:cut], order[cut:]
    parts: list[list[int]] = [[] for _ in range(domains)]
    for label in range(10):
        rows = train_idx[digits.target[train_idx] == label]
        shares = rng.dirichlet([alpha] * domains)
        bounds = (np.cumsum(shares) * len(rows)).astype(int)[:-1]
        for d, chunk in enumerate(np.split(rows, bounds)):
            parts[d].extend(chunk.tolist())
    frames = []
    for rows in parts:
        df = pd.DataFrame(digits.data[rows].astype(int), columns=PIXELS)
        df["label"] = digits.target[rows]
        frames.append(df)
    test_x = torch.tensor(digits.data[test_idx] / 16.0, dtype=torch.float32)
    return frames, test_x, torch.tensor(digits.target[test_idx])


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


@contextmanager
def federation(root: Path, frames: list[pd.DataFrame], token: str, *, policy_edits: dict[str, str] | None = None):
    """One served domain per frame, with torch warm in the sandbox, and owners approving requests."""
    servers = []
    edits = {"warm_torch = false": "warm_torch = true", **(policy_edits or {})}
    for i, df in enumerate(frames):
        d = Domain.init(root / f"d{i}", f"digits-{i}")
        text = (d.path / "policy.toml").read_text()
        for old, new in edits.items():
            text = text.replace(old, new)
        (d.path / "policy.toml").write_text(text)
        d = Domain(d.path)
        csv = root / f"d{i}.csv"
        df.to_csv(csv, index=False)
        d.add_dataset(csv, "digits")
        d.invite("bench", token=token)
        d.close()
        servers.append(DomainProcess(root / f"d{i}"))
    stop = threading.Event()

    def approve() -> None:
        while not stop.is_set():
            for s in servers:
                dom = Domain(s.path)
                for r in dom.requests(status="pending"):
                    dom.approve(r.id, "benchmark")
                dom.close()
            time.sleep(0.1)

    approver = threading.Thread(target=approve, daemon=True)
    try:
        for s in servers:
            s.start()
        approver.start()
        yield servers
    finally:
        stop.set()
        for s in servers:
            s.stop()
