"""Approved custom code through the client library and the real server: it runs in the sandbox, its output
is checked before release, and row-level output is blocked with reasons the analyst can read (every encoding
of rows: test_output_attacks.py; escapes: test_escapes.py)."""

from __future__ import annotations

import pytest

import fednb
from fednb.demo import data
from tests.api_support import run_approved
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
    src = "def job(df, **kw):\n" + "\n".join("    " + line for line in body.strip().splitlines()) + "\n"
    return run_approved(domain, fednb.function(src, name="job"), args, timeout=30)


def test_an_approved_function_runs_and_releases_its_aggregate(domain):
    live, ds = domain
    part = run(domain, "return {'bmi': fednb.table(df, by='sex', value='bmi', agg='mean')}")
    assert part.status == "done", part.state.get("reason")
    from fednb import codec

    value = codec.decode(part.state["result"])["bmi"]
    expected = live.frame.groupby("sex")["bmi"].agg(["size", "mean"])
    assert value["n"].tolist() == expected["size"].tolist()
    assert value["mean"].round(1).tolist() == expected["mean"].round(1).tolist()


@pytest.mark.parametrize("body,status,reason", [
    ("return df[['age']].head(150)", "blocked", "300 number(s) the domain cannot check"),  # 150 rows, 150 labels
    ("return df['age'].tolist()", "blocked", "1200 number(s) the domain cannot check"),  # a column, row by row
    ("return df.head(len(df) // 12)['age'].mean()", "blocked", "cannot check"),  # a mean of what rows?
    ("return fednb.stat(df.age.head(5))", "blocked", "rows behind a fednb.stat value number fewer than 10"),
    ("return 1 / 0", "failed", "your code raised ZeroDivisionError (line 2 of your function)"),
])
def test_row_level_output_is_blocked_and_errors_are_readable(domain, body, status, reason):
    """Escape attempts (files, network, processes, resources, outputs) are in test_escapes.py."""
    part = run(domain, body)
    assert part.status == status, (part.status, part.state.get("reason"))
    assert reason in (part.state.get("reason") or "")


def test_the_server_still_serves_after_all_that(domain):
    _, ds = domain
    assert ds.count().value == 1200
