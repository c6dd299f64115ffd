"""An owner who runs several domains approves one federated request once: on every domain they
list, the copy with the same code hash is approved and audited there, bound to that hash; a domain
whose copy carries other code (an analyst who sent each domain a different version under one name)
is named and left pending. Through real served domains, reached by folder and by URL."""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner

import fednb
from fednb.cli import main as cli
from fednb.client import profile as profiles
from fednb.demo import data
from tests.conftest import start_live

HONEST = "def mean_age(df):\n    return fednb.stat(df.age)\n"
SWAPPED = "def mean_age(df):\n    return df.head(20)\n"  # the same name, other code


@pytest.fixture
def three(tmp_path, alice_token, monkeypatch):
    """hospital-a and -b (folders) and -c (by URL and owner token) in owner profile 'mine'."""
    monkeypatch.setenv("FEDNB_HOME", str(tmp_path / "home"))
    live = [start_live(tmp_path, name, data.hospital("hospital-a"), alice_token)
            for name in ("hospital-a", "hospital-b", "hospital-c")]
    runner = CliRunner()
    for args in ([str(live[1].path)], [live[2].url, "--token", live[2].owner_token], [str(live[0].path)]):
        added = runner.invoke(cli, ["profile", "add-owner", "mine", *args])
        assert added.exit_code == 0, added.output
    assert "needs your owner token" in runner.invoke(cli, ["profile", "add-owner", "mine", live[2].url]).output
    assert [sorted(e) for e in profiles.load_owner("mine")] == [["path"], ["token", "url"], ["path"]]
    yield live
    for d in live:
        d.server.stop()


def _submit(live, code: str) -> dict[str, str]:
    fed = fednb.connect([d.url for d in live], token=live[0].token)
    req = fed.dataset("patients").submit(fednb.function("import fednb\n" + code), description="mean age")
    fed.close()
    return {p.domain: p.id for p in req.parts}


def _approvals(live) -> list[dict]:
    d = live.domain()
    try:
        return [e.payload for e in d.audit_entries() if e.action == "approve"]
    finally:
        d.close()


def _status(live, request_id: str) -> tuple[str, str]:
    d = live.domain()
    try:
        r = d.request(request_id)
        return r.status, r.code_hash
    finally:
        d.close()


def test_cli_approves_the_same_code_everywhere_and_names_the_domain_with_other_code(three):
    a, b, c = three
    ids = _submit([a, b], HONEST)
    ids.update(_submit([c], SWAPPED))
    result = CliRunner().invoke(cli, ["domain", "approve", str(a.path), ids["hospital-a"], "--all-domains",
                                      "--profile", "mine", "--reason", "one mean"])
    assert result.exit_code == 1, result.output  # not every copy could be approved
    status_a, hash_a = _status(a, ids["hospital-a"])
    status_b, hash_b = _status(b, ids["hospital-b"])
    assert status_a != "pending" and status_b != "pending" and hash_a == hash_b
    assert _status(c, ids["hospital-c"])[0] == "pending"
    assert f"hospital-a: approved {ids['hospital-a']} (sha256 {hash_a[:12]}" in result.output
    assert f"hospital-b: approved {ids['hospital-b']} (sha256 {hash_a[:12]}" in result.output
    assert f"hospital-c: NOT approved (different code): {ids['hospital-c']} has code hash" in result.output
    # each domain audits its own approval, bound to the hash, with the owner's reason
    for live in (a, b):
        assert [(p["code_hash"], p["reason"]) for p in _approvals(live)] == [(hash_a, "one mean")]
    assert _approvals(c) == []


def test_all_domains_approves_nothing_on_a_domain_without_the_request(three):
    a, b, c = three
    ids = _submit([a, c], HONEST)
    result = CliRunner().invoke(cli, ["domain", "approve", str(a.path), ids["hospital-a"], "--all-domains",
                                      "--profile", "mine"])
    assert result.exit_code == 0, result.output
    assert "hospital-b: nothing to approve: no pending function:mean_age from alice on patients" in result.output
    assert _status(c, ids["hospital-c"])[0] != "pending"
    assert _approvals(b) == []


def test_review_panel_service_approves_on_all_owned_domains(three):
    from fednb.jupyter.owner import OwnerService

    a, b, c = three
    ids = _submit([a, b, c], HONEST)
    other = _submit([b], SWAPPED)  # another version pending on b: left alone
    service = OwnerService("mine", [])
    answer = asyncio.run(service.approve_everywhere("hospital-c", ids["hospital-c"], "read once"))
    outcomes = {o["request"]: o for o in answer["outcomes"]}
    assert {o["status"] for o in outcomes.values()} == {"approved"} and set(outcomes) == set(ids.values())
    assert _status(b, other["hospital-b"])[0] == "pending"
    for live in three:
        assert [p["reason"] for p in _approvals(live)] == ["read once"]


def test_a_decided_request_is_not_approved_anywhere(three):
    a, b, c = three
    ids = _submit([a, b], HONEST)
    owner = a.domain()
    owner.deny(ids["hospital-a"], "no")
    owner.close()
    result = CliRunner().invoke(cli, ["domain", "approve", str(a.path), ids["hospital-a"], "--all-domains",
                                      "--profile", "mine"])
    assert result.exit_code == 1 and "is denied, not pending" in result.output
    assert _status(b, ids["hospital-b"])[0] == "pending"
