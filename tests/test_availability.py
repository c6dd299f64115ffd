"""A domain that is down, hung or killed never hangs the analyst: timeouts, partial results that name
the missing domains, ``min_domains``; and kill -9 loses nothing."""

from __future__ import annotations

import time
import warnings

import pytest

import fednb
from fednb.client.http import DomainClient, run
from fednb.domain.store.database import Store
from tests.conftest import free_port


def test_connect_keeps_a_down_domain_and_names_it(hospitals, alice_token):
    down = f"http://127.0.0.1:{free_port()}"
    with pytest.warns(UserWarning, match="not reachable"):
        fed = fednb.connect([hospitals[0].url, down], token=alice_token)
    status = fed.status
    assert status["up"].tolist() == [True, False]
    assert "cannot reach" in status["problem"].iloc[1]
    with pytest.raises(fednb.NotEnoughDomains):
        fednb.connect([down], token=alice_token, min_domains=1)
    fed.close()


def test_a_hung_domain_times_out_with_its_name(hospitals, alice_token, silent_server):
    client = DomainClient(silent_server, alice_token, timeout=1.0)
    with pytest.raises(fednb.DomainUnavailable, match="did not answer within 1 s"):  # the test's limit guards a hang
        run(client.info())


def test_partial_result_when_a_domain_dies_and_min_domains(fresh_domain, hospitals, alice_token):
    fed = fednb.connect([hospitals[0].url, fresh_domain.url], token=alice_token, timeout=2)
    ds = fed.dataset("patients")
    assert len(ds.domains) == 2
    fresh_domain.server.kill()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = ds.mean("age", timeout=3)  # a hang would be stopped by the test's limit
        assert r.domains == [hospitals[0].name]
        assert "hospital-t" in r.missing and "cannot reach" in r.missing["hospital-t"]
        with pytest.raises(fednb.NotEnoughDomains, match="hospital-t"):
            ds.mean("age", timeout=3, min_domains=2)
    fed.close()


def test_a_bad_token_is_refused_at_connect_naming_the_domain(hospitals):
    with pytest.raises(fednb.FednbError, match=f"{hospitals[0].name}.*not known"):
        fednb.connect([hospitals[0].url], token="fednb_" + "y" * 43)


def test_kill_9_loses_no_request_approval_result_or_audit_row(durable_domain):
    """Kill the server at many points while requests flow; every accepted request survives (on each store)."""
    fresh_domain = durable_domain
    fed = fednb.connect([fresh_domain.url], token=fresh_domain.token, timeout=5)
    ds = fed.dataset("patients")
    accepted: list[str] = []
    fn = fednb.function("def f(df):\n    return len(df)\n", name="f")
    for round_ in range(4):
        for i in range(6):
            req = ds._builtin("count", {"where": [{"column": "age", "op": ">", "value": 20 + i + round_}]}, None, 0.0)
            accepted += [p.id for p in req.parts if p.id]
        pending = ds.submit(fn, args={"round": round_})
        accepted += [p.id for p in pending.parts if p.id]
        fresh_domain.server.kill()  # kill -9, mid-flight
        fresh_domain.server.restart()
    fed.close()
    conn = Store.of_folder(fresh_domain.path).connect()
    stored = {r[0]: r[1] for r in conn.execute("SELECT id, status FROM requests")}
    assert set(accepted) <= set(stored), "an accepted request was lost"
    # after restart, built-ins finish; nothing is left running
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        states = [r[0] for r in conn.execute("SELECT status FROM requests WHERE kind = 'builtin'")]
        if all(s in ("done", "blocked", "failed") for s in states):
            break
        time.sleep(0.2)
    assert all(s in ("done", "blocked", "failed") for s in states), states
    assert conn.execute("SELECT count(*) FROM jobs WHERE status IN ('running')").fetchone()[0] == 0
    released = {r[0] for r in conn.execute("SELECT id FROM requests WHERE status = 'done'")}
    audited = {r[0] for r in conn.execute("SELECT object_id FROM audit WHERE action = 'release'")}
    assert released <= audited, "a released result has no audit row"
    conn.close()
    d = fresh_domain.domain()
    assert d.verify_audit().ok
    d.close()


def test_interrupted_jobs_are_requeued_once_then_failed_with_a_reason(tmp_path, store_url):
    from fednb.demo import data
    from fednb.domain.run.runner import Runner
    from fednb.models import RequestIn
    from tests.conftest import make_domain

    d = make_domain(tmp_path, "crashy", data.hospital("hospital-b"), store=store_url)
    d.invite("alice")
    req, _ = d.receive("alice", RequestIn(dataset="patients", kind="builtin", name="count"))
    # simulate a crash while the job ran, twice
    with d.store.transaction() as tx:
        tx.execute("UPDATE jobs SET status = 'running', attempts = 1")
        tx.execute("UPDATE requests SET status = 'running'")
    runner = Runner(d)
    assert runner.recover() == [req.id]
    assert d.request(req.id).status == "approved"
    with d.store.transaction() as tx:
        tx.execute("UPDATE jobs SET status = 'running', attempts = 2")
    runner.recover()
    final = d.request(req.id)
    assert final.status == "failed" and "interrupted 2 times" in final.reason
    assert [e.action for e in d.audit_entries()][-2:] == ["requeue", "fail"]
    assert d.verify_audit().ok
