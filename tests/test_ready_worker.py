"""A domain keeps one fresh built-in worker ready, its datasets opened, so the first statistic costs
what the next one does; the ready worker sleeps, holds the same limits as any worker, and dies with
its server.

Through real ``fednb domain serve`` processes and their HTTP API; the worker is found in the
server's process tree (a fork of the server's worker template).
"""

from __future__ import annotations

import time
import uuid

import httpx
import numpy as np
import pandas as pd
import psutil
import pytest

from fednb.demo import data
from tests.api_support import auth
from tests.conftest import start_live

IDLE = 3.0  # seconds of idleness; a worker restarted on a timer, or a lane polling, would show meanwhile
QUICK = {"builtin_worker_idle_seconds = 120": "builtin_worker_idle_seconds = 1"}
COUNTERS = ("runner", "long_polls", "outside_writes", "server")


def _wakeups(live, client: httpx.Client) -> dict:
    answer = client.get("/v1/wakeups", headers=auth(live.owner_token))
    assert answer.status_code == 200, answer.text
    return answer.json()


def _submit(live, client: httpx.Client, body: dict, wait: float = 60) -> dict:
    answer = client.post(f"/v1/requests?wait={wait}", headers=auth(live.token),
                         json={"dataset": "patients", "idempotency_key": uuid.uuid4().hex, **body})
    assert answer.status_code == 201, answer.text
    final = answer.json()
    if final["status"] not in ("done", "failed", "blocked"):
        final = client.get(f"/v1/requests/{final['id']}?wait={wait}", headers=auth(live.token)).json()
    return final


def _workers(live) -> list[psutil.Process]:
    """The server's built-in workers: the children of its worker template (the server's other child)."""
    server = psutil.Process(live.server.pid)
    return [p for p in server.children(recursive=True) if p.ppid() != server.pid and p.is_running()]


