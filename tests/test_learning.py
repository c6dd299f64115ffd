"""Federated learning: strategies aggregate as their papers say; training runs through real domain
servers and their sandbox, round by round, with drop-outs, time-outs, checkpoints and budgets."""

from __future__ import annotations

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import fednb  # noqa: E402
import fednb.learn as fl  # noqa: E402
from fednb.client.http import DomainClient, run  # noqa: E402
from fednb.demo import data  # noqa: E402
from fednb.learn import weights as W  # noqa: E402
from fednb.learn.strategies import Update  # noqa: E402
from tests.conftest import live_domains, owners_approving  # noqa: E402

# -- strategies ----------------------------------------------------------------------------------


def _updates():
    rng = np.random.default_rng(0)
    return [Update(f"d{i}", {"w": rng.normal(size=(3, 2)).astype(np.float32), "count": np.array(i, dtype=np.int64)}, n)
            for i, n in enumerate([100, 300, 50, 50, 500])]


def test_fedavg_is_the_sample_weighted_mean():
    ups = _updates()
    current = {"w": np.zeros((3, 2), np.float32), "count": np.array(0, np.int64)}
    out = fl.FedAvg().aggregate(current, ups)
    n = np.array([u.n for u in ups], dtype=float)
    expected = sum(u.weights["w"].astype(float) * k for u, k in zip(ups, n)) / n.sum()
    np.testing.assert_allclose(out["w"], expected, rtol=1e-6)
    assert out["w"].dtype == np.float32 and out["count"].dtype == np.int64


def test_median_and_trimmed_mean_resist_an_outlier():
    ups = _updates()
    ups[0].weights["w"] = np.full((3, 2), 1e6, np.float32)  # one hostile domain
    current = {"w": np.zeros((3, 2), np.float32), "count": np.array(0, np.int64)}
    med = fl.FedMedian().aggregate(current, ups)["w"]
    np.testing.assert_allclose(med, np.median(np.stack([u.weights["w"] for u in ups]), axis=0))
    assert np.abs(med).max() < 10
    trimmed = fl.FedTrimmedAvg(beta=0.2).aggregate(current, ups)["w"]
    values = np.sort(np.stack([u.weights["w"] for u in ups]).astype(float), axis=0)[1:4]
    np.testing.assert_allclose(trimmed, values.mean(axis=0), rtol=1e-6)
    assert np.abs(trimmed).max() < 10
    assert np.abs(fl.FedAvg().aggregate(current, ups)["w"]).max() > 1e4


def test_fedadam_applies_adam_to_the_pseudo_gradient():
    ups = _updates()
    current = {"w": np.ones((3, 2), np.float32), "count": np.array(0, np.int64)}
    s = fl.FedAdam(eta=0.1, beta_1=0.9, beta_2=0.99, tau=1e-3)
    out = s.aggregate(current, ups)
    n = np.array([u.n for u in ups], dtype=float)
    delta = sum(u.weights["w"].astype(float) * k for u, k in zip(ups, n)) / n.sum() - 1.0
    m, v = 0.1 * delta, 0.01 * delta**2
    np.testing.assert_allclose(out["w"], 1.0 + 0.1 * m / (np.sqrt(v) + 1e-3), rtol=1e-5)
    state = s.state()
    again = fl.FedAdam(eta=0.1)
    again.load_state(state)
    np.testing.assert_allclose(again.aggregate(current, ups)["w"], s.aggregate(current, ups)["w"], rtol=1e-6)


def test_fedprox_sends_mu_and_its_term_is_the_squared_distance():
    assert fl.FedProx(mu=0.5).configure(3) == {"proximal_mu": 0.5}
    model = nn.Linear(2, 1)
    start = [p.detach().clone() for p in model.parameters()]
    assert fl.proximal_term(model, start, 0.5).item() == 0.0
    with torch.no_grad():
        model.weight.add_(1.0)
    assert fl.proximal_term(model, start, 0.5).item() == pytest.approx(0.5 * 0.5 * 2)


# -- training through real domains ---------------------------------------------------------------


class RiskNet(nn.Module):
    def __init__(self, hidden=8):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)


