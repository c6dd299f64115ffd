"""Many domains on one machine stay cheap: built-in workers are forked warm, pooled calls take one
round trip per domain, and a domain on PostgreSQL sleeps until another process's commit wakes it.

Through real ``fednb domain serve`` processes and their HTTP API.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from fednb.demo import data
from fednb.demo.processes import command_line, descendants
from tests.api_support import auth
from tests.conftest import start_live


def _submit(live, client: httpx.Client, body: dict, wait: float = 60) -> dict:
    answer = client.post(f"/v1/requests?wait={wait}", headers=auth(live.token),
                         json={"dataset": "patients", "idempotency_key": uuid.uuid4().hex, **body})
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_builtin_workers_are_forked_warm_and_one_serves_sequential_statistics(tmp_path, alice_token):
    """A fresh ``python -m fednb.domain.run.workers`` per worker costs a second of CPU and ~100 MB of
    private memory, and even a forked one tens of milliseconds to start: with a hundred domains that
    is a pooled call's whole budget. So workers are forked from the warm template, and statistics
    sent one after another all go to the one worker already running."""
    live = start_live(tmp_path, "site-w", data.hospital("hospital-a"), alice_token)
    try:
        with httpx.Client(base_url=live.url, timeout=60) as client:
            done = _submit(live, client, {"kind": "builtin", "name": "mean", "args": {"column": "age"}})
            assert done["status"] == "done", done
            commands = [" ".join(command_line(p)) for p in descendants(live.server.pid)]
            assert commands, "the server runs no helper process at all"
            fresh = [c for c in commands if "fednb.domain.run.workers" in c]
            assert fresh == [], f"built-in workers started as fresh Pythons: {fresh}"
            log = (live.path / "server.log").read_text() if (live.path / "server.log").exists() else ""
            assert "forking a warm built-in worker failed" not in log
            for _ in range(6):  # one analyst's statistics one after another: the warm worker takes each
                assert _submit(live, client, {"kind": "builtin", "name": "count", "args": {}})["status"] == "done"
            counts = client.get("/v1/wakeups", headers=auth(live.owner_token)).json()
            assert counts["builtin_workers_running"] == 1, counts  # not a second worker started for nothing
    finally:
        live.server.stop()


# -- a domain on PostgreSQL: woken by the database, not by a timer -----------------------------------
IDLE = 3.0  # seconds of idleness; a re-read every 0.2 s would wake each lane 15 times meanwhile
COUNTERS = ("runner", "long_polls", "outside_writes", "server")
QUICK_STOPS = {"\nidle_seconds = 120": "\nidle_seconds = 1", "builtin_worker_idle_seconds = 120":
               "builtin_worker_idle_seconds = 1"}


def _counters_by_process(live, processes: int, tries: int = 60) -> dict[int, dict]:
    """``/v1/wakeups`` of each of the domain's server processes (a fresh connection each time: the
    kernel spreads connections over the processes that share the port)."""
    found: dict[int, dict] = {}
    for _ in range(tries):
        with httpx.Client(base_url=live.url, timeout=30) as client:
            answer = client.get("/v1/wakeups", headers=auth(live.owner_token))
        assert answer.status_code == 200, answer.text
        counts = answer.json()
        found[counts["process"]] = {k: counts[k] for k in (*COUNTERS, "store_watched")}
        if len(found) == processes:
            return found
    raise AssertionError(f"reached {len(found)} of {processes} server processes in {tries} connections")


def _settled(live, processes: int, tries: int = 20) -> dict[int, dict]:
    """The counters once two reads a second apart agree (start-up is over)."""
    import time

    last = _counters_by_process(live, processes)
    for _ in range(tries):
        time.sleep(1)
        now = _counters_by_process(live, processes)
        if now == last:
            return now
        last = now
    raise AssertionError(f"the domain's processes kept waking while nothing was sent: {last}")


def _cli(*args: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "fednb", "domain", *args], capture_output=True, text=True,
                          timeout=120)


def _served_on_postgres(tmp_path, alice_token, store: str, workers: int):
    from fednb.domain.process import DomainProcess
    from tests.conftest import LiveDomain, make_domain

    frame = data.hospital("hospital-a")
    d = make_domain(tmp_path, "site-pg", frame, token=alice_token, store=store, policy_edits=QUICK_STOPS)
    owner = d.invite("olga", role="owner")
    d.close()
    server = DomainProcess(tmp_path / "site-pg", extra_args=["--workers", str(workers)] if workers > 1 else None)
    server.start()
    return LiveDomain("site-pg", tmp_path / "site-pg", server, alice_token, owner, frame)


def test_a_postgres_domain_sleeps_until_another_process_commits(tmp_path, alice_token, postgres_database):
    """No re-read of the store on a timer: the owner's CLI approval (another process) wakes it."""
    live = _served_on_postgres(tmp_path, alice_token, postgres_database, workers=1)
    try:
        with httpx.Client(base_url=live.url, timeout=60) as client:
            pending = _submit(live, client, {"kind": "function", "name": "n_rows",
                                             "code": "def n_rows(df):\n    return fednb.stat(df, 'count')\n"}, wait=0)
            assert pending["status"] == "pending"
            before = _counters_by_process(live, 1)
            assert next(iter(before.values()))["store_watched"] is True  # LISTEN/NOTIFY, not a re-read
            import time

            time.sleep(IDLE)
            assert _counters_by_process(live, 1) == before  # asleep: nothing re-read, nothing ticked
            approved = _cli("approve", str(live.path), pending["id"])
            assert approved.returncode == 0, approved.stderr
            final = client.get(f"/v1/requests/{pending['id']}?wait=60", headers=auth(live.token)).json()
            assert final["status"] == "done", final
            woken = next(iter(_counters_by_process(live, 1).values()))
            assert woken["outside_writes"] > next(iter(before.values()))["outside_writes"]  # the notice woke it
            _cut_listeners(postgres_database)  # as a database restart would: the server listens again
            again = _submit(live, client, {"kind": "function", "name": "rows",  # new code: waits for the owner
                                           "code": "def rows(df):\n    return fednb.stat(df, 'count')\n"}, wait=0)
            assert again["status"] == "pending", again
            approved = _cli("approve", str(live.path), again["id"])
            assert approved.returncode == 0, approved.stderr
            final = client.get(f"/v1/requests/{again['id']}?wait=60", headers=auth(live.token)).json()
            assert final["status"] == "done", final
    finally:
        live.server.stop()


