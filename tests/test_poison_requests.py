"""A hostile analyst's pathological but valid requests, through the real HTTP API of a real domain:
the request is stopped at a limit and failed with a reason, never re-queued (also across a kill -9),
while another analyst's count still answers; what can be refused is refused with a 4xx sentence
before any work; the owner's listing comes a page at a time."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time

import httpx
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fednb.cli import main as cli
from fednb.domain.run.workers import Worker, WorkerLimits
from tests.api_support import assert_clean_error, auth
from tests.conftest import start_live

ROWS = 200_000
# 8 + 28 + 56 numeric terms: valid, but its design matrix is over the worker's memory limit here
HEAVY = "y ~ (a + b + c + d + e + f + g + h)**3"
SMALL_WORKERS = {"builtin_memory_mb = 1024": "builtin_memory_mb = 128",
                 "builtin_wall_seconds = 20": "builtin_wall_seconds = 5",
                 "max_argument_bytes = 32000": "max_argument_bytes = 20000"}


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    df = pd.DataFrame({c: rng.normal(size=ROWS).round(3) for c in "abcdefgh"})
    df["y"] = rng.normal(size=ROWS).round(3)
    df["age"] = rng.integers(18, 90, size=ROWS)
    return df


@pytest.fixture(scope="module")
def heavy(tmp_path_factory, alice_token):
    live = start_live(tmp_path_factory.mktemp("poison"), "heavy", _frame(), alice_token, policy_edits=SMALL_WORKERS)
    d = live.domain()
    bob = d.invite("bob")
    d.close()
    with httpx.Client(base_url=live.url, headers=auth(alice_token), timeout=60) as alice, \
         httpx.Client(base_url=live.url, headers=auth(bob), timeout=60) as bob_client, \
         httpx.Client(base_url=live.url, headers=auth(live.owner_token), timeout=60) as owner:
        yield live, alice, bob_client, owner
    live.server.stop()


def _glm(client: httpx.Client, formula: str, **args) -> httpx.Response:
    return client.post("/v1/requests", json={"dataset": "patients", "kind": "builtin", "name": "glm",
                                             "args": {"formula": formula, "family": "gaussian", **args},
                                             "limits": {"max_rounds": 5}})


def _audit(live) -> list[tuple[str, str]]:
    conn = sqlite3.connect(live.path / "domain.db")
    try:
        return [(r[0], r[1]) for r in conn.execute("SELECT action, object_id FROM audit ORDER BY seq")]
    finally:
        conn.close()


def test_a_poison_model_fails_with_a_reason_is_never_rerun_and_others_are_served(heavy):
    live, alice, bob, owner = heavy
    poison = []
    for _ in range(3):  # three rounds' worth of poison, queued behind each other
        r = _glm(alice, HEAVY)
        assert r.status_code == 201 and r.json()["status"] == "approved", r.text
        rid = r.json()["id"]
        assert alice.post(f"/v1/requests/{rid}/rounds", json={"round": 1, "inputs": {}}).status_code == 202
        poison.append(rid)
    # another analyst, during the attack: answered, and released before the last poison ended
    counted = bob.post("/v1/requests?wait=60", json={"dataset": "patients", "kind": "builtin", "name": "count"})
    assert counted.status_code == 201 and counted.json()["status"] == "done", counted.text
    assert counted.json()["result"]["n"] == ROWS
    finals = [alice.get(f"/v1/requests/{rid}?wait=60").json() for rid in poison]
    for req in finals:
        assert req["status"] == "failed", req
        assert "glm was stopped" in req["reason"], req["reason"]
        assert "memory limit of 128 MiB" in req["reason"] or "wall-clock limit of 5 s" in req["reason"], req["reason"]
        assert "will not be run again" in req["reason"]
    actions = _audit(live)
    released_at = actions.index(("release", counted.json()["id"]))
    assert released_at < actions.index(("fail", poison[-1])), "the count waited for the poison"
    # the owner sees why, in the listing
    listed = {r["id"]: r for r in owner.get("/v1/requests", params={"status": "failed"}).json()}
    assert all("was stopped" in listed[rid]["reason"] for rid in poison)
    # a further round of a failed request is refused; kill -9 and restart run none of them again
    assert_clean_error(alice.post(f"/v1/requests/{poison[0]}/rounds", json={"round": 2, "inputs": {}}), 409)
    runs_before = sum(1 for a in actions if a[0] == "run" and a[1] in poison)
    live.server.kill()
    live.server.restart()
    again = bob.post("/v1/requests?wait=60", json={"dataset": "patients", "kind": "builtin", "name": "count",
                                                   "args": {"where": [{"column": "age", "op": ">", "value": 30}]}})
    assert again.json()["status"] == "done", again.text
    after = _audit(live)
    assert sum(1 for a in after if a[0] == "run" and a[1] in poison) == runs_before
    assert not [a for a in after if a[0] == "requeue" and a[1] in poison]
    assert all(alice.get(f"/v1/requests/{rid}").json()["status"] == "failed" for rid in poison)
    # and in `fednb domain requests`, a page at a time
    shown = CliRunner().invoke(cli, ["domain", "requests", str(live.path), "--status", "failed", "--limit", "2"])
    assert shown.exit_code == 0, shown.output
    assert shown.output.count("glm was stopped") == 2 and "more: --offset 2" in shown.output


@pytest.mark.parametrize("formula, says", [
    ("y ~ I(a + 9**9**9**9)", "exponent must be a number"),
    ("y ~ (a + b)**1000", "needs a whole k from 1 to 3"),
    ("y ~ a*b*c*d*e*f*g*h", "more than 200 terms"),
    ("y ~ I((a**10)**10)", "may not contain another power"),
    ("y ~ I(a * 1e300)", "at most"),
    ("y ~ I(__import__)", "not a column name"),
    ("y ~ I(a.__class__)", "not allowed"),
    ("y ~ {a}", "may not contain"),
    ("y ~ I('a')", "may not contain"),
    ("y ~ I(lambda: 1)", "cannot read"),
])
def test_formulas_outside_the_grammar_are_refused_before_any_work(heavy, formula, says):
    _, alice, _, _ = heavy
    r = _glm(alice, formula)  # a parse that hung the server would time this client out
    assert_clean_error(r, (400, 422))
    assert says in r.json()["error"], r.json()["error"]


def test_a_design_too_wide_for_its_declared_levels_is_refused_at_submission(heavy):
    _, alice, _, _ = heavy
    levels = {"a": list(range(240)), "b": list(range(240))}
    r = _glm(alice, "y ~ C(a):C(b)", levels=levels)
    assert_clean_error(r, (400, 422))
    assert "more than 500 columns" in r.json()["error"]


def test_oversized_arguments_are_refused_and_never_stored(heavy):
    live, alice, _, owner = heavy
    where = [{"column": "age", "op": "in", "value": ["x" * 990] * 25}]
    r = alice.post("/v1/requests", json={"dataset": "patients", "kind": "builtin", "name": "count",
                                         "args": {"where": where}})
    assert_clean_error(r, (400, 413, 422))
    assert "at most 20,000" in r.json()["error"]
    listed = owner.get("/v1/requests", params={"limit": 1000}).json()
    assert not any(len(str(req["args"])) > 20_000 for req in listed)


def test_filter_values_are_bounded(heavy):
    _, alice, _, _ = heavy
    r = alice.post("/v1/requests", json={"dataset": "patients", "kind": "builtin", "name": "count",
                                         "args": {"where": [{"column": "age", "op": "in",
                                                             "value": list(range(1001))}]}})
    assert_clean_error(r, (400, 422))
    assert "at most 1000 values" in r.json()["error"]


def test_the_owner_listing_comes_a_page_at_a_time(heavy):
    _, alice, _, owner = heavy
    for i in range(5):
        alice.post("/v1/requests", json={"dataset": "patients", "kind": "builtin", "name": "count",
                                         "args": {"where": [{"column": "age", "op": ">", "value": 40 + i}]}})
    everything = [r["id"] for r in owner.get("/v1/requests", params={"limit": 1000}).json()]
    assert len(everything) >= 5
    seen, offset = [], 0
    while True:
        page = owner.get("/v1/requests", params={"limit": 2, "offset": offset})
        assert page.status_code == 200 and len(page.json()) <= 2
        seen += [r["id"] for r in page.json()]
        if "X-Fednb-Next-Offset" not in page.headers:
            break
        offset = int(page.headers["X-Fednb-Next-Offset"])
    assert seen == everything
    assert_clean_error(owner.get("/v1/requests", params={"limit": 1001}), 422)


def test_waiting_clients_hold_no_thread_another_analyst_needs(heavy):
    """Many long-polls on a request that never ends (custom code nobody approves) park on the event
    loop: another analyst's count is still answered while they wait."""
    live, alice, bob, _ = heavy
    r = alice.post("/v1/requests", json={"dataset": "patients", "kind": "function", "name": "f",
                                         "code": "def f(df):\n    return 1\n"})
    rid = r.json()["id"]
    assert r.json()["status"] == "pending"
    answered = []

    def park():
        with httpx.Client(base_url=live.url, headers=alice.headers, timeout=60) as c:
            answered.append(c.get(f"/v1/requests/{rid}", params={"wait": 20}).status_code)

    parked = [threading.Thread(target=park) for _ in range(60)]
    for t in parked:
        t.start()
    time.sleep(1)  # let them park
    counted = bob.post("/v1/requests?wait=30", json={"dataset": "patients", "kind": "builtin", "name": "count",
                                                     "args": {"where": [{"column": "age", "op": "<", "value": 50}]}})
    still_parked = len(answered)
    for t in parked:
        t.join()
    assert counted.json()["status"] == "done", counted.text
    assert still_parked < 60, "every long-poll ended before the count: the test proved nothing"
    assert answered == [200] * 60


