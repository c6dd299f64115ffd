"""Federated learning with privacy through real domains: DP-SGD under the domain's accountant, which
debits each released round; a policy that requires it; secure aggregation of the updates, equal to
plain FedAvg, with the weights never released in the clear."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import fednb  # noqa: E402
import fednb.learn as fl  # noqa: E402
from fednb.client.http import DomainClient, run  # noqa: E402
from fednb.demo import data  # noqa: E402
from fednb.domain.release import dp_training  # noqa: E402
from tests.conftest import live_domains, owners_approving  # noqa: E402


class Risk(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))

    def forward(self, x):
        return self.net(x)


def risk_data(df, **config):
    import torch

    x = ((df[["age", "bmi"]] - [55.0, 27.0]) / [15.0, 5.0]).assign(s=df["smoker"].astype(float))
    return torch.tensor(x.to_numpy(), dtype=torch.float32), torch.tensor(df["readmitted"].to_numpy(), dtype=torch.long)


def risk_train(model, df, **config):
    import torch

    x, y = risk_data(df)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for i in range(0, len(x), 64):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64])
        loss.backward()
        opt.step()
    return {"loss": float(loss)}


DP_POLICY = {"warm_torch = false": "warm_torch = true", 'training = "none"': 'training = "dp"',
             "epsilon = 3.0": "epsilon = 4.0", "delta = 1e-6": "delta = 1e-4"}


@pytest.fixture(scope="module")
def hospitals_dp(tmp_path_factory, alice_token):
    frames = {name: data.hospital(name) for name in data.HOSPITALS}
    with live_domains(tmp_path_factory.mktemp("dp"), frames, alice_token, policy_edits=DP_POLICY) as live, \
            owners_approving(live):
        yield live


def test_dp_sgd_spends_the_target_epsilon_round_by_round(hospitals_dp, alice_token):
    fed = fednb.connect([d.url for d in hospitals_dp], token=alice_token)
    ds = fed.dataset("patients")
    with pytest.raises(fednb.errors.InvalidInput, match="only with differential privacy"):
        fl.Trainer(Risk(), risk_train, data=ds, rounds=1, helpers=[risk_data], progress=False).fit()
    start = Risk()
    dp = fl.DPSGD(epsilon=1.5, delta=1e-5, batch_size=50, max_grad_norm=1.0, epochs=1, lr=0.5)
    trainer = fl.Trainer(Risk(), risk_data, data=ds, rounds=3, dp=dp, progress=False)
    trainer.model.load_state_dict(start.state_dict())
    model, history = trainer.fit()
    assert set(history["status"]) == {"ok"} and history[history.domain != "global"]["loss"].isna().all()
    assert not torch.equal(model.net[0].weight, start.net[0].weight)
    for d, part in zip(hospitals_dp, trainer.request.parts):
        dom = d.domain()
        spends = [e.payload for e in dom.audit_entries() if e.action == "spend" and e.object_id == part.id]
        rnd = dom.round(part.id, 3)
        dom.close()
        assert len(spends) == 3 and spends[0]["delta"] == 1e-5 and spends[1]["delta"] == 0
        # the rounds add up to the accountant's epsilon for the whole run, which meets the target
        q, z, steps = rnd.dp["sample_rate"], rnd.dp["noise_multiplier"], rnd.dp["steps"]
        total = sum(s["epsilon"] for s in spends)
        assert total == pytest.approx(dp_training._epsilon(q, z, 3 * steps, 1e-5), rel=1e-9)
        assert 1.45 < total <= 1.5
        assert rnd.metrics == {} and rnd.n % 10 == 0  # no exact loss or count leaves the domain
    budget = ds.budget()
    assert (budget["remaining_epsilon"] < 4.0 - 1.45).all()
    # a run that would need more than what is left is refused before it starts
    with pytest.raises(fednb.errors.InvalidInput, match="privacy budget"):
        fl.Trainer(Risk(), risk_data, data=ds, rounds=2, dp=fl.DPSGD(epsilon=3.0), progress=False).fit()
    fed.close()


def test_secure_aggregation_of_dp_updates_never_releases_weights(hospitals_dp, alice_token):
    fed = fednb.connect([d.url for d in hospitals_dp], token=alice_token)
    ds = fed.dataset("patients")
    trainer = fl.Trainer(Risk(), risk_data, data=ds, rounds=1, secure_aggregation=True, progress=False,
                         dp=fl.DPSGD(epsilon=0.5, delta=1e-5, batch_size=50))
    model, history = trainer.fit()
    glob = history[history.domain == "global"].iloc[0]
    assert glob["n"] == 2000 and all(np.isfinite(p.detach().numpy()).all() for p in model.parameters())
    part = trainer.request.parts[0]
    client = DomainClient(part.client.url, alice_token)
    with pytest.raises(fednb.DomainError, match="secure aggregation"):
        run(client.round_weights(part.id, 1))
    assert run(client.round(part.id, 1))["weights_sha256"] is None
    with pytest.raises(fednb.errors.InvalidInput, match="needs each domain's update"):
        fl.Trainer(Risk(), risk_data, data=ds, secure_aggregation=True, strategy=fl.FedMedian())
    fed.close()


def test_the_hardened_gaussian_has_the_calibrated_spread_and_no_single_draw_in_it():
    """The noise DP-SGD adds is N(0, σ²) (what the accountant assumes) built from four draws, so it is
    not one float Gaussian sample whose low bits could be inverted (Holohan & Braghin 2021, §5.1)."""
    from fednb.privacy.dpsgd import _gaussian

    sigma = 2.5
    noise = _gaussian(torch, sigma, (400_000,), torch.Generator().manual_seed(7))
    assert abs(float(noise.mean())) < 0.02
    assert abs(float(noise.std()) / sigma - 1) < 0.01
    one = torch.normal(0.0, sigma, size=(400_000,), generator=torch.Generator().manual_seed(7))
    assert not torch.equal(noise, one)  # not the plain single-draw stream
    # the same distribution: a two-sample Kolmogorov-Smirnov distance well under its 99.9% critical value
    from scipy.stats import ks_2samp

    assert ks_2samp(noise.numpy()[:50_000], one.numpy()[:50_000]).pvalue > 0.001
