"""fednb.learn's Trainer in a real kernel shows the live TrainingDashboard and feeds it every round
(the browser test feeds a dashboard by hand; this one is the Trainer's own path)."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from fednb.demo import data
from tests.conftest import owners_approving, start_live

pytest.importorskip("torch")

WIDGET = "application/vnd.jupyter.widget-view+json"

MODEL = '''
import torch
from torch import nn
import fednb
import fednb.learn as fl

class RiskNet(nn.Module):
    def __init__(self, hidden=4):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)

def features(df):
    import torch
    x = (df[["age", "bmi"]] - [55.0, 27.0]) / [15.0, 5.0]
    return torch.tensor(x.to_numpy(), dtype=torch.float32), torch.tensor(df["readmitted"].to_numpy(), dtype=torch.float32)

def train(model, df, **config):
    import torch
    x, y = features(df)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    opt.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    with torch.no_grad():
        out = model(x)
        return {"loss": loss_fn(out, y).item(), "accuracy": ((out > 0).float() == y).float().mean().item()}
'''

FIT = '''
patients = fednb.connect({urls!r}, token={token!r}).dataset("patients")
trainer = fl.Trainer(RiskNet(), train, data=patients, rounds=2, helpers=[features], description="risk net")
model, history = trainer.fit()
'''

CHECK = '''
from ipywidgets import Widget
board = next(w for w in list(Widget.widgets.values()) if type(w).__name__ == "TrainingDashboard")
print(len(board.records), len(trainer.records), board.plotted("loss")["global"][0])
'''


@pytest.fixture(scope="module")
def fl_domains(tmp_path_factory, alice_token):
    root = tmp_path_factory.mktemp("nb-fl")
    live = [start_live(root, name, data.hospital(name), alice_token,
                       policy_edits={"warm_torch = false": "warm_torch = true"}) for name in data.HOSPITALS]
    with owners_approving(live, "a small model; reviewed"):
        yield live
    for d in live:
        d.server.stop()


def test_the_trainer_shows_and_feeds_the_dashboard_in_a_notebook(fl_domains, alice_token, tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(MODEL),
                nbformat.v4.new_code_cell(FIT.format(urls=[d.url for d in fl_domains], token=alice_token)),
                nbformat.v4.new_code_cell(CHECK)]
    NotebookClient(nb, timeout=180, kernel_name="python3").execute(env={"FEDNB_HOME": str(tmp_path)})
    shown = [o for o in nb.cells[1].outputs if WIDGET in o.get("data", {})]
    assert len(shown) == 1, nb.cells[1].outputs  # the dashboard, not a progress bar
    assert nb.cells[2].outputs[0]["text"].strip() == "6 6 [1, 2]"  # 2 rounds x (2 domains + global)
