"""Through a real domain server: a mock is served only when the owner's policy and approval allow,
withheld with a sentence when it is not, never longer than the listing's rounded row count, and its
approval is audited. An analyst cannot approve a mock or read a withheld one."""

from __future__ import annotations

import httpx
import pytest

import fednb
from fednb.demo import data
from fednb.domain.data.mock import canonical_hashes
from fednb.errors import DomainError
from tests.api_support import assert_clean_error, auth
from tests.conftest import make_domain, start_live

TIER_ONE = {"tier = 0": "tier = 1"}


@pytest.fixture
def tier_one(tmp_path, alice_token):
    live = start_live(tmp_path, "hospital-m", data.hospital("hospital-b"), alice_token, policy_edits=TIER_ONE)
    yield live
    live.server.stop()


def _mock(live, token: str) -> httpx.Response:
    return httpx.get(f"{live.url}/v1/datasets/patients/mock", headers=auth(token), timeout=30)


def test_a_tier_one_mock_is_withheld_until_the_owner_approves_it(tier_one, alice_token):
    r = _mock(tier_one, alice_token)
    assert_clean_error(r, 409)
    assert "waiting for the owner's approval" in r.json()["error"]
    meta = httpx.get(f"{tier_one.url}/v1/datasets/patients", headers=auth(alice_token), timeout=30).json()
    assert meta["mock"]["tier"] == 1 and meta["mock"]["status"] == "unreviewed"
    assert {"pmse_ratio", "correlation_error", "exact_match_rate", "closer_to_real"} <= set(meta["mock"])
    # the analyst's client says which domain withheld it and why
    with fednb.connect([tier_one.url], token=alice_token) as fed, pytest.raises(DomainError, match="hospital-m.*approval"):
        fed.dataset("patients").mock  # noqa: B018
    # the owner sees it before deciding; an analyst cannot approve (no such power over HTTP)
    assert _mock(tier_one, tier_one.owner_token).status_code == 200

    d = tier_one.domain()
    d.approve_mock("patients", "looked at the report")
    entry = [e for e in d.audit_entries() if e.action == "mock"][-1]
    assert entry.object_id == "patients" and entry.payload["approved"] is True
    assert entry.payload["report_sha256"] == d.mock_report("patients")["sha256"]
    d.close()

    meta = httpx.get(f"{tier_one.url}/v1/datasets/patients", headers=auth(alice_token), timeout=30).json()
    assert meta["mock"]["status"] == "approved" and "owner" not in str(meta["mock"])  # the owner's name stays private
    served = _mock(tier_one, alice_token)
    assert served.status_code == 200
    body = served.json()
    assert len(body["data"]) == 500 and body["columns"] == list(tier_one.frame.columns)
    with fednb.connect([tier_one.url], token=alice_token) as fed:
        mock = fed.dataset("patients").mock.drop(columns="domain")
    assert not set(canonical_hashes(mock.astype(tier_one.frame.dtypes.to_dict()))) & set(canonical_hashes(tier_one.frame))


def test_under_a_strict_policy_even_tier_zero_waits(tmp_path, alice_token):
    live = start_live(tmp_path, "strict", data.hospital("hospital-a"), alice_token,
                      policy_edits={'serve_unreviewed = "tier-0"': 'serve_unreviewed = "none"'})
    try:
        assert_clean_error(_mock(live, alice_token), 409)
        live.domain().approve_mock("patients")
        assert _mock(live, alice_token).status_code == 200
    finally:
        live.server.stop()