def features(df):
    import torch

    x = ((df[["age", "bmi"]] - [55.0, 27.0]) / [15.0, 5.0]).assign(s=df["smoker"].astype(float),
                                                                   d=df["diabetes"].astype(float))
    return torch.tensor(x.to_numpy(), dtype=torch.float32), torch.tensor(df["readmitted"].to_numpy(), dtype=torch.float32)


def train(model, df, epochs=1, lr=0.1, sleep_if_rows=None, **config):

    import torch

    if sleep_if_rows == len(df):
        time.sleep(30)
    x, y = features(df)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for _ in range(epochs):
        for i in range(0, len(x), 64):
            opt.zero_grad()
            loss = loss_fn(model(x[i:i + 64]), y[i:i + 64])
            if config.get("proximal_mu"):
                loss = loss + fednb.learn.proximal_term(model, config["global_params"], config["proximal_mu"])
            loss.backward()
            opt.step()
    with torch.no_grad():
        out = model(x)
        return {"loss": loss_fn(out, y).item(), "accuracy": ((out > 0).float() == y).float().mean().item()}


def evaluate(model, df, **config):
    import torch

    x, y = features(df)
    out = model(x)
    return {"loss": torch.nn.functional.binary_cross_entropy_with_logits(out, y).item()}


WARM = {"warm_torch = false": "warm_torch = true"}


@pytest.fixture(scope="module")
def hospitals_fl(tmp_path_factory, alice_token):
    with live_domains(tmp_path_factory.mktemp("fl"), {n: data.hospital(n) for n in data.HOSPITALS}, alice_token,
                      policy_edits=WARM) as live:
        yield live


@pytest.fixture
def owners(hospitals_fl):
    with owners_approving(hospitals_fl):
        yield


@pytest.fixture
def patients(hospitals_fl, alice_token):
    fed = fednb.connect([d.url for d in hospitals_fl], token=alice_token)
    yield fed.dataset("patients")
    fed.close()


def test_training_improves_the_model_and_records_every_round(patients, owners, hospitals_fl):
    torch.manual_seed(0)
    seen = []
    trainer = fl.Trainer(RiskNet(), train, data=patients, rounds=4, config={"epochs": 2}, evaluate_fn=evaluate,
                         helpers=[features], on_round=seen.append, progress=False)
    model, history = trainer.fit()
    assert list(history.columns)[:5] == ["round", "domain", "status", "n", "loss"]
    assert len(history) == 4 * 3 and set(history["status"]) == {"ok"}
    glob = history[history.domain == "global"]
    assert glob["loss"].iloc[-1] < glob["loss"].iloc[0]
    assert glob["n"].iloc[0] == 2000
    assert history[history.domain != "global"]["eval_loss"].notna().all()
    assert seen == history.to_dict("records") or len(seen) == len(history)
    # the domains recorded one approval, four rounds, four releases, and the finish
    dom = hospitals_fl[0].domain()
    actions = [e.action for e in dom.audit_entries() if e.object_id == trainer.request.parts[0].id]
    assert actions.count("round") == 4 and actions.count("release") == 4 and actions[-1] == "finish"
    assert dom.verify_audit().ok
    dom.close()


def test_weights_travel_as_safetensors_and_any_change_of_code_needs_review(patients, owners, hospitals_fl):
    trainer = fl.Trainer(RiskNet(), train, data=patients, rounds=1, helpers=[features], progress=False)
    trainer.fit()
    part = trainer.request.parts[0]
    client = DomainClient(part.client.url, part.client.token)
    raw = run(client.round_weights(part.id, 1))
    assert raw[:8] != b"\x80\x04" and not raw.startswith(b"\x80")  # not a pickle
    assert set(W.decode(raw)) == set(RiskNet().state_dict())
    # a wider hidden layer is a different request: a new hash, a new review
    other = fl.Trainer(RiskNet(), train, data=patients, rounds=1, model_args={"hidden": 16}, helpers=[features])
    assert other.code_hash != trainer.code_hash