def _until(check, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _one_worker(live) -> psutil.Process:
    found = _until(lambda: (lambda w: w if len(w) == 1 else None)(_workers(live)))
    assert found, f"expected one ready built-in worker, found {_workers(live)}"
    return found[0]


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _address_space(proc: psutil.Process) -> str:
    """The soft ``RLIMIT_AS`` of ``proc``, as ``/proc/PID/limits`` shows it (bytes, or unlimited)."""
    with open(f"/proc/{proc.pid}/limits") as f:
        return next(line for line in f if line.startswith("Max address space")).split()[3]


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


@pytest.fixture
def quick(tmp_path, alice_token):
    """A served domain whose used built-in workers are stopped after one idle second."""
    live = start_live(tmp_path, "ready", data.hospital("hospital-a"), alice_token, policy_edits=QUICK)
    with httpx.Client(base_url=live.url, timeout=60) as client:
        yield live, client
    live.server.stop()


def test_one_fresh_worker_stands_ready_asleep_and_takes_the_first_statistic(quick):
    live, client = quick
    ready = _one_worker(live)  # before any request
    assert "fednb.domain.run.workers" not in " ".join(ready.cmdline())  # a fork of the template, not a fresh Python
    assert _until(lambda: _address_space(ready) != "unlimited" and ready.num_threads() > 1, 10)  # DuckDB open
    time.sleep(0.5)  # and its columns read
    first, cpu = _wakeups(live, client), _cpu(ready)
    time.sleep(IDLE)
    assert {k: _wakeups(live, client)[k] for k in COUNTERS} == {k: first[k] for k in COUNTERS}  # nothing woke
    assert _cpu(ready) == cpu  # the ready worker sleeps: no CPU at all
    assert first["builtin_workers_running"] == 1  # one per domain, not one per lane (two lanes here)
    done = _submit(live, client, {"kind": "builtin", "name": "mean", "args": {"column": "age"}})
    assert done["status"] == "done" and done["result"]["mean"] == pytest.approx(live.frame.age.mean())
    assert [w.pid for w in _workers(live)] == [ready.pid]  # the ready worker answered; none other started
    # used and then idle past builtin_worker_idle_seconds: replaced by a fresh one, once
    fresh = _until(lambda: (lambda w: w if len(w) == 1 and w[0].pid != ready.pid else None)(_workers(live)))
    assert fresh, "the used worker was not replaced by a fresh ready one"
    assert not ready.is_running()
    time.sleep(1)
    settled = _wakeups(live, client)
    time.sleep(IDLE)
    assert [w.pid for w in _workers(live)] == [fresh[0].pid]  # a fresh worker is not stopped and restarted
    assert {k: _wakeups(live, client)[k] for k in COUNTERS} == {k: settled[k] for k in COUNTERS}
    again = _submit(live, client, {"kind": "builtin", "name": "count", "args": {}})
    assert again["status"] == "done" and again["result"]["n"] == len(live.frame)


def test_the_owner_can_turn_the_ready_worker_off(tmp_path, alice_token):
    live = start_live(tmp_path, "lazy", data.hospital("hospital-a"), alice_token,
                      policy_edits={"builtin_worker_ready = true": "builtin_worker_ready = false"})
    try:
        with httpx.Client(base_url=live.url, timeout=60) as client:
            time.sleep(IDLE)
            assert _workers(live) == [] and _wakeups(live, client)["builtin_workers_running"] == 0
            done = _submit(live, client, {"kind": "builtin", "name": "count", "args": {}})
            assert done["status"] == "done" and done["result"]["n"] == len(live.frame)
    finally:
        live.server.stop()


ROWS = 200_000
HEAVY = "y ~ (a + b + c + d + e + f + g + h)**3"  # a valid design over a 128 MiB worker's memory
SMALL = {"builtin_memory_mb = 1024": "builtin_memory_mb = 128", "builtin_wall_seconds = 20": "builtin_wall_seconds = 5"}


def test_the_ready_worker_is_capped_before_its_first_job_and_a_poison_request_is_stopped(tmp_path, alice_token):
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({c: rng.normal(size=ROWS).round(3) for c in "abcdefghy"})
    live = start_live(tmp_path, "capped", frame, alice_token, policy_edits=SMALL)
    try:
        ready = _one_worker(live)
        address_space = _until(lambda: (lambda cap: cap if cap != "unlimited" else None)(_address_space(ready)), 10)
        assert address_space, "the ready worker runs without its address-space cap"
        assert int(address_space) < ready.memory_info().vms + 129 * 2**20  # what it holds plus 128 MiB at most
        with httpx.Client(base_url=live.url, timeout=60) as client:
            poison = _submit(live, client, {"kind": "builtin", "name": "glm",
                                            "args": {"formula": HEAVY, "family": "gaussian"},
                                            "limits": {"max_rounds": 5}}, wait=0)
            assert poison["status"] == "approved", poison
            sent = client.post(f"/v1/requests/{poison['id']}/rounds", headers=auth(live.token),
                               json={"round": 1, "inputs": {}})
            assert sent.status_code == 202, sent.text
            final = client.get(f"/v1/requests/{poison['id']}?wait=60", headers=auth(live.token)).json()
            assert final["status"] == "failed", final
            assert "memory limit of 128 MiB" in final["reason"] or "wall-clock limit of 5 s" in final["reason"], final
            assert _gone(ready)  # the ready worker took the job and the limit stopped it
            counted = _submit(live, client, {"kind": "builtin", "name": "count", "args": {}})
            assert counted["status"] == "done" and counted["result"]["n"] == ROWS  # and the domain serves on
    finally:
        live.server.stop()


def test_a_killed_server_takes_its_ready_worker_with_it(tmp_path, alice_token):
    live = start_live(tmp_path, "killed", data.hospital("hospital-a"), alice_token)
    try:
        ready = _one_worker(live)
        live.server.kill()  # kill -9
        assert _until(lambda: _gone(ready), 10), \
            "the ready worker outlived its server"
        live.server.restart()
        with httpx.Client(base_url=live.url, timeout=60) as client:
            done = _submit(live, client, {"kind": "builtin", "name": "count", "args": {}})
            assert done["status"] == "done" and done["result"]["n"] == len(live.frame)
        _one_worker(live)
    finally:
        live.server.stop()


def test_a_ready_worker_killed_while_idle_is_replaced_by_the_next_statistic(quick):
    live, client = quick
    ready = _one_worker(live)
    ready.kill()  # kill -9; it stays a zombie until the template is asked for its status
    assert _until(lambda: _gone(ready), 10)
    done = _submit(live, client, {"kind": "builtin", "name": "mean", "args": {"column": "age"}})
    assert done["status"] == "done" and done["result"]["mean"] == pytest.approx(live.frame.age.mean())


def test_only_files_kept_in_the_domain_are_opened_ahead(tmp_path):
    """A dataset in the owner's PostgreSQL or Spark would connect to another machine while the
    worker starts: it is left to its first job; a Parquet file is opened, and a broken one is left
    to its first job too, which says why."""
    from fednb.domain.data.engines.base import SOURCE_FILE
    from fednb.domain.run.workers import Engines

    kept, remote, broken = (tmp_path / name for name in ("kept", "remote", "broken"))
    for folder in (kept, remote, broken):
        folder.mkdir()
    pd.DataFrame({"age": [30, 40, 50]}).to_parquet(kept / "data.parquet")
    (remote / SOURCE_FILE).write_text('{"engine": "postgresql", "url": "postgresql://10.255.255.1/db", "table": "t"}')
    (broken / "data.parquet").write_text("not parquet")
    engines = Engines()
    engines.open_ahead([{"data_path": str(f / "data.parquet"), "engine": {}} for f in (kept, remote, broken)])
    assert sorted(engines._open) == [str(kept / "data.parquet")]
    assert engines.get(str(kept / "data.parquet"), {}) is engines._open[str(kept / "data.parquet")][1]  # reused
