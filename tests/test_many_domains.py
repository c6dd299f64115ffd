"""Many domains on one machine stay cheap: built-in workers are forked warm, pooled calls take one
round trip per domain, and a domain on PostgreSQL sleeps until another process's commit wakes it.

Through real ``fednb domain serve`` processes and their HTTP API.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from fednb.demo import data
from tests.api_support import auth
from tests.conftest import start_live


def _descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [], {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found.extend(frontier)
    return found


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _submit(live, client: httpx.Client, body: dict, wait: float = 60) -> dict:
    answer = client.post(f"/v1/requests?wait={wait}", headers=auth(live.token),
                         json={"dataset": "patients", "idempotency_key": uuid.uuid4().hex, **body})
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_builtin_workers_are_forked_warm_not_started_as_fresh_pythons(tmp_path, alice_token):
    """A fresh ``python -m fednb.domain.run.workers`` per worker costs a second of CPU and ~100 MB of
    private memory: with a hundred domains that is the first pooled call's whole budget."""
    live = start_live(tmp_path, "site-w", data.hospital("hospital-a"), alice_token)
    try:
        with httpx.Client(base_url=live.url, timeout=60) as client:
            done = _submit(live, client, {"kind": "builtin", "name": "mean", "args": {"column": "age"}})
            assert done["status"] == "done", done
            commands = [_command(p) for p in _descendants(live.server.pid)]
            assert commands, "the server runs no helper process at all"
            fresh = [c for c in commands if "fednb.domain.run.workers" in c]
            assert fresh == [], f"built-in workers started as fresh Pythons: {fresh}"
            log = (live.path / "server.log").read_text() if (live.path / "server.log").exists() else ""
            assert "forking a warm built-in worker failed" not in log
    finally:
        live.server.stop()