def test_a_mock_whose_risk_exceeds_the_policy_is_not_served_even_when_approved(tmp_path, alice_token):
    """Copies of one dataset under different names get mocks from different seeds, whose measured
    closer-to-real shares scatter around 0.5. With the policy's limit set between two of them, the
    one above is withheld, approval or not, with a message saying why; the one below is served."""
    from fednb.domain.process import DomainProcess

    d = make_domain(tmp_path, "cautious", data.hospital("hospital-b").head(600), token=alice_token)
    csv = tmp_path / "cautious-patients.csv"
    measured = {}
    for i in range(16):
        d.add_dataset(csv, f"copy{i}")
        measured[f"copy{i}"] = d.dataset(f"copy{i}").mock["closer_to_real"]
        if max(measured.values()) > 0.51 and min(measured.values()) < max(measured.values()) - 0.01:
            break
    high, low = max(measured, key=measured.get), min(measured, key=measured.get)
    assert measured[high] > 0.51, measured
    limit = (max(measured[low], 0.5) + measured[high]) / 2
    for name in (high, low):
        d.approve_mock(name)
    policy = d.path / "policy.toml"
    policy.write_text(policy.read_text().replace("max_closer_to_real = 0.6", f"max_closer_to_real = {limit:.4f}"))
    d.close()
    server = DomainProcess(d.path)
    server.start()
    try:
        withheld = httpx.get(f"{server.url}/v1/datasets/{high}/mock", headers=auth(alice_token), timeout=30)
        assert_clean_error(withheld, 409)
        assert "closer to the real rows than the policy allows" in withheld.json()["error"]
        served = httpx.get(f"{server.url}/v1/datasets/{low}/mock", headers=auth(alice_token), timeout=30)
        assert served.status_code == 200 and len(served.json()["data"]) == 500
    finally:
        server.stop()


def test_the_mock_length_does_not_reveal_the_exact_row_count(tmp_path, alice_token):
    lengths = set()
    for n in (41, 44):
        live = start_live(tmp_path / str(n), f"small-{n}", data.hospital("hospital-a").head(n), alice_token)
        try:
            body = _mock(live, alice_token).json()
            listed = httpx.get(f"{live.url}/v1/datasets/patients", headers=auth(alice_token), timeout=30).json()["rows"]
            lengths.add((len(body["data"]), listed))
        finally:
            live.server.stop()
    assert lengths == {(40, 40)}


def test_an_analyst_cannot_read_the_owners_mock_report_or_approve(fresh_domain, alice_token):
    """No HTTP route approves a mock or returns the full report; the owner acts on the domain folder."""
    for method, path in (("POST", "/v1/datasets/patients/mock/approve"), ("POST", "/v1/datasets/patients/mock"),
                         ("GET", "/v1/datasets/patients/mock/report")):
        r = httpx.request(method, f"{fresh_domain.url}{path}", headers=auth(alice_token), timeout=30)
        assert r.status_code in (404, 405), (path, r.status_code)


def test_the_owner_reads_the_report_at_add_dataset_and_approves_on_the_command_line(tmp_path):
    from click.testing import CliRunner

    from fednb.cli import main as cli
    from fednb.domain import Domain

    folder = tmp_path / "owner"
    csv = tmp_path / "patients.csv"
    data.hospital("hospital-a").to_csv(csv, index=False)
    runner = CliRunner()
    assert runner.invoke(cli, ["domain", "init", str(folder), "--name", "h"]).exit_code == 0
    (folder / "policy.toml").write_text((folder / "policy.toml").read_text().replace("tier = 0", "tier = 1"))
    added = runner.invoke(cli, ["domain", "add-dataset", str(folder), str(csv), "--name", "patients"])
    assert added.exit_code == 0, added.output
    for shown in ("mock: tier 1, 500 rows, unreviewed", "pMSE", "exact matches 0.0%", "closer to its own rows",
                  "analysts: the mock of 'patients' is waiting for the owner's approval", "approve-mock"):
        assert shown in added.output
    report = runner.invoke(cli, ["domain", "mock-report", str(folder), "patients"])
    assert report.exit_code == 0 and "least faithful columns" in report.output
    approved = runner.invoke(cli, ["domain", "approve-mock", str(folder), "patients", "--reason", "read it"])
    assert approved.exit_code == 0 and "analysts: served" in approved.output
    d = Domain(folder)
    assert [e.payload["reason"] for e in d.audit_entries() if e.action == "mock"] == ["read it"]
    assert d.verify_audit().ok
    missing = runner.invoke(cli, ["domain", "approve-mock", str(folder), "nosuch"])
    assert missing.exit_code != 0 and "no dataset 'nosuch'" in missing.output and "Traceback" not in missing.output