def test_a_worker_that_hangs_is_killed_at_its_wall_limit_and_replaced(tmp_path):
    """The wall-clock kill itself, deterministically: the worker is frozen (SIGSTOP) mid-service."""
    from fednb.domain.review.policy import DisclosureSection

    frame = tmp_path / "data.parquet"  # a dataset folder's data file, as the engine reads it
    pd.DataFrame({"x": range(20)}).to_parquet(frame)
    job = {"name": "count", "args": {}, "inputs": None, "rules": DisclosureSection().model_dump(), "levels": {},
           "data_path": str(frame)}
    worker = Worker(WorkerLimits(cpu_seconds=5, wall_seconds=1, memory_mb=512))
    try:
        assert worker.run(job).result == {"n": 20}
        frozen = worker._proc
        os.kill(frozen.pid, signal.SIGSTOP)
        stopped = worker.run(job)
        assert stopped.status == "timeout" and "wall-clock limit of 1 s" in stopped.reason
        assert frozen.poll() is not None, "the frozen worker was not killed"
        assert worker.run(job).result == {"n": 20}  # a fresh worker serves the next job
    finally:
        worker.close()


def test_slow_clients_hold_no_worker(heavy):
    """Fifty connections that send headers and half a body, then stall (slowloris): another analyst's
    count is still answered; the stalled bodies are cut off by the server, not by the clients."""
    import socket
    from urllib.parse import urlparse

    live, _, bob, _ = heavy
    where = urlparse(live.url)
    stalled = []
    for _ in range(50):
        s = socket.create_connection((where.hostname, where.port))
        s.sendall(b"POST /v1/requests HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + alice_token_bytes(heavy)
                  + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"dataset\":")
        stalled.append(s)
    try:
        counted = bob.post("/v1/requests?wait=30", json={"dataset": "patients", "kind": "builtin", "name": "count",
                                                         "args": {"where": [{"column": "age", "op": "<", "value": 60}]}})
        assert counted.status_code == 201 and counted.json()["status"] == "done", counted.text
        stalled[0].settimeout(120)  # the server ends it after BODY_SECONDS (30 s)
        answer = b""
        while chunk := stalled[0].recv(4096):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"did not arrive within 30 s" in answer
    finally:
        for s in stalled:
            s.close()