def _cut_listeners(url: str) -> None:
    """End every session that listens for the store's commits (pg_terminate_backend)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cut = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND query LIKE 'LISTEN %'").fetchone()[0]
    assert cut >= 1, "no session listened for commits"


def test_postgres_workers_sleep_when_idle_and_wake_each_other(tmp_path, alice_token, postgres_database):
    """``serve --workers 2``: each process sleeps while idle, and work submitted to one is run and
    answered at once whichever process's runner claims it (every long-poll is woken by a commit)."""
    import time

    live = _served_on_postgres(tmp_path, alice_token, postgres_database, workers=2)
    try:
        settled = _settled(live, 2)  # both processes' start-up commits have woken the other
        assert all(c["store_watched"] for c in settled.values())
        time.sleep(IDLE)
        assert _counters_by_process(live, 2) == settled  # no process re-reads the store or ticks while idle
        for _ in range(12):  # fresh connections: the submissions land on both processes
            with httpx.Client(base_url=live.url, timeout=60) as client:
                done = _submit(live, client, {"kind": "builtin", "name": "mean", "args": {"column": "age"}})
                assert done["status"] == "done", done
        woken = _counters_by_process(live, 2)
        assert sum(c["outside_writes"] for c in woken.values()) > sum(c["outside_writes"] for c in settled.values())
    finally:
        live.server.stop()


LAUNCH_AT_ONCE = """
import json, sys, threading
from pathlib import Path
from fednb.demo import data
from fednb.demo.processes import command_line, descendants
from fednb.demo.local import create_domain
from fednb.domain import process
root = Path(sys.argv[1])
servers = []
for i in range(4):
    create_domain(root, f"site-{i}", data.hospital("hospital-a"), "patients").close()
    servers.append(process.DomainProcess(root / f"site-{i}"))
threads = [threading.Thread(target=s.start) for s in servers]
for t in threads:
    t.start()
for t in threads:
    t.join()
parents = []
for s in servers:
    with open(f"/proc/{s.pid}/stat") as f:
        parents.append(int(f.read().rsplit(")", 1)[1].split()[1]) if s.alive() else None)
print(json.dumps({"alive": [s.alive() for s in servers], "parents": parents, "launcher": process.launcher_pid()}))
for s in servers:
    s.stop()
"""


def test_servers_launched_from_several_threads_at_once_share_one_launcher(tmp_path):
    """The soak and the workshop start their domains from several threads: each must get a server
    forked by the one launcher (a second launcher, made at the same moment and then dropped, took
    its server down with it: a domain that "did not start", with an empty log)."""
    import json
    import subprocess
    import sys

    ran = subprocess.run([sys.executable, "-c", LAUNCH_AT_ONCE, str(tmp_path)], capture_output=True, text=True,
                         timeout=300, cwd=Path(__file__).resolve().parent.parent)
    assert ran.returncode == 0, ran.stderr[-3000:]
    seen = json.loads(ran.stdout.strip().splitlines()[-1])
    assert seen["alive"] == [True] * 4, seen
    assert seen["launcher"] is not None and set(seen["parents"]) == {seen["launcher"]}, seen
