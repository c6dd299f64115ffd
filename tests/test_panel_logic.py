"""What the JupyterLab panels show is decided in Python: the approved version a review compares
with, the diff, how copies of one submission group together, and how released results read."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest

from fednb import codec
from fednb.demo import data
from fednb.jupyter.analyst import group
from fednb.jupyter.errors import ApiError, UnknownDomain
from fednb.jupyter.owner import OwnerService
from fednb.jupyter.present import result_rows
from fednb.jupyter.review import comparison, diff_lines, previous_version


def _req(id, created, *, analyst="alice", kind="function", name="f", status="done", by="owner", code="x"):
    return {"id": id, "analyst": analyst, "kind": kind, "name": name, "status": status, "decided_by": by,
            "created_at": created, "decided_at": created + 1, "code": code}


def test_the_previous_version_is_the_newest_one_the_owner_approved():
    current = _req("now", 100, status="pending", by=None)
    listing = [
        _req("old", 10), _req("newer", 50, status="failed"),  # approved, then failed: the owner read it
        _req("denied", 60, status="denied"),                  # denied: not approved
        _req("policy", 70, by="policy"), _req("prior", 75, by="prior approval"),
        _req("bob", 80, analyst="bob"), _req("other", 85, name="g"), _req("later", 120),
        _req("waiting", 90, status="pending", by=None),
    ]
    assert previous_version(current, listing)["id"] == "newer"
    assert previous_version(current, [r for r in listing if r["id"] not in ("old", "newer")]) is None


def test_the_diff_shows_removed_and_added_lines_with_hunks():
    old = "def f(df):\n    return df.age.mean()\n"
    new = "def f(df):\n    g = df.groupby('sex')\n    return g.age.mean()\n"
    lines = diff_lines(old, new)
    assert lines[0]["op"] == "@"
    assert {"op": "-", "text": "    return df.age.mean()"} in lines
    assert {"op": "+", "text": "    g = df.groupby('sex')"} in lines
    assert {"op": " ", "text": "def f(df):"} in lines
    same = comparison({"code": old}, {"id": "a", "status": "done", "created_at": 0, "decided_at": 0, "code": old})
    assert same["identical"] and same["diff"] == []
    assert comparison({"code": None}, {"id": "a"}) is None


def test_copies_of_one_submission_group_and_resubmissions_do_not():
    def row(domain, id, created, description="d", hash="h"):
        return {"domain": domain, "id": id, "dataset": "patients", "kind": "builtin", "name": "count",
                "code_hash": hash, "description": description, "created_at": created, "status": "pending",
                "reason": None, "decided_at": None, "finished_at": None}

    rows = [row("a", "1", 100.0), row("b", "2", 100.2), row("a", "3", 500.0), row("b", "4", 500.1, hash="x"),
            row("a", "5", 501.0)]
    groups = group(rows)
    assert [[p["id"] for p in g["parts"]] for g in groups] == [["5"], ["4"], ["3"], ["1", "2"]]


def test_released_results_read_as_rows_of_text():
    encoded = codec.encode({"n": 1200, "mean": 50.29421, "by_sex": pd.Series({"F": 10, "M": 12})})
    rows = {r["key"]: r["value"] for r in result_rows(encoded)}
    assert rows["n"] == "1200" and rows["mean"] == "50.2942"
    assert "F    10" in rows["by_sex"] and "M    12" in rows["by_sex"]
    assert result_rows(3.5) == [{"key": "", "value": "3.5"}] and result_rows(None) == []


def test_an_owner_configured_in_the_server_config_reviews_a_domain_folder(tmp_path, monkeypatch):
    from fednb.models import RequestIn
    from tests.conftest import make_domain

    monkeypatch.setenv("FEDNB_HOME", str(tmp_path / "home"))  # no profile: the server config alone
    d = make_domain(tmp_path, "clinic", data.hospital("hospital-a"))
    d.invite("alice")
    req, _ = d.receive("alice", RequestIn(dataset="patients", kind="function", name="f", description="why",
                                         code="def f(df):\n    return 1\n"))
    d.close()
    service = OwnerService("default", [{"path": str(tmp_path / "clinic")}, {"path": str(tmp_path / "gone")}])
    listing = asyncio.run(service.listing())
    assert [(r["domain"], r["id"], r["description"]) for r in listing["pending"]] == [("clinic", req.id, "why")]
    gone = next(row for row in listing["domains"] if row["domain"] is None)
    assert gone["kind"] == "folder" and "not a fednb domain" in gone["problem"]
    [mock] = listing["mocks"]  # the owner sees each dataset's mock: status and the report's figures
    assert (mock["domain"], mock["dataset"], mock["tier"], mock["status"]) == ("clinic", "patients", 0, "unreviewed")
    assert 0 <= mock["closer_to_real"] <= 1 and mock["exact_match_rate"] == 0
    detail = asyncio.run(service.detail("clinic", req.id))
    assert detail["code"] == "def f(df):\n    return 1\n" and detail["previous"] is None
    decided = asyncio.run(service.decide("clinic", req.id, approve=False, reason="not now"))
    assert decided["status"] == "denied" and decided["reason"] == "not now"
    with pytest.raises(UnknownDomain):
        asyncio.run(service.detail("elsewhere", req.id))
    with pytest.raises(ApiError) as nothing:
        asyncio.run(OwnerService("default", []).listing())
    assert nothing.value.key == "api.no_owner"
    with pytest.raises(ApiError) as bad:
        asyncio.run(OwnerService("default", [{"url": "http://x"}]).listing())
    assert bad.value.key == "api.bad_owner_entry"
