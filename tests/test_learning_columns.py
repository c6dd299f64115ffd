"""Federated training that declares its columns: the Trainer sends them in the request's limits, and a
real domain binds them to the approval and gives the training worker only those columns."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import fednb  # noqa: E402
import fednb.learn as fl  # noqa: E402
from fednb.demo import data  # noqa: E402
from tests.conftest import live_domains, owners_approving  # noqa: E402
from tests.test_learning import RiskNet, features, train  # noqa: E402

USED = ["age", "bmi", "smoker", "diabetes", "readmitted"]  # what features() reads
POLICY = {"warm_torch = false": "warm_torch = true", "show_error_text = false": "show_error_text = true"}


@pytest.fixture(scope="module")
def hospital(tmp_path_factory, alice_token):
    with live_domains(tmp_path_factory.mktemp("fl-columns"), {"hospital-a": data.hospital("hospital-a")},
                      alice_token, policy_edits=POLICY) as live, owners_approving(live):
        fed = fednb.connect([d.url for d in live], token=alice_token)
        yield fed.dataset("patients")
        fed.close()


def columns_seen(model, df, **config):
    """Trains nothing; fails naming the worker's columns unless they are exactly the declared ones."""
    if sorted(df.columns) != ["age", "bmi", "diabetes", "readmitted", "smoker"]:
        raise RuntimeError(f"the worker was given {sorted(df.columns)}")
    return {"loss": 0.0}


def test_the_trainer_sends_its_columns_and_the_worker_holds_only_those(hospital):
    trainer = fl.Trainer(RiskNet(), columns_seen, data=hospital, rounds=1, min_domains=1, columns=USED,
                         progress=False)
    _, history = trainer.fit()
    assert list(history["status"]) == ["ok", "ok"], history
    assert trainer.request.parts[0].state["limits"]["columns"] == USED
    undeclared = fl.Trainer(RiskNet(), columns_seen, data=hospital, rounds=1, min_domains=1, progress=False)
    assert undeclared.code_hash != trainer.code_hash  # other columns, another approval
    with pytest.raises(fednb.NotEnoughDomains) as failed:
        undeclared.fit()  # without a declaration the worker has every column
    assert "the worker was given ['age', 'bmi', 'diabetes', 'died'" in str(failed.value.problems), failed.value.problems


def test_training_on_the_declared_columns_works_and_an_undeclared_one_fails_inside_the_sandbox(hospital):
    model, history = fl.Trainer(RiskNet(), train, data=hospital, rounds=1, min_domains=1, helpers=[features],
                                columns=USED, progress=False).fit()
    assert set(history["status"]) == {"ok"}, history
    with pytest.raises(fednb.NotEnoughDomains) as failed:
        fl.Trainer(RiskNet(), train, data=hospital, rounds=1, min_domains=1, helpers=[features],
                   columns=["age", "bmi", "smoker", "readmitted"], progress=False).fit()
    assert "KeyError: 'diabetes'" in str(failed.value.problems), failed.value.problems


def test_a_column_the_dataset_lacks_is_refused_by_the_domain(hospital):
    with pytest.raises((fednb.NotEnoughDomains, fednb.errors.InvalidInput)) as refused:
        fl.Trainer(RiskNet(), train, data=hospital, rounds=1, min_domains=1, helpers=[features],
                   columns=["age", "bmii"], progress=False).fit()
    assert "did you mean 'bmi'?" in str(refused.value) + str(getattr(refused.value, "problems", "")), refused.value
