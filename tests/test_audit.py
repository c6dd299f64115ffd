"""The audit log is a hash chain: every action is recorded, and any edit, insertion or deletion is detected."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fednb.demo import data
from fednb.domain import Domain
from fednb.domain.store.database import Store
from fednb.models import RequestIn
from tests.conftest import make_domain


@pytest.fixture
def audited(tmp_path, store_url) -> Domain:
    """A domain with a few audited steps, on each store (SQLite, PostgreSQL)."""
    d = make_domain(tmp_path, "audited", data.hospital("hospital-b"), token=None, store=store_url)
    d.invite("alice")
    d.connect("alice")
    pending, _ = d.receive("alice", RequestIn(dataset="patients", kind="function", name="f",
                                             code="def f(df):\n    return 1\n"))
    d.deny(pending.id, "no")
    d.receive("alice", RequestIn(dataset="patients", kind="builtin", name="count"))
    return d


def _verify(d: Domain, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fednb", "domain", "audit", str(d.path), "--verify", *args],
                          capture_output=True, text=True, timeout=60)


def _sql(d: Domain, statement: str, params: tuple = ()) -> None:
    """An insider with write access to the database, behind fednb's back."""
    store = Store.of_folder(d.path)
    with store.transaction() as tx:
        tx.execute(statement, params)
    store.close()


def test_every_step_is_recorded_and_the_chain_verifies(audited):
    actions = [e.action for e in audited.audit_entries()]
    assert actions == ["init", "dataset", "invite", "connect", "submit", "deny", "submit", "approve"]
    result = _verify(audited)
    assert result.returncode == 0 and "intact: 8 entries" in result.stdout


@pytest.mark.parametrize("tamper,problem", [
    ("UPDATE audit SET payload_json = replace(payload_json, 'no', 'ok') WHERE action = 'deny'", "payload"),
    ("UPDATE audit SET actor = 'someone-else' WHERE seq = 4", "fields"),
    ("UPDATE audit SET time = '2020-01-01T00:00:00+00:00' WHERE seq = 2", "fields"),
    ("DELETE FROM audit WHERE seq = 5", "deleted or inserted"),
    ("DELETE FROM audit WHERE seq = 8", "removed at the end"),
    ("INSERT INTO audit SELECT 9, time, actor, action, object_id, payload_json, payload_hash, hash, hash FROM audit WHERE seq = 8",
     "removed at the end"),
])
def test_tampering_is_detected(audited, tamper, problem):
    _sql(audited, tamper)
    result = _verify(audited)
    assert result.returncode == 1
    assert "BROKEN" in result.stdout and problem in result.stdout


def test_a_rewritten_chain_is_caught_against_the_published_head(audited):
    published = audited.verify_audit().head
    # an insider deletes the last entry and fixes up the stored head ...
    _sql(audited, "DELETE FROM audit WHERE seq = 8")
    last = audited.store.query_one("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
    _sql(audited, "UPDATE meta SET value = ? WHERE key = 'audit_head'", (f"{last['seq']}:{last['hash']}",))
    merkle_says = _verify(audited)  # the Merkle tree kept with each append still counts 8 entries
    assert merkle_says.returncode == 1 and "the Merkle tree recorded 8 entries" in merkle_says.stdout
    _sql(audited, "DELETE FROM meta WHERE key = 'merkle_frontier'")  # ... and the tree's record too:
    assert _verify(audited).returncode == 0  # the log alone looks fine ...
    # ... but not against the head the owner published
    result = _verify(audited, "--head", f"8:{published}")
    assert result.returncode == 1 and "published head" in result.stdout
