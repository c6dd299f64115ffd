"""Review bound to the code's hash: approve, deny with a reason, re-submission and changes; CLI and HTTP."""

from __future__ import annotations

import subprocess
import sys

import pytest

import fednb
from fednb.client.http import DomainClient, run


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fednb", "domain", *args], capture_output=True, text=True, timeout=60)


def _source(body: str = "return df.age.mean()", name: str = "avg_age") -> str:
    return f"def {name}(df, **kw):\n    {body}\n"


@pytest.fixture
def analyst(fresh_domain):
    fed = fednb.connect([fresh_domain.url], token=fresh_domain.token)
    yield fed.dataset("patients")
    fed.close()


def test_function_waits_for_a_person_and_cli_shows_the_exact_code(fresh_domain, analyst):
    req = analyst.submit(fednb.function(_source(), name="avg_age"), description="mean age")
    assert req.status == {fresh_domain.name: "pending"}
    listing = _cli("requests", str(fresh_domain.path))
    assert listing.returncode == 0 and "pending" in listing.stdout and "function:avg_age" in listing.stdout
    rid = req.parts[0].id
    shown = _cli("show", str(fresh_domain.path), rid[:6])
    assert shown.returncode == 0
    assert "return df.age.mean()" in shown.stdout and req.parts[0].state["code_hash"] in shown.stdout
    assert "alice" in shown.stdout and "mean age" in shown.stdout


def test_deny_needs_a_reason_and_the_analyst_reads_it(fresh_domain, analyst):
    req = analyst.submit(fednb.function(_source("return df.head()", "peek"), name="peek"))
    rid = req.parts[0].id
    no_reason = _cli("deny", str(fresh_domain.path), rid, "--reason", "  ")
    assert no_reason.returncode == 2 and "needs a reason" in no_reason.stderr
    assert "Traceback" not in no_reason.stderr
    ok = _cli("deny", str(fresh_domain.path), rid, "--reason", "returns rows of patients")
    assert ok.returncode == 0, ok.stderr
    req.wait(10)
    assert req.status == {fresh_domain.name: "denied"}
    assert req.problems[fresh_domain.name] == "denied by the owner: returns rows of patients"
    with pytest.raises(fednb.NotEnoughDomains, match="returns rows of patients"):
        req.result()
    again = _cli("approve", str(fresh_domain.path), rid)
    assert again.returncode == 2 and "already denied" in again.stderr


def test_approval_is_bound_to_the_hash_of_code_and_arguments(fresh_domain, analyst):
    fn = fednb.function(_source(), name="avg_age")
    first = analyst.submit(fn, args={"x": 1})
    d = fresh_domain.domain()
    d.approve(first.parts[0].id, "looks fine")
    first.wait(30)
    assert first.status[fresh_domain.name] != "pending"
    # the same code and arguments: runs without a new review
    same = analyst.submit(fn, args={"x": 1})
    assert same.parts[0].state["decided_by"] == "prior approval"
    assert same.status[fresh_domain.name] in ("approved", "running", "done", "failed")
    # different arguments or one changed character of code: a new review
    other_args = analyst.submit(fn, args={"x": 2})
    assert other_args.status == {fresh_domain.name: "pending"}
    changed = analyst.submit(fednb.function(_source("return df.age.mean() + 0"), name="avg_age"), args={"x": 1})
    assert changed.status == {fresh_domain.name: "pending"}
    assert changed.parts[0].state["code_hash"] != first.parts[0].state["code_hash"]
    # another analyst's approval is not reused
    bob = d.invite("bob")
    fed_b = fednb.connect([fresh_domain.url], token=bob)
    assert fed_b.dataset("patients").submit(fn, args={"x": 1}).status == {fresh_domain.name: "pending"}
    fed_b.close()
    d.close()


def test_resubmitting_a_pending_request_does_not_duplicate_it(fresh_domain, analyst):
    fn = fednb.function(_source(), name="avg_age")
    a = analyst.submit(fn)
    b = analyst.submit(fn)
    assert a.parts[0].id == b.parts[0].id
    d = fresh_domain.domain()
    assert len(d.requests(status="pending")) == 1
    d.close()


def test_owner_reviews_over_http_with_an_owner_token(fresh_domain, analyst):
    req = analyst.submit(fednb.function(_source(), name="avg_age"))
    owner = DomainClient(fresh_domain.url, fresh_domain.owner_token)
    pending = run(owner.requests("pending"))
    assert [r["id"] for r in pending] == [req.parts[0].id]
    assert pending[0]["code"] is None, "listings carry no code; the owner opens one request to read it"
    full = run(owner.request(req.parts[0].id))
    assert "df.age.mean()" in full["code"]
    denied = run(owner.deny(req.parts[0].id, "not today"))
    assert denied["status"] == "denied" and denied["decided_by"] == "owner"
    entries = run(owner.audit())
    assert [e["action"] for e in entries][-2:] == ["submit", "deny"]
    assert entries[-1]["actor"] == "owner:olga"


def test_policy_auto_approval_can_be_turned_off(tmp_path, alice_token):
    from fednb.demo import data
    from fednb.models import BUILTINS
    from tests.conftest import start_live

    default = "auto_approve = [" + ", ".join(f'"{b}"' for b in BUILTINS) + "]"
    live = start_live(tmp_path, "strict", data.hospital("hospital-b"), alice_token,
                      policy_edits={default: 'auto_approve = ["count"]'})
    try:
        fed = fednb.connect([live.url], token=alice_token)
        ds = fed.dataset("patients")
        assert ds.count().value == len(live.frame)
        with pytest.raises(fednb.NotEnoughDomains, match="waiting for the owner's review"):
            ds.mean("age", timeout=1)
        fed.close()
    finally:
        live.server.stop()


def test_misspelt_policy_setting_is_named(tmp_path):
    from fednb.domain import Domain

    d = Domain.init(tmp_path / "d", "d")
    text = (d.path / "policy.toml").read_text().replace("min_cohort = 10", "min_cohrt = 10")
    (d.path / "policy.toml").write_text(text)
    result = _cli("requests", str(d.path))
    assert result.returncode == 2
    assert "disclosure.min_cohrt" in result.stderr and "Traceback" not in result.stderr


def test_cli_init_add_invite_revoke(tmp_path):
    from fednb.demo import data

    folder = tmp_path / "cli-domain"
    assert _cli("init", str(folder), "--name", "cli-domain").returncode == 0
    text = (folder / "policy.toml").read_text()
    for setting in ("min_cohort = 10", "min_cell_count = 5", "auto_approve", "wall_seconds", "Default:"):
        assert setting in text
    csv = tmp_path / "p.csv"
    data.hospital("hospital-a").to_csv(csv, index=False)
    added = _cli("add-dataset", str(folder), str(csv), "--name", "patients", "--description", "x")
    assert added.returncode == 0 and "about 1200 rows" in added.stdout
    invited = _cli("invite", str(folder), "zoe")
    token = invited.stdout.strip()
    assert token.startswith("fednb_") and len(token) > 40
    assert token not in (folder / "domain.db").read_bytes().decode("latin-1"), "tokens are stored hashed"
    assert _cli("revoke", str(folder), "zoe").returncode == 0
    from fednb.domain import Domain

    assert Domain(folder).authenticate(token) is None
    assert _cli("init", str(folder), "--name", "again").returncode == 2
    missing = _cli("add-dataset", str(folder), str(tmp_path / "nope.csv"), "--name", "x")
    assert missing.returncode == 2 and "is not a file" in missing.stderr
