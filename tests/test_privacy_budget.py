"""Privacy budgets through a real domain server: noisy releases spend them, concurrent requests never
overspend them, an exhausted budget blocks with a reason, every spend is in the audit log; the owner's
bounds are public and required; pooled noisy statistics carry their error bars."""

from __future__ import annotations

import math
import threading

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import fednb
from fednb.cli import main as cli
from fednb.client.http import DomainClient, gather, run
from fednb.demo import data
from fednb.domain import Domain
from fednb.domain.release import budget
from fednb.domain.release.disclosure import Blocked
from fednb.errors import InvalidInput
from fednb.privacy.mechanisms import calibrate, gaussian_sigma
from tests.conftest import make_domain, start_live

POLICY = {
    "epsilon = 3.0": "epsilon = 1.0",
    'noisy = []': 'noisy = ["crosstab"]',
    "# [privacy.budgets]": "[privacy.budgets]",
    '# "alice/patients" = { epsilon = 5.0, delta = 1e-6 }': '"bob/patients" = { epsilon = 50.0, delta = 1e-6 }',
}


@pytest.fixture(scope="module")
def clinic(tmp_path_factory, alice_token):
    root = tmp_path_factory.mktemp("budget")
    live = start_live(root, "clinic", data.hospital("hospital-a"), alice_token, policy_edits=POLICY)
    result = CliRunner().invoke(cli, ["domain", "set-bounds", str(live.path), "patients", "age", "0", "120"])
    assert result.exit_code == 0, result.output
    bob = live.domain().invite("bob")
    yield live, bob
    live.server.stop()


def _count_body(epsilon: float) -> dict:
    return {"dataset": "patients", "kind": "builtin", "name": "count", "args": {"privacy": {"epsilon": epsilon}},
            "description": "noisy count"}


def test_fifty_concurrent_requests_spend_exactly_the_budget(clinic, alice_token):
    live, _ = clinic
    client = DomainClient(live.url, alice_token, timeout=60)

    async def many():
        return await gather(*(client.post_request(_count_body(0.1), wait=60) for _ in range(50)))

    answers = run(many())
    statuses = pd.Series([a["status"] for a in answers]).value_counts().to_dict()
    assert statuses == {"done": 10, "blocked": 40}
    blocked = [a["reason"] for a in answers if a["status"] == "blocked"]
    assert all("privacy budget" in r and "0 epsilon" in r for r in blocked), blocked[0]
    b = run(client.call("GET", "/v1/datasets/patients/budget"))
    assert b["spent_epsilon"] == pytest.approx(1.0) and b["remaining_epsilon"] == pytest.approx(0.0)
    assert b["releases"] == 10
    dom = live.domain()
    spends = [e for e in dom.audit_entries() if e.action == "spend" and e.payload["analyst"] == "alice"]
    assert len(spends) == 10 and spends[-1].payload["spent_epsilon"] == pytest.approx(1.0)
    assert dom.verify_audit().ok
    dom.close()
    shown = CliRunner().invoke(cli, ["domain", "budget", str(live.path)])
    assert shown.exit_code == 0 and "alice" in shown.output and "epsilon 1 of 1" in shown.output, shown.output
    # exhausted: the next noisy release is refused with the reason, through the analyst's API too
    fed = fednb.connect([live.url], token=alice_token)
    with pytest.raises(fednb.NotEnoughDomains, match="privacy budget"):
        fed.dataset("patients").count(epsilon=0.01)
    assert fed.dataset("patients").budget()["remaining_epsilon"].tolist() == [0.0]
    assert fed.dataset("patients").count().value == len(live.frame)  # exact releases spend nothing
    fed.close()
    run(client.aclose())


