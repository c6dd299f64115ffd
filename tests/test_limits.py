"""Every limit refuses with a clear 4xx and a sentence: code size, pending requests per analyst, the size
of a built-in's result. (Body size, declared and streamed, is in test_api_contract.BAD_INPUTS; the size of
a custom function's result in test_escapes.py; the failed-token limit in test_rate_limit.py.)"""

from __future__ import annotations

import httpx
import pytest

from fednb.demo import data
from fednb.domain import Domain
from fednb.models import RequestIn
from tests.api_support import assert_clean_error, auth
from tests.conftest import start_live

TIGHT = {"max_pending_per_analyst = 50": "max_pending_per_analyst = 3",
         "max_output_bytes = 1000000": "max_output_bytes = 1000"}


@pytest.fixture(scope="module")
def tight(tmp_path_factory, alice_token):
    live = start_live(tmp_path_factory.mktemp("limits"), "tight", data.hospital("hospital-b"), alice_token,
                      policy_edits=TIGHT)
    with httpx.Client(base_url=live.url, headers=auth(alice_token), timeout=30) as client:
        yield live, client
    live.server.stop()


def _function(i: int, extra: str = "") -> dict:
    return {"dataset": "patients", "kind": "function", "name": "f",
            "code": f"def f(df):\n    return {i}\n{extra}", "description": f"limit test {i}"}


def test_code_over_the_size_limit_is_refused_naming_the_limit(tight):
    _, client = tight
    r = client.post("/v1/requests", json=_function(1, "#" * 100_000))
    assert_clean_error(r, 422)
    assert "code" in r.json()["error"] and "100000" in r.json()["error"]
    # a description and the number of filter conditions are bounded too
    assert_clean_error(client.post("/v1/requests", json={**_function(1), "description": "d" * 5001}), 422)
    where = [{"column": "age", "op": ">", "value": i} for i in range(21)]
    r = client.post("/v1/requests", json={"dataset": "patients", "kind": "builtin", "name": "count",
                                          "args": {"where": where}})
    assert_clean_error(r, 400)
    assert "where" in r.json()["error"]


def test_pending_requests_per_analyst_are_capped(tight):
    live, client = tight
    ids = []
    for i in range(3):
        r = client.post("/v1/requests", json=_function(100 + i))
        assert r.status_code == 201 and r.json()["status"] == "pending", r.text
        ids.append(r.json()["id"])
    refused = client.post("/v1/requests", json=_function(103))
    assert_clean_error(refused, 429)
    assert "3 pending requests" in refused.json()["error"] and "wait for the owner" in refused.json()["error"]
    # a re-submission of a pending one is not a new request; built-ins are not pending: both fine
    assert client.post("/v1/requests", json=_function(100)).json()["id"] == ids[0]
    assert client.post("/v1/requests", json={"dataset": "patients", "kind": "builtin", "name": "count"}).status_code == 201
    # the owner decides one: there is room again
    d = Domain(live.path)
    d.deny(ids[0], "limit test")
    d.close()
    assert client.post("/v1/requests", json=_function(103)).status_code == 201


def test_a_builtin_result_over_the_output_limit_is_blocked(tight):
    _, client = tight
    edges = list(range(0, 401))
    r = client.post("/v1/requests?wait=20", json={"dataset": "patients", "kind": "builtin", "name": "histogram",
                                                  "args": {"column": "age", "bins": edges}})
    assert r.status_code == 201 and r.json()["status"] == "blocked", r.text
    assert "larger than the domain's limit of 1,000 bytes" in r.json()["reason"]
    assert r.json()["result"] is None
    small = client.post("/v1/requests?wait=20", json={"dataset": "patients", "kind": "builtin", "name": "histogram",
                                                      "args": {"column": "age", "bins": [0, 40, 60, 120]}})
    assert small.json()["status"] == "done", small.text


def test_a_crosstab_of_wide_columns_is_held_to_the_same_cap(tmp_path):
    """Unit level: the cap applies to every built-in, whatever makes the result large."""
    import numpy as np
    import pandas as pd

    from fednb.domain.run.runner import Runner
    from tests.conftest import make_domain

    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": [f"level-{i % 45:02d}" for i in range(3000)],
                          "b": [f"kind-{i % 40:02d}" for i in range(3000)], "x": rng.normal(size=3000)})
    d = make_domain(tmp_path, "wide", frame, policy_edits=TIGHT)
    d.invite("alice")
    req, _ = d.receive("alice", RequestIn(dataset="patients", kind="builtin", name="crosstab",
                                         args={"row": "a", "col": "b"}))
    runner = Runner(d)
    job = d.store.query_one("SELECT * FROM jobs WHERE request_id = ?", (req.id,))
    outcome = runner._execute(job)
    assert outcome.action == "block" and "larger than the domain's limit" in outcome.reason
    d.close()
