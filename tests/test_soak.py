"""Crash and load soak at CI size: 50 analysts x 20 requests against 3 domains while the domains are
killed with kill -9 and restarted 20 times. Nothing accepted is lost, nothing is left half done, every
release is audited, every audit log verifies. The harness is benchmarks/soak.py (bigger runs there)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_benchmark

soak = load_benchmark("soak")
INVARIANTS, SoakConfig, run_soak = soak.INVARIANTS, soak.SoakConfig, soak.run_soak


@pytest.fixture(params=["sqlite", "postgresql-2-workers"])
def soak_config(request) -> SoakConfig:
    """The CI size on SQLite (one process per domain), and on PostgreSQL with two server processes per domain."""
    if request.param == "sqlite":
        return SoakConfig()
    return SoakConfig(postgres=request.getfixturevalue("postgres_admin_url"), workers=2)


@pytest.mark.slow
def test_kill_9_under_load_loses_nothing(tmp_path, capsys, soak_config):
    cfg = soak_config
    config, traffic, checks, timings = run_soak(tmp_path, cfg)
    with capsys.disabled():
        print(f"\nsoak: {json.dumps(traffic)}\nsoak: {json.dumps(checks)}\nsoak: {json.dumps(timings)}")
    assert traffic["kills"] == cfg.kills and traffic["kills_during_traffic"] >= cfg.kills // 2
    assert traffic["server_errors"] == 0 and traffic["gave_up"] == 0
    # every submission got an answer: accepted, or refused with a 4xx that says why
    assert traffic["accepted"] + sum(traffic["refused"].values()) == cfg.analysts * cfg.requests_per_analyst
    assert traffic["accepted"] >= 0.95 * cfg.analysts * cfg.requests_per_analyst
    assert traffic["transport_errors"] > 0, "no submission ever met a dead domain: the kills missed the traffic"
    # one final state each (or still pending review), nothing lost, duplicated, stuck or unaudited
    assert sum(checks["final_states"].values()) == traffic["accepted"]
    assert set(checks["final_states"]) <= {"pending", "done", "denied", "blocked", "failed"}
    assert {name: checks[name] for name in INVARIANTS} == dict.fromkeys(INVARIANTS, 0)
    assert checks["still_busy_after_settle"] == 0
    assert checks["sandboxes_seen"] >= cfg.kills and checks["sandboxes_left_behind"] == 0
    assert checks["final_states"].get("done", 0) > 0.5 * traffic["accepted"]


def test_the_soak_checks_catch_what_they_claim_to(tmp_path):
    """The checker itself: a lost request, a duplicate, a stuck job, a release without its audit row,
    a job run twice."""
    import time

    Accepted, Traffic, check = soak.Accepted, soak.Traffic, soak.check
    from fednb.demo import data
    from fednb.domain.audit import log as audit
    from fednb.domain.run.runner import Runner
    from fednb.domain.store.database import Store
    from fednb.models import RequestIn
    from tests.conftest import make_domain

    d = make_domain(tmp_path, "checked", data.hospital("hospital-b"))
    d.invite("ana")
    done, _ = d.receive("ana", RequestIn(dataset="patients", kind="builtin", name="count", idempotency_key="k1"))
    runner = Runner(d)
    runner.start()
    deadline = time.monotonic() + 20
    while d.request(done.id).status != "done" and time.monotonic() < deadline:
        time.sleep(0.05)
    runner.stop()
    stuck, _ = d.receive("ana", RequestIn(dataset="patients", kind="builtin", name="mean", args={"column": "age"},
                                         idempotency_key="k2"))  # approved, never run: no runner now
    d.close()
    traffic = Traffic(accepted=[Accepted(0, done.id, "ana", "k1", "builtin"),
                                Accepted(0, stuck.id, "ana", "k2", "builtin"),
                                Accepted(0, "nosuchid", "ana", "k3", "builtin"),
                                Accepted(0, "otherid", "ana", "k1", "builtin")])  # same key, another id
    first = check([d.path], traffic)
    assert first["lost"] == 2 and first["duplicate_submissions"] == 1
    assert first["stuck_approved_or_running"] == 1 and first["released_not_audited"] == 0
    assert first["audit_verify_failed"] == 0 and first["job_run_twice"] == 0
    store = Store.of_folder(d.path)
    with store.transaction() as tx:  # a second worker starting the same job, as if the claim were not exclusive
        job = [e for e in audit.entries(tx) if e.action == "run"][0].payload["job"]
        audit.append(tx, "domain", "run", done.id, {"job": job, "attempt": 1})
    assert check([d.path], traffic)["job_run_twice"] == 1
    with store.transaction() as tx:
        tx.execute("DELETE FROM audit WHERE action = 'release'")
    second = check([d.path], traffic)
    assert second["released_not_audited"] == 1 and second["final_without_one_audit_end"] == 1
    assert second["audit_verify_failed"] == 1
    with store.transaction() as tx:  # an overspend written behind the budget's back
        tx.execute("INSERT INTO privacy_spend (analyst, dataset, request_id, job_id, epsilon, delta, mechanism,"
                   " created_at) VALUES ('ana', 'patients', 'x', 0, 99.0, 0, 'laplace', 0)")
    store.close()
    third = check([d.path], traffic)
    assert third["budget_overspent"] == 1 and third["spend_not_audited"] == 1