def test_a_hostile_update_is_not_released(patients, owners):
    def sneaky(model, df, **config):
        import torch

        model.register_buffer("rows", torch.tensor(df["age"].to_numpy()[:50], dtype=torch.float32))
        return {"loss": 0.0}

    trainer = fl.Trainer(RiskNet(), sneaky, data=patients, rounds=1, min_domains=1, progress=False)
    with pytest.raises(fednb.NotEnoughDomains) as err:
        trainer.fit()
    assert all("exactly the model's parameters" in why for why in err.value.problems.values())


def test_a_domain_that_drops_out_or_times_out_does_not_hang_the_round(hospitals_fl, alice_token, owners):
    fed = fednb.connect([d.url for d in hospitals_fl], token=alice_token)
    ds = fed.dataset("patients")
    # hospital-b (800 rows) sleeps past the round's time limit: the round completes without it
    trainer = fl.Trainer(RiskNet(), train, data=ds, rounds=2, min_domains=1, round_timeout=3,
                         config={"sleep_if_rows": 800}, helpers=[features], progress=False)
    _, history = trainer.fit()  # had the round waited for hospital-b (30 s a round), its status would be "ok"
    b = history[history.domain == "hospital-b"]
    assert set(b["status"]) <= {"timeout", "failed"} and b["reason"].str.contains("s").all()
    assert (history[history.domain == "global"]["n"] == 1200).all()
    # asking for both domains instead stops with the reason, promptly
    strict = fl.Trainer(RiskNet(), train, data=ds, rounds=2, min_domains=2, round_timeout=3,
                        config={"sleep_if_rows": 800, "lr": 0.2}, helpers=[features], progress=False)
    with pytest.raises(fednb.NotEnoughDomains, match="hospital-b"):
        strict.fit()
    fed.close()


def test_checkpoint_resumes_after_a_restart_and_the_budget_holds(patients, owners, tmp_path):
    folder = tmp_path / "ckpt"
    first = fl.Trainer(RiskNet(), train, data=patients, rounds=3, helpers=[features], checkpoint=str(folder),
                       progress=False)
    # stop after round 2, as if the kernel died
    original = first._round

    def die_after_two(number, parts):
        if number == 3:
            raise KeyboardInterrupt
        original(number, parts)

    first._round = die_after_two
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    resumed = fl.Trainer(RiskNet(), train, data=patients, rounds=3, helpers=[features], checkpoint=str(folder),
                         progress=False)
    model, history = resumed.fit()
    assert sorted(set(history["round"])) == [1, 2, 3]
    assert resumed.request is None, "resuming must reuse the approved requests, not submit new ones"
    np.testing.assert_allclose(W.to_numpy(model.state_dict())["net.0.weight"],
                               W.decode((folder / "global-3.safetensors").read_bytes())["net.0.weight"])
    # the approved budget was 3 rounds: a fourth is refused by the domain
    part = first.request.parts[0]
    client = DomainClient(part.client.url, part.client.token)
    blob = W.encode(model.state_dict(), {"round": 4})
    with pytest.raises(fednb.DomainError, match="finished|done|budget"):
        run(client.post_round(part.id, blob))


def test_round_input_validation(patients, owners, hospitals_fl, alice_token):
    trainer = fl.Trainer(RiskNet(), train, data=patients, rounds=2, helpers=[features], progress=False)
    parts = trainer._send_request()
    client = DomainClient(parts[0].client.url, alice_token)
    for body, message in [(b"not safetensors at all", "not valid safetensors"),
                          (W.encode(RiskNet().state_dict(), {}), "round number"),
                          (W.encode(RiskNet().state_dict(), {"round": 0}), "round number")]:
        with pytest.raises(fednb.DomainError, match=message):
            run(client.post_round(parts[0].id, body))
    ok, weights = run(client.post_round(parts[0].id, W.encode(RiskNet().state_dict(), {"round": 1}), wait=30))
    assert ok["status"] == "done" and set(W.decode(weights)) == set(RiskNet().state_dict())
    assert ok["weights_sha256"] == __import__("hashlib").sha256(weights).hexdigest()
    with pytest.raises(fednb.DomainError, match="same parameters"):
        run(client.post_round(parts[0].id, W.encode(RiskNet(hidden=3).state_dict(), {"round": 2})))
