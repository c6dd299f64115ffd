"""Several server processes on one PostgreSQL store (``fednb domain serve --workers 2``): a hostile
crowd of concurrent requests, through the real HTTP API, never gets a job run twice or a privacy
budget overspent."""

from __future__ import annotations

from asyncio import gather, run
from collections import Counter

import pytest

from fednb.client.http import DomainClient
from fednb.demo import data
from fednb.domain import Domain
from fednb.domain.domain import new_token
from fednb.domain.process import DomainProcess
from tests.conftest import make_domain

POLICY = {"epsilon = 3.0": "epsilon = 1.0", "max_pending_per_analyst = 50": "max_pending_per_analyst = 1000"}
ANALYSTS = ("alice", "bob", "carol")
NOISY_EACH = 30   # noisy counts per analyst, 0.1 epsilon each: 10 fit in the budget of 1.0
EXACT_EACH = 10   # exact means per analyst: spend nothing


def _noisy(i: int) -> dict:
    return {"dataset": "patients", "kind": "builtin", "name": "count", "idempotency_key": f"n{i}",
            "args": {"privacy": {"epsilon": 0.1}, "where": [{"column": "age", "op": ">", "value": 18 + i % 40}]}}


def _exact(i: int) -> dict:
    return {"dataset": "patients", "kind": "builtin", "name": "mean", "idempotency_key": f"e{i}",
            "args": {"column": "age"}}  # the same rows each time: nothing for the differencing defence to refuse


@pytest.fixture
def two_workers(tmp_path, postgres_database):
    tokens = {a: new_token() for a in ANALYSTS}
    d = make_domain(tmp_path, "busy", data.hospital("hospital-a"), policy_edits=POLICY, store=postgres_database)
    for analyst, token in tokens.items():
        d.invite(analyst, token=token)
    d.close()
    server = DomainProcess(tmp_path / "busy", extra_args=["--workers", "2"])
    server.start()
    yield server, tokens
    server.stop()
    # shown with a failure's report: why a server process ended, if one did
    print((tmp_path / "busy" / "server.log").read_text(errors="replace")[-4000:])


def test_two_workers_run_each_job_once_and_spend_budgets_exactly(two_workers):
    server, tokens = two_workers
    assert "2 worker processes" in server.banner

    async def crowd():
        clients = {a: DomainClient(server.url, t, timeout=120) for a, t in tokens.items()}
        calls = [clients[a].post_request(_noisy(i), wait=90) for a in ANALYSTS for i in range(NOISY_EACH)]
        calls += [clients[a].post_request(_exact(i), wait=90) for a in ANALYSTS for i in range(EXACT_EACH)]
        try:
            return await gather(*calls)
        finally:
            await gather(*(c.aclose() for c in clients.values()))

    answers = run(crowd())
    by_analyst = {a: Counter(x["status"] for x in answers if x["analyst"] == a and x["name"] == "count")
                  for a in ANALYSTS}
    assert by_analyst == dict.fromkeys(ANALYSTS, Counter({"done": 10, "blocked": NOISY_EACH - 10}))
    assert [(x["status"], x.get("reason")) for x in answers if x["name"] == "mean" and x["status"] != "done"] == []

    d = Domain(server.path)
    entries = d.audit_entries()
    ids = {x["id"] for x in answers}
    assert len(ids) == len(ANALYSTS) * (NOISY_EACH + EXACT_EACH)
    runs = Counter(e.object_id for e in entries if e.action == "run")
    ends = Counter(e.object_id for e in entries if e.action in ("release", "block", "fail"))
    assert runs == dict.fromkeys(ids, 1), "a job ran twice, or never"
    assert ends == dict.fromkeys(ids, 1), "a request ended twice, or never"
    processes = {e.payload["process"] for e in entries if e.action == "run"}
    assert len(processes) == 2, f"the jobs ran in {len(processes)} process(es), not in both workers"
    for analyst in ANALYSTS:
        spent = d.budget(analyst, "patients")
        assert spent.releases == 10 and spent.spent_epsilon == pytest.approx(1.0, abs=1e-9)
        spends = [e for e in entries if e.action == "spend" and e.payload["analyst"] == analyst]
        assert len(spends) == 10
    assert d.store.query_one("SELECT count(*) FROM jobs WHERE attempts <> 1")[0] == 0
    assert d.verify_audit().ok
    d.close()
