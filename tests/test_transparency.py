"""Verifiable by anyone: signed receipts of releases, a Merkle transparency log (RFC 9162) that
outsiders check from a static export, and the sovereignty statement. Every tamper case is caught
by ``fednb verify`` run as a command, with nothing but files."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import fednb
from fednb.demo import data
from fednb.domain import Domain
from fednb.domain.audit import log as audit
from fednb.domain.audit import merkle, public_log, receipts, sovereignty
from fednb.domain.identity import Identity
from fednb.models import canonical_json
from tests.conftest import make_domain, start_live


def fednb_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fednb", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def fingerprint(path: Path) -> str:
    out = fednb_cli("domain", "info", path, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["fingerprint"]


@pytest.fixture(scope="module")
def released(tmp_path_factory, alice_token):
    """A served domain, one count released to alice over HTTP, saved with its receipts, and published."""
    root = tmp_path_factory.mktemp("transparency")
    live = start_live(root, "hospital-r", data.hospital("hospital-a"), alice_token)
    try:
        fed = fednb.connect([live.url], token=alice_token)
        pooled = fed.dataset("patients").count()
        pooled.request.save(root / "RESULT.json")
        noisy = fed.dataset("patients").count(epsilon=0.5)
        noisy.request.save(root / "NOISY.json")
        for name, pooled_value in (("MEAN", fed.dataset("patients").mean("age")),
                                   ("HIST", fed.dataset("patients").histogram("age", bins=[0, 30, 50, 70, 120]))):
            assert all(p.verified for p in pooled_value.request.parts)  # floats and infinities hash the same
            pooled_value.request.save(root / f"{name}.json")
        fed.close()
        yield live, pooled, root
    finally:
        live.server.stop()


# -- receipts ---------------------------------------------------------------------------------------

def test_a_release_over_http_carries_a_receipt_verified_offline_from_the_cli(released):
    live, pooled, root = released
    (part,) = pooled.request.parts
    assert part.verified
    (receipt,) = pooled.receipts[live.name]
    body = receipt["body"]
    d = live.domain()
    req = d.request(part.id)
    entry = d.audit_entries()[body["audit_seq"] - 1]
    assert (entry.action, entry.object_id, entry.hash) == ("release", part.id, body["audit_chain_hash"])
    assert body["code_sha256"] == req.code_hash and body["what"] == "builtin:count"
    assert body["result_sha256"] == receipts.result_sha256(part.state["result"], receipt["result_salt"])
    assert body["analyst"].startswith("a-") and "alice" not in json.dumps(receipt)
    assert receipt["fingerprint"] == d.identity.fingerprint

    out = fednb_cli("verify", root / "RESULT.json", "--pin", f"{live.name}={fingerprint(live.path)}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"ok: {live.name}: request {part.id} (builtin:count on patients)" in out.stdout


def test_the_receipt_is_served_by_the_api_and_states_the_privacy_spent(released):
    import httpx

    live, pooled, root = released
    (part,) = pooled.request.parts
    answer = httpx.get(f"{live.url}/v1/requests/{part.id}", headers={"Authorization": f"Bearer {live.token}"})
    assert answer.status_code == 200 and answer.json()["receipts"] == part.receipts
    noisy = json.loads((root / "NOISY.json").read_text())["domains"][live.name]
    (receipt,) = noisy["receipts"]
    assert receipt["body"]["epsilon_spent"] == 0.5
    assert receipt["body"]["disclosure"]["privacy"]["mechanism"] == "laplace"
    for saved in ("NOISY.json", "MEAN.json", "HIST.json"):
        out = fednb_cli("verify", root / saved, "--pin", fingerprint(live.path))
        assert out.returncode == 0, out.stdout


def test_the_widget_marks_only_a_result_its_receipt_covers(released):
    pytest.importorskip("ipywidgets")
    from fednb.client.requests import Part
    from fednb.widgets.tracker import released as released_html

    _, pooled, _ = released
    (part,) = pooled.request.parts
    assert "signed ✓" in released_html(part)
    changed = Part(part.client, part.id, {**part.state, "result": {**part.state["result"], "n": 1}})
    assert not changed.verified and "signed ✓" not in released_html(changed)


def _edited_result(root: Path, name: str, edit) -> Path:
    saved = json.loads((root / "RESULT.json").read_text())
    edit(saved)
    path = root / name
    path.write_text(json.dumps(saved))
    return path


def test_a_result_changed_after_release_is_detected(released):
    live, _, root = released

    def inflate(saved):
        part = saved["domains"][live.name]
        part["result"]["n"] = part["result"]["n"] + 100

    out = fednb_cli("verify", _edited_result(root, "changed.json", inflate))
    assert out.returncode == 1
    assert "the result is not the one the domain released" in out.stdout


def test_a_forged_receipt_is_detected(released):
    live, _, root = released

    def spend_less(saved):
        saved["domains"][live.name]["receipts"][0]["body"]["epsilon_spent"] = -1.0

    out = fednb_cli("verify", _edited_result(root, "forged.json", spend_less))
    assert out.returncode == 1 and "the signature does not match its content" in out.stdout

    forger = Identity(Ed25519PrivateKey.generate())  # a receipt re-signed by another key, result to match

    def resign(saved):
        part = saved["domains"][live.name]
        part["result"]["n"] = 99999
        body = {**part["receipts"][0]["body"], "result_sha256": receipts.result_sha256(part["result"], "salt")}
        part["receipts"][0] = {**receipts.sign(forger, receipts.RECEIPT, body), "result_salt": "salt"}

    path = _edited_result(root, "resigned.json", resign)
    out = fednb_cli("verify", path, "--pin", f"{live.name}={fingerprint(live.path)}")
    assert out.returncode == 1 and f"not by the pinned {fingerprint(live.path)}" in out.stdout
    unpinned = fednb_cli("verify", path)  # without a pin it is only "signed by some key": say so
    assert unpinned.returncode == 0 and forger.fingerprint in unpinned.stdout and "not pinned" in unpinned.stdout


def test_published_log_proves_the_receipt_and_names_nobody(released):
    live, pooled, root = released
    out_dir = root / "public"
    published = fednb_cli("domain", "publish", live.path, out_dir)
    assert published.returncode == 0, published.stderr
    fp = fingerprint(live.path)
    out = fednb_cli("verify", root / "RESULT.json", "--log", out_dir, "--pin", fp)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 release receipt(s) proven in it" in out.stdout  # count, noisy count, mean, histogram
    releases = [e.seq for e in live.domain().audit_entries() if e.action == "release"]
    proven = json.loads((out_dir / "receipts.json").read_text())
    assert [p["receipt"]["body"]["audit_seq"] for p in proven] == releases  # every release, and nothing else
    elsewhere = fednb_cli("verify", root / "RESULT.json", "--log", root / "no-such-log")
    assert elsewhere.returncode == 2 and "cannot read" in elsewhere.stderr
    (part,) = pooled.request.parts
    bare = [hashlib.sha256(form.encode()).hexdigest()  # what anyone could test guesses of the count against
            for form in (json.dumps(part.state["result"]), canonical_json(part.state["result"]))]
    for f in out_dir.iterdir():
        text = f.read_text()
        assert "alice" not in text and "olga" not in text, f.name
        assert not any(h in text for h in bare) and "result_salt" not in text, f.name
    report = json.loads((out_dir / "report.json").read_text())
    sov = report["sovereignty"]
    assert sov["isolation"] in ("strong", "standard", "minimal", "none")  # the server recorded it
    assert sov["network"]["outbound_attempts"] == 0 and sov["network"]["watching_since"]
    assert {d["name"] for d in sov["software"]["distributions"]} >= {"fednb", "cryptography", "pydantic"}
    assert "Registro público de transparencia" in (out_dir / "index.es.html").read_text()
    assert report["names"] == {}


# -- the log ---------------------------------------------------------------------------------------

@pytest.fixture
def domain_dir(tmp_path, alice_token) -> Path:
    d = make_domain(tmp_path, "hospital-l", data.hospital("hospital-a"), token=alice_token)
    d.invite("bob")
    d.close()
    return tmp_path / "hospital-l"


def _publish(path: Path, out: Path) -> None:
    result = fednb_cli("domain", "publish", path, out)
    assert result.returncode == 0, result.stdout + result.stderr


def rewrite_history(path: Path, seq: int, payload: dict) -> None:
    """What an owner who edits the past does to cover it: a new payload for entry ``seq``, every
    later chain hash recomputed, the recorded head, Merkle state and published heads replaced."""
    conn = sqlite3.connect(path / "domain.db")
    conn.row_factory = sqlite3.Row
    rows = conn.execute("SELECT * FROM audit ORDER BY seq").fetchall()
    prev = audit.GENESIS
    for r in rows:
        payload_json = canonical_json(payload) if r["seq"] == seq else r["payload_json"]
        payload_hash = audit.sha256_hex(payload_json)
        digest = audit.entry_hash(r["seq"], r["time"], r["actor"], r["action"], r["object_id"], payload_hash, prev)
        conn.execute("UPDATE audit SET payload_json = ?, payload_hash = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                     (payload_json, payload_hash, prev, digest, r["seq"]))
        prev = digest
    conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'", (f"{rows[-1]['seq']}:{prev}",))
    conn.execute("DELETE FROM meta WHERE key = 'merkle_frontier'")
    conn.execute("DELETE FROM published_heads")
    conn.commit()
    conn.close()


def test_an_edited_entry_in_the_export_is_detected(domain_dir, tmp_path):
    _publish(domain_dir, tmp_path / "out")
    log = json.loads((tmp_path / "out/log.json").read_text())
    invite = next(e for e in log["entries"] if e["action"] == "invite")
    invite["action"] = "revoke"
    (tmp_path / "out/log.json").write_text(json.dumps(log))
    out = fednb_cli("verify", "--log", tmp_path / "out")
    assert out.returncode == 1 and "do not hash to the signed root" in out.stdout


def test_a_rewritten_row_is_caught_against_the_head_a_watchdog_kept(domain_dir, tmp_path):
    _publish(domain_dir, tmp_path / "monday")
    shutil.copy(tmp_path / "monday/sth.json", tmp_path / "kept-sth.json")
    d = Domain(domain_dir)
    d.invite("carol")  # the log grows honestly...
    d.close()
    rewrite_history(domain_dir, 2, {"description": "a different dataset"})  # ...and its past is rewritten
    assert Domain(domain_dir).verify_audit().ok  # a covered rewrite passes the owner's own chain check
    _publish(domain_dir, tmp_path / "tuesday")
    alone = fednb_cli("verify", "--log", tmp_path / "tuesday")
    assert alone.returncode == 0  # re-signed and self-consistent: only an earlier head can tell
    out = fednb_cli("verify", "--log", tmp_path / "tuesday", "--head", tmp_path / "kept-sth.json")
    assert out.returncode == 1 and "is not an extension of the earlier head" in out.stdout


def test_a_forked_log_two_heads_for_one_size_is_detected(domain_dir, tmp_path):
    _publish(domain_dir, tmp_path / "a")
    rewrite_history(domain_dir, 3, {"role": "owner"})
    _publish(domain_dir, tmp_path / "b")
    a, b = (json.loads((tmp_path / x / "sth.json").read_text())["body"] for x in "ab")
    assert a["tree_size"] == b["tree_size"] and a["root_hash"] != b["root_hash"]
    out = fednb_cli("verify", "--log", tmp_path / "b", "--head", tmp_path / "a/sth.json")
    assert out.returncode == 1 and "FORK" in out.stdout


def test_an_honest_log_extends_every_earlier_head(domain_dir, tmp_path):
    _publish(domain_dir, tmp_path / "a")
    d = Domain(domain_dir)
    for name in ("carol", "dan", "erin"):
        d.invite(name)
    d.close()
    _publish(domain_dir, tmp_path / "b")
    out = fednb_cli("verify", "--log", tmp_path / "b", "--head", tmp_path / "a",  # a kept export folder
                    "--pin", fingerprint(domain_dir))
    assert out.returncode == 0 and "extends 1 earlier head" in out.stdout, out.stdout
    assert len(json.loads((tmp_path / "b/consistency.json").read_text())) == 1


def test_entries_removed_at_the_end_are_detected(domain_dir, tmp_path):
    d = Domain(domain_dir)
    d.invite("carol")
    d.close()
    _publish(domain_dir, tmp_path / "a")
    conn = sqlite3.connect(domain_dir / "domain.db")
    last = conn.execute("SELECT seq, prev_hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    conn.execute("DELETE FROM audit WHERE seq = ?", (last[0],))
    conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'", (f"{last[0] - 1}:{last[1]}",))
    conn.execute("DELETE FROM meta WHERE key = 'merkle_frontier'")
    conn.execute("DELETE FROM published_heads")
    conn.commit()
    conn.close()
    _publish(domain_dir, tmp_path / "b")
    out = fednb_cli("verify", "--log", tmp_path / "b", "--head", tmp_path / "a/sth.json")
    assert out.returncode == 1 and "entries removed" in out.stdout


def test_the_owner_cannot_publish_over_its_own_earlier_head(domain_dir, tmp_path):
    _publish(domain_dir, tmp_path / "a")
    conn = sqlite3.connect(domain_dir / "domain.db")
    conn.execute("UPDATE audit SET time = '2020-01-01T00:00:00+00:00' WHERE seq = 2")
    conn.commit()
    conn.close()
    result = fednb_cli("domain", "publish", domain_dir, tmp_path / "b")
    assert result.returncode == 2 and "rows were edited" in result.stderr and "Traceback" not in result.stderr
    check = fednb_cli("domain", "audit", domain_dir, "--verify")
    assert check.returncode == 1 and "Merkle root" in check.stdout


def test_a_forged_tree_head_is_detected(domain_dir, tmp_path):
    _publish(domain_dir, tmp_path / "a")
    sth = json.loads((tmp_path / "a/sth.json").read_text())
    sth["body"]["tree_size"] += 1
    (tmp_path / "a/sth.json").write_text(json.dumps(sth))
    out = fednb_cli("verify", "--log", tmp_path / "a")
    assert out.returncode == 1 and "sth.json: the signature does not match" in out.stdout


def test_analysts_are_named_only_when_the_policy_says_so(tmp_path, alice_token):
    d = make_domain(tmp_path, "hospital-n", data.hospital("hospital-a"), token=alice_token,
                    policy_edits={"name_analysts = false": "name_analysts = true"})
    d.close()
    _publish(tmp_path / "hospital-n", tmp_path / "out")
    names = json.loads((tmp_path / "out/report.json").read_text())["names"]
    assert "alice" in names.values()
    log = (tmp_path / "out/log.json").read_text()
    assert "alice" not in log  # the log itself never changes with the policy: its leaves stay the same


def test_a_domain_made_before_the_tree_gets_it_built(domain_dir):
    conn = sqlite3.connect(domain_dir / "domain.db")
    conn.execute("DELETE FROM meta WHERE key IN ('merkle_frontier', 'pseudonym_key')")
    conn.commit()
    conn.close()
    d = Domain(domain_dir)
    assert d.verify_audit().ok
    info = json.loads(fednb_cli("domain", "info", domain_dir, "--json").stdout)
    assert info["log"] == {"entries": len(d.audit_entries()),
                           "root_hash": merkle.root(public_log.leaves(d.store.connect())).hex()}
    d.invite("carol")
    store = d.store.connect()
    size, root = public_log.head(store)
    assert size == len(d.audit_entries()) and root == merkle.root(public_log.leaves(store)).hex()
    assert d.verify_audit().ok


def test_bad_input_to_verify_is_one_clear_line(tmp_path):
    (tmp_path / "x.json").write_text("not json")
    out = fednb_cli("verify", tmp_path / "x.json")
    assert out.returncode == 2 and "is not JSON" in out.stderr and "Traceback" not in out.stderr
    out = fednb_cli("verify", "--log", tmp_path / "missing")
    assert out.returncode == 2 and "cannot read" in out.stderr and "Traceback" not in out.stderr
    out = fednb_cli("verify", tmp_path / "x.json", "--pin", "abc")
    assert out.returncode == 2 and "SHA256:" in out.stderr


# -- Merkle proofs against RFC 9162's definitions ----------------------------------------------------

def _mth(d: list[bytes]) -> bytes:
    if not d:
        return merkle.EMPTY_ROOT
    if len(d) == 1:
        return merkle.leaf_hash(d[0])
    k = 1 << ((len(d) - 1).bit_length() - 1)
    return merkle.node_hash(_mth(d[:k]), _mth(d[k:]))


def test_merkle_roots_and_proofs_follow_rfc_9162():
    for n in (1, 2, 3, 5, 8, 13, 33):
        d = [os.urandom(8) for _ in range(n)]
        leaves = [merkle.leaf_hash(x) for x in d]
        tree = merkle.Tree(leaves)
        frontier: list = []
        for leaf in leaves:
            frontier = merkle.frontier_push(frontier, leaf)
        assert tree.root() == _mth(d) == merkle.frontier_root(frontier)
        for i in range(n):
            proof = tree.inclusion_proof(i)
            assert merkle.verify_inclusion(leaves[i], i, n, proof, tree.root())
            assert not merkle.verify_inclusion(merkle.leaf_hash(b"other"), i, n, proof, tree.root())
        for m in range(1, n + 1):
            proof = tree.consistency_proof(m)
            assert merkle.verify_consistency(m, n, _mth(d[:m]), tree.root(), proof)
            if m < n:
                assert not merkle.verify_consistency(m, n, _mth([b"x"] + d[1:m]), tree.root(), proof)
    # a leaf can never pass for an inner node (the 0x00 / 0x01 prefixes)
    a, b = merkle.leaf_hash(b"a"), merkle.leaf_hash(b"b")
    assert merkle.leaf_hash(a + b) != merkle.node_hash(a, b)


# -- outbound connections -------------------------------------------------------------------------

def test_outbound_connection_attempts_are_recorded(tmp_path):
    sovereignty.watch(tmp_path, {"level": "none"})
    try:
        for host in ("192.0.2.1", "127.0.0.1"):  # TEST-NET-1 (RFC 5737): UDP connect sends nothing
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.connect((host, 9))
            s.close()
    finally:
        sovereignty.unwatch()
    lines = [json.loads(x) for x in (tmp_path / sovereignty.OUTBOUND_FILE).read_text().splitlines()]
    assert [x["to"] for x in lines] == ["192.0.2.1:9"]


def test_receipt_signatures_cover_the_statement_kind(tmp_path):
    key = Identity(Ed25519PrivateKey.generate())
    statement = receipts.sign(key, receipts.RECEIPT, {"x": 1})
    assert receipts.check(statement, receipts.RECEIPT, key.fingerprint) is None
    as_head = {**statement, "format": "fednb-tree-head/1"}  # the same signature cannot pass as a tree head
    assert receipts.check(as_head, "fednb-tree-head/1") == "the signature does not match its content (forged or altered)"
    bad = {**statement, "signature": base64.b64encode(b"0" * 64).decode()}
    assert receipts.check(bad, receipts.RECEIPT) is not None