def test_the_debit_is_atomic_across_connections(tmp_path, store_url):
    d = make_domain(tmp_path, "ledger", data.hospital("hospital-b"), policy_edits={"epsilon = 3.0": "epsilon = 1.0"},
                    store=store_url)
    outcomes = []
    start = threading.Barrier(50)

    def spend_once():
        store = Domain(d.path).store  # each thread: its own connection, as separate workers would have
        start.wait()
        try:
            with store.transaction() as tx:
                budget.spend(tx, d.policy, analyst="alice", dataset="patients", request_id="r", job_id=None,
                             epsilon=0.1, delta=0.0, mechanism="laplace")
            outcomes.append("spent")
        except Blocked:
            outcomes.append("blocked")
        except Exception as exc:  # noqa: BLE001 - anything else is a failure the assertion below names
            outcomes.append(f"error: {exc}")
        finally:
            store.close()

    threads = [threading.Thread(target=spend_once) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("spent") == 10 and outcomes.count("blocked") == 40, [o for o in outcomes if o.startswith("error")]
    assert d.budget("alice", "patients").spent_epsilon == pytest.approx(1.0)


def test_bounds_are_public_and_noise_needs_them(clinic):
    live, bob = clinic
    fed = fednb.connect([live.url], token=bob)
    ds = fed.dataset("patients")
    cols = ds.columns.set_index("name")
    assert cols.loc["age", "bounds"] == [0.0, 120.0] and cols.loc["bmi", "bounds"] is None
    with pytest.raises(InvalidInput, match="set-bounds"):
        ds.mean("bmi", epsilon=0.1)
    with pytest.raises(InvalidInput, match="at most epsilon 1"):
        ds.count(epsilon=2.0)
    with pytest.raises(InvalidInput, match="no noisy"):
        ds._builtin("quantiles", {"column": "age", "bins": [0, 50, 100]}, None, 10, privacy={"epsilon": 0.1})
    dom = live.domain()
    assert any(e.action == "bounds" and e.payload["bounds"] == [0.0, 120.0] for e in dom.audit_entries())
    dom.close()
    fed.close()


def test_noisy_statistics_pool_with_their_error_bars(clinic):
    live, bob = clinic
    truth = live.frame
    fed = fednb.connect([live.url], token=bob)
    ds = fed.dataset("patients")
    before = ds.budget()["spent_epsilon"].iloc[0]
    mean = ds.mean("age", epsilon=0.5)
    # Laplace on n (scale 1/0.25) and on the sum of age - 60 (scale 60/0.25), by the delta method
    n = len(truth)
    sd_n, sd_t = math.sqrt(2) / 0.25, math.sqrt(2) * 60 / 0.25
    expected = math.sqrt(sd_t**2 + (truth.age.mean() - 60) ** 2 * sd_n**2) / n
    assert mean.se == pytest.approx(expected, rel=0.05)
    assert abs(mean.value - truth.age.mean()) < 6 * mean.se
    lo, hi = mean.ci(0.95)
    assert lo < mean.value < hi and hi - lo == pytest.approx(2 * 1.96 * mean.se, rel=1e-3)
    assert mean.epsilon == {"clinic": 0.5} and "±" in repr(mean)
    count = ds.count(epsilon=0.2, mechanism="gaussian", delta=1e-8)
    assert count.se == pytest.approx(calibrate("gaussian", 1.0, 0.2, 1e-8).std)
    assert count.se == pytest.approx(gaussian_sigma(1.0, 0.2, 1e-8), rel=1e-3)  # the lattice costs < 0.1 %
    # the policy makes crosstabs noisy even when the analyst does not ask: query_epsilon is spent
    table = ds.crosstab("sex", "smoker")
    assert table.se > 0 and table.epsilon == {"clinic": 0.1}
    exact = pd.crosstab(truth.sex, truth.smoker)
    assert abs(float(table.value.loc["F", True]) - exact.loc["F", True]) < 8 * table.se
    with pytest.raises(ValueError, match="exact"):
        ds.count().ci()
    assert ds.budget()["spent_epsilon"].iloc[0] == pytest.approx(before + 0.5 + 0.2 + 0.1)
    fed.close()


# -- the floating-point attack (Mironov 2012), through the real API -------------------------------


def _one_patient(frame: pd.DataFrame) -> tuple[pd.Series, str]:
    """A patient whom age and blood pressure single out, and the filter that does."""
    groups = frame.groupby(["age", "systolic_bp"]).size()
    age, sbp = groups[groups == 1].index[0]
    return frame[(frame.age == age) & (frame.systolic_bp == sbp)].iloc[0], f"age == {age} and systolic_bp == {sbp}"


def _log_odds(released: np.ndarray, one: np.ndarray, other: np.ndarray, noise) -> float:
    """How much the released values favour one exact answer over another: the attacker's best
    evidence, log P(released | one) − log P(released | other), for the lattice mechanism."""
    k = np.asarray(released) / noise.step
    assert np.all(k == np.round(k)), "a release off the lattice: its low bits could carry the data"
    a, b = np.round(np.asarray(one) / noise.step), np.round(np.asarray(other) / noise.step)
    return float(np.sum(np.abs(k - b) - np.abs(k - a)) / float(noise.units))


def test_a_noisy_count_answers_a_yes_no_question_no_better_than_epsilon(clinic):
    """The attack: count the rows of one patient who has diabetes, ε = 0.1. With float noise the
    released float's low bits told which of 0 or 1 it came from; now each release is a multiple of
    the lattice step, and the evidence for "yes" over "no" is at most ε whatever came out."""
    live, bob = clinic
    patient, where = _one_patient(live.frame)
    fed = fednb.connect([live.url], token=bob)
    try:
        ds = fed.dataset("patients")
        noise = calibrate("laplace", 1.0, 0.1)
        for has in (True, False):
            released = [ds._builtin("count", {}, f"{where} and diabetes == {has}", 30,
                                    privacy={"epsilon": 0.1}).parts[0].state["result"]["n"] for _ in range(5)]
            truth = int(bool(patient.diabetes) == has)
            for r in released:
                assert abs(_log_odds(r, 1, 0, noise)) <= 0.1 * (1 + 1e-12)
            assert all(r != truth for r in released)  # the noise is there
    finally:
        fed.close()


def test_a_noisy_mean_and_histogram_do_not_pin_one_patients_value(clinic):
    """The low-bits attack on one patient's age: a noisy mean's sum and a noisy histogram's cells are
    multiples of their lattice step, so no digit of the age below the step can be read from them,
    and any two ages of the patient are told apart with evidence at most 2 × the ε of the part that
    carries the age (changing a value is removing one row and adding another: the mean's centred sum
    has ε/2, so ε; two cells of the histogram change, so 2ε)."""
    live, bob = clinic
    patient, where = _one_patient(live.frame)
    fed = fednb.connect([live.url], token=bob)
    try:
        ds = fed.dataset("patients")
        part = ds._builtin("mean", {"column": "age"}, where, 30, privacy={"epsilon": 1.0}).parts[0].state["result"]
        t_noise = calibrate("laplace", 60.0, 0.5)  # the centred sum: sensitivity (120 - 0) / 2, epsilon / 2
        for other_age in (0.0, patient.age + 0.5, patient.age + 2.0**-20, 120.0):
            assert abs(_log_odds(part["t"], patient.age - 60, other_age - 60, t_noise)) <= 1.0 * (1 + 1e-12)
        assert _log_odds(part["n"], 1, 0, calibrate("laplace", 1.0, 0.5)) <= 0.5 * (1 + 1e-12)
        edges = [float(e) for e in range(10, 100, 5)]
        hist = ds._builtin("histogram", {"column": "age", "bins": edges}, where, 30,
                           privacy={"epsilon": 1.0}).parts[0].state["result"]
        cells = np.array([hist["below"], *hist["counts"], hist["above"]])
        cell_noise = calibrate("laplace", 1.0, 1.0)
        own = np.digitize(patient.age, edges)  # the patient's cell, with "below" as cell 0
        for other in range(len(cells)):
            one, two = np.eye(len(cells))[own], np.eye(len(cells))[other]
            assert abs(_log_odds(cells, one, two, cell_noise)) <= 2.0 * (1 + 1e-12)
    finally:
        fed.close()