def alice_token_bytes(heavy) -> bytes:
    return heavy[1].headers["authorization"].split(" ", 1)[1].encode()


def test_parked_masked_calls_hold_no_thread_another_analyst_needs(tmp_path, alice_token):
    """45 secure-aggregation ``masked`` calls waiting on a request nobody approves (a round that never
    comes) wait on the event loop: another analyst's count is answered while all of them still wait.
    Before, each held a server thread, and the 41st left every analyst waiting up to ten minutes."""
    import asyncio

    from fednb.client.http import DomainClient
    from fednb.federated.secure_sum import Member, SecureSum
    from fednb.models import BUILTINS
    from tests.conftest import live_domains

    every = "[" + ", ".join(f'"{b}"' for b in BUILTINS) + "]"
    but_sum = "[" + ", ".join(f'"{b}"' for b in BUILTINS if b != "sum") + "]"
    frames = {"s1": _frame().head(2000), "s2": _frame().tail(2000)}
    with live_domains(tmp_path, frames, alice_token, policy_edits={f"auto_approve = {every}":
                                                                   f"auto_approve = {but_sum}"}) as live:
        d = live[0].domain()
        bob = d.invite("bob")
        d.close()
        ids = {}
        for one in live:
            r = httpx.post(one.url + "/v1/requests", headers=auth(alice_token), json={
                "dataset": "patients", "kind": "builtin", "name": "sum", "args": {"column": "age", "secure": True}})
            assert r.json()["status"] == "pending", r.text
            ids[one.url] = r.json()["id"]
        parked, first_back = threading.Event(), threading.Event()

        def attack() -> None:
            async def main() -> None:
                sessions = []
                for _ in range(45):
                    ss = SecureSum({one.url: Member(DomainClient(one.url, alice_token, timeout=120), ids[one.url])
                                    for one in live})
                    await ss.advertise()
                    await ss.share()
                    sessions.append(ss)
                async def collect(ss: SecureSum) -> None:
                    try:
                        await ss.collect(wait=40)
                    finally:
                        first_back.set()

                waits = [asyncio.ensure_future(collect(ss)) for ss in sessions]
                await asyncio.sleep(2)  # every masked call has reached the domains and waits there
                parked.set()
                await asyncio.gather(*waits, return_exceptions=True)

            asyncio.run(main())

        attacker = threading.Thread(target=attack, daemon=True)
        attacker.start()
        assert parked.wait(120), "the attack did not get going"
        with httpx.Client(base_url=live[0].url, headers=auth(bob), timeout=60) as c:
            counted = c.post("/v1/requests?wait=30", json={"dataset": "patients", "kind": "builtin", "name": "count"})
        answered_while_all_parked = not first_back.is_set()
        attacker.join(120)
        assert counted.status_code == 201 and counted.json()["status"] == "done", counted.text
        assert answered_while_all_parked, "the count was answered only once a masked call gave its thread back"


def test_a_worker_over_its_cpu_limit_is_stopped_with_that_reason(tmp_path):
    from fednb.domain.review.policy import DisclosureSection

    frame = tmp_path / "data.parquet"  # a dataset folder's data file, as the engine reads it
    pd.concat([_frame()] * 3, ignore_index=True).to_parquet(frame)  # a few CPU seconds of design
    worker = Worker(WorkerLimits(cpu_seconds=1, wall_seconds=300, memory_mb=4096))
    job = {"name": "glm", "args": {"formula": HEAVY, "family": "gaussian"}, "inputs": {},
           "rules": DisclosureSection().model_dump(), "levels": {}, "data_path": str(frame)}
    try:
        stopped = worker.run(job)
        assert stopped.status == "cpu_limit" and "more than 1 CPU seconds" in stopped.reason, stopped
        assert worker.run({**job, "name": "count", "args": {}, "inputs": None}).result == {"n": 3 * ROWS}
    finally:
        worker.close()
