"""Approved custom code through the real server: it runs in the sandbox, its output is checked before
release, and row-level output is blocked with reasons the analyst can read (escapes: test_escapes.py)."""

from __future__ import annotations

import pytest

import fednb
from fednb.demo import data
from tests.conftest import start_live

FAST = {"wall_seconds = 120": "wall_seconds = 4", "cpu_seconds = 60": "cpu_seconds = 1",
        "memory_mb = 2048": "memory_mb = 256", "max_output_bytes = 1000000": "max_output_bytes = 20000"}


@pytest.fixture(scope="module")
def domain(tmp_path_factory, alice_token):
    live = start_live(tmp_path_factory.mktemp("fn"), "sandboxed", data.hospital("hospital-a"), alice_token,
                      policy_edits=FAST)
    fed = fednb.connect([live.url], token=alice_token)
    yield live, fed.dataset("patients")
    fed.close()
    live.server.stop()


def run(domain, body: str, args: dict | None = None):
    """Submit, approve as the owner, wait; returns the domain's part of the request."""
    live, ds = domain
    src = "def job(df, **kw):\n" + "\n".join("    " + line for line in body.strip().splitlines()) + "\n"
    req = ds.submit(fednb.function(src, name="job"), args=args or {})
    part = req.parts[0]
    if part.status == "pending":
        d = live.domain()
        d.approve(part.id, "test")
        d.close()
    req.wait(30)
    return req.parts[0]


def test_an_approved_function_runs_and_releases_its_aggregate(domain):
    part = run(domain, "return df.groupby('sex')['bmi'].mean().round(2)")
    assert part.status == "done"
    value = fednb.codec.decode(part.state["result"]) if hasattr(fednb, "codec") else None
    from fednb import codec

    value = codec.decode(part.state["result"])
    assert set(value.index) == {"F", "M"}


@pytest.mark.parametrize("body,status,reason", [
    ("return df[['age']].head(150)", "blocked", "values from"),                   # rows of a table
    ("return df['age'].tolist()", "blocked", "values from"),                   # one column, row by row
    ("return df.head(len(df) // 12)['age'].tolist()", "blocked", "grows with the number of rows"),
    ("return 1 / 0", "failed", "ZeroDivisionError: division by zero"),
])
def test_row_level_output_is_blocked_and_errors_are_readable(domain, body, status, reason):
    """Escape attempts (files, network, processes, resources, outputs) are in test_escapes.py."""
    part = run(domain, body)
    assert part.status == status, (part.status, part.state.get("reason"))
    assert reason in (part.state.get("reason") or "")


def test_the_server_still_serves_after_all_that(domain):
    _, ds = domain
    assert ds.count().value == 1200
