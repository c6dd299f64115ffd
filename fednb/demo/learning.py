"""The demo's federated model: a small network predicting readmission. Its source is what the
hospitals review and run; it imports torch, so it loads only with the ``fednb[learn]`` extra."""

from __future__ import annotations

from torch import nn


class ReadmissionNet(nn.Module):
    def __init__(self, hidden=8):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(5, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)


def readmission_features(df):
    """Scaled age and bmi, smoker, diabetes and sex as model inputs; readmission as the target."""
    import torch

    x = ((df[["age", "bmi"]] - [55.0, 27.0]) / [15.0, 5.0]).assign(
        smoker=df["smoker"].astype(float), diabetes=df["diabetes"].astype(float), male=(df["sex"] == "M").astype(float))
    return torch.tensor(x.to_numpy(), dtype=torch.float32), torch.tensor(df["readmitted"].to_numpy(), dtype=torch.float32)


def train_readmission(model, df, lr=0.05, epochs=2, **config):
    """A few epochs of SGD on this hospital's patients; returns the loss and accuracy."""
    import torch

    x, y = readmission_features(df)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for _ in range(epochs):
        for i in range(0, len(x), 32):
            opt.zero_grad()
            loss_fn(model(x[i:i + 32]), y[i:i + 32]).backward()
            opt.step()
    with torch.no_grad():
        out = model(x)
        return {"loss": loss_fn(out, y).item(), "accuracy": ((out > 0).float() == y).float().mean().item()}
