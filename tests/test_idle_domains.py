"""An idle domain sleeps (no loop wakes up while nothing happens) and still answers at once.

Through a real ``fednb domain serve`` and its HTTP API: the owner's ``/v1/wakeups`` counters stay put
while the domain is idle, a new job wakes the runner, an approval written by another process (the
owner's CLI) is picked up without the server re-reading the store on a timer, the sandbox's fork
server starts on the first custom job with its walls in force and stops again when idle, built-in
workers are stopped when unused, and a domain killed -9 while idle loses nothing.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from fednb.demo import data
from tests.api_support import auth
from tests.conftest import start_live

IDLE = 3.0  # seconds of idleness; a polling loop (0.2 s) would wake 15 times per lane meanwhile
QUICK_STOPS = {"\nidle_seconds = 120": "\nidle_seconds = 1", "builtin_worker_idle_seconds = 120":
               "builtin_worker_idle_seconds = 1",
               "builtin_worker_ready = true": "builtin_worker_ready = false"}  # tests/test_ready_worker.py: on
COUNTERS = ("runner", "long_polls", "outside_writes", "server")


@pytest.fixture
def quick(tmp_path, alice_token):
    """A served domain whose sandbox and built-in workers stop after one idle second."""
    live = start_live(tmp_path, "hospital-q", data.hospital("hospital-a"), alice_token, policy_edits=QUICK_STOPS)
    with httpx.Client(base_url=live.url, timeout=60) as client:
        yield live, client
    live.server.stop()


def _wakeups(live, client) -> dict:
    answer = client.get("/v1/wakeups", headers=auth(live.owner_token))
    assert answer.status_code == 200, answer.text
    return answer.json()


def _moving(counts: dict) -> dict:
    return {k: counts[k] for k in COUNTERS}


def _submit(live, client, body: dict, wait: float = 30) -> dict:
    answer = client.post(f"/v1/requests?wait={wait}", headers=auth(live.token),
                         json={"dataset": "patients", "idempotency_key": uuid.uuid4().hex, **body})
    assert answer.status_code == 201, answer.text
    return answer.json()


def _until(live, client, check, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        counts = _wakeups(live, client)
        if check(counts) or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fednb", "domain", *args], capture_output=True, text=True,
                          timeout=120)


def test_an_idle_domain_does_not_wake_and_a_new_job_wakes_it(quick):
    live, client = quick
    first = _wakeups(live, client)
    assert first["store_watched"] is True  # Linux: other processes' commits are reported by the kernel
    assert client.get("/v1/info").headers["date"].endswith(" GMT")  # still dated without uvicorn's tick
    time.sleep(IDLE)
    assert _moving(_wakeups(live, client)) == _moving(first)  # asleep: nothing re-read, nothing ticked
    done = _submit(live, client, {"kind": "builtin", "name": "mean", "args": {"column": "age"}})
    assert done["status"] == "done" and done["result"]["mean"] == pytest.approx(live.frame.age.mean())
    after_job = _wakeups(live, client)
    assert after_job["runner"] > first["runner"]  # the job woke a lane, no timer did
    time.sleep(IDLE)
    settled = _until(live, client, lambda c: c["builtin_workers_running"] == 0)
    assert settled["builtin_workers_running"] == 0  # the idle worker was stopped after its idle second
    time.sleep(IDLE)
    assert _moving(_wakeups(live, client)) == _moving(settled)
    again = _submit(live, client, {"kind": "builtin", "name": "count", "args": {}})
    assert again["status"] == "done" and again["result"]["n"] == len(live.frame)  # a fresh worker


def test_an_approval_from_the_cli_runs_in_a_lazily_started_sandbox(quick):
    live, client = quick
    info = client.get("/v1/info").json()
    assert info["isolation"]["level"] in ("strong", "standard")  # probed at start...
    idle = _wakeups(live, client)
    assert idle["sandbox_running"] is False and idle["sandbox_starts"] == 1  # ...then put to sleep
    code = ("def escape(df):\n    import socket\n    s = socket.socket()\n"
            f"    s.connect(('127.0.0.1', {live.server.port}))\n    return 1\n")
    pending = _submit(live, client, {"kind": "function", "name": "escape", "code": code}, wait=0)
    assert pending["status"] == "pending"
    time.sleep(1)  # the submission itself is a change: let its wake-ups land
    submitted = _wakeups(live, client)
    time.sleep(IDLE)
    quiet = _wakeups(live, client)
    assert _moving(quiet) == _moving(submitted)  # a pending request keeps nothing awake
    approved = _cli("approve", str(live.path), pending["id"])  # another process writes the store
    assert approved.returncode == 0, approved.stderr
    final = client.get(f"/v1/requests/{pending['id']}?wait=60", headers=auth(live.token)).json()
    assert final["status"] == "failed" and final["result"] is None, final  # the walls held on a fresh start
    assert re.search(r"(PermissionError|OSError|unreachable)", final["reason"]), final  # as in test_escapes
    ran = _wakeups(live, client)
    assert ran["outside_writes"] > quiet["outside_writes"] and ran["sandbox_starts"] == 2
    mean = "def mean_age(df):\n    return fednb.stat(df.age)\n"
    fine = _submit(live, client, {"kind": "function", "name": "mean_age", "code": mean}, wait=0)
    assert _cli("approve", str(live.path), fine["id"]).returncode == 0
    result = client.get(f"/v1/requests/{fine['id']}?wait=60", headers=auth(live.token)).json()
    assert result["status"] == "done", result
    stopped = _until(live, client, lambda c: not c["sandbox_running"])
    assert stopped["sandbox_running"] is False  # asleep again after its idle second


def test_only_the_owner_reads_the_wakeups(fresh_domain):
    with httpx.Client(base_url=fresh_domain.url, timeout=30) as client:
        assert client.get("/v1/wakeups").status_code == 401
        refused = client.get("/v1/wakeups", headers=auth(fresh_domain.token))
        assert refused.status_code == 403 and "owner" in refused.json()["error"]


def test_killed_while_idle_loses_nothing(quick):
    live, client = quick
    pending = _submit(live, client, {"kind": "function", "name": "n_rows",
                                     "code": "def n_rows(df):\n    return fednb.stat(df, 'count')\n"}, wait=0)
    done = _submit(live, client, {"kind": "builtin", "name": "count", "args": {}})
    time.sleep(IDLE)  # idle, with a pending request and a released result
    live.server.kill()
    live.server.restart()
    with httpx.Client(base_url=live.server.url, timeout=60) as after:
        kept = after.get(f"/v1/requests/{done['id']}", headers=auth(live.token)).json()
        assert kept["status"] == "done" and kept["result"] == done["result"]
        assert _cli("approve", str(live.path), pending["id"]).returncode == 0
        final = after.get(f"/v1/requests/{pending['id']}?wait=60", headers=auth(live.token)).json()
        assert final["status"] == "done" and str(len(live.frame)) in str(final["result"]), final


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_servers_share_one_launcher_and_fail_alone(tmp_path, alice_token):
    from fednb.domain import process

    first = start_live(tmp_path, "site-a", data.hospital("hospital-a"), alice_token)
    second = start_live(tmp_path, "site-b", data.hospital("hospital-b"), alice_token)
    try:
        launcher = process.launcher_pid()
        assert launcher is not None and _parent(first.server.pid) == _parent(second.server.pid) == launcher
        first.server.kill()  # kill -9 of one forked server
        with httpx.Client(base_url=second.url, timeout=60) as client:
            count = _submit(second, client, {"kind": "builtin", "name": "count", "args": {}})
            assert count["status"] == "done" and count["result"]["n"] == len(second.frame)  # the other serves on
        first.server.restart()
        assert _parent(first.server.pid) == launcher and process.launcher_pid() == launcher
        with httpx.Client(base_url=first.server.url, timeout=60) as client:
            count = _submit(first, client, {"kind": "builtin", "name": "count", "args": {}})
            assert count["status"] == "done" and count["result"]["n"] == len(first.frame)
    finally:
        first.server.stop()
        second.server.stop()


def test_the_policy_template_documents_and_validates_the_idle_settings(tmp_path):
    import tomllib

    from fednb.domain.review.policy import Policy, load_policy, render_template
    from fednb.errors import PolicyError

    text = render_template("d")
    policy = Policy.model_validate(tomllib.loads(text))
    assert policy.sandbox.idle_seconds == 120 and policy.requests.builtin_worker_idle_seconds == 120
    for bad in ("idle_seconds = -1", "builtin_worker_idle_seconds = 0"):
        key = bad.split(" =")[0]
        lines = [bad if line.startswith(f"{key} =") else line for line in text.splitlines()]
        (tmp_path / "policy.toml").write_text("\n".join(lines))
        with pytest.raises(PolicyError, match=key):
            load_policy(tmp_path / "policy.toml")
