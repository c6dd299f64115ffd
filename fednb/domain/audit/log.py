"""The tamper-evident audit log: a hash chain over every action of a domain.

Each row's hash covers its own fields and the previous row's hash, so editing, inserting or deleting
a row breaks the chain from that point on. The head (last seq and hash) is also kept in ``meta``;
deleting rows at the end is caught against it, and against a head the owner has published
(``fednb domain audit DIR --verify --head HASH``).

Every row is also a leaf of a Merkle tree (:mod:`fednb.domain.audit.public_log`), whose signed heads
and proofs let outsiders check that the log only ever grew (``fednb domain publish``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fednb.domain.audit import merkle, public_log
from fednb.domain.store import audit as audit_rows
from fednb.models import AuditEntry, canonical_json

GENESIS = "0" * 64

ACTIONS = (
    "init", "dataset", "invite", "revoke", "connect", "submit", "approve", "deny",
    "run", "release", "block", "fail", "requeue", "policy", "round", "finish",
    "bounds", "spend", "secagg",
    "mock",
)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def entry_hash(seq: int, time: str, actor: str, action: str, object_id: str | None,
               payload_hash: str, prev_hash: str) -> str:
    return sha256_hex(canonical_json([seq, time, actor, action, object_id, payload_hash, prev_hash]))


def append(conn: Any, actor: str, action: str, object_id: str | None = None,
           payload: dict[str, Any] | None = None) -> AuditEntry:
    """Append one entry. Call inside the transaction that makes the change it records."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    payload = payload or {}
    newest = audit_rows.last(conn)
    seq, prev = (1, GENESIS) if newest is None else (newest[0] + 1, newest[1])
    now = datetime.now(UTC).isoformat(timespec="microseconds")
    payload_json = canonical_json(payload)
    payload_hash = sha256_hex(payload_json)
    digest = entry_hash(seq, now, actor, action, object_id, payload_hash, prev)
    audit_rows.insert(conn, (seq, now, actor, action, object_id, payload_json, payload_hash, prev, digest))
    audit_rows.set_meta(conn, "audit_head", f"{seq}:{digest}")
    public_log.extend(conn, seq, {"seq": seq, "time": now, "actor": actor, "action": action, "object_id": object_id,
                                  "payload_hash": payload_hash, "prev_hash": prev, "hash": digest})
    return AuditEntry(seq=seq, time=now, actor=actor, action=action, object_id=object_id,
                      payload=payload, payload_hash=payload_hash, prev_hash=prev, hash=digest)


def entries(conn: Any, *, since: int = 0, limit: int | None = None) -> list[AuditEntry]:
    import json

    return [
        AuditEntry(seq=r["seq"], time=r["time"], actor=r["actor"], action=r["action"],
                   object_id=r["object_id"], payload=json.loads(r["payload_json"]),
                   payload_hash=r["payload_hash"], prev_hash=r["prev_hash"], hash=r["hash"])
        for r in audit_rows.rows(conn, since=since, limit=limit)
    ]


@dataclass
class Verification:
    ok: bool
    entries: int
    head: str
    problems: list[str]

    def __str__(self) -> str:
        if self.ok:
            return f"audit log intact: {self.entries} entries, head {self.head}"
        return "audit log BROKEN:\n" + "\n".join(f"  - {p}" for p in self.problems)


def verify(conn: Any, *, expected_head: str | None = None) -> Verification:
    """Recompute the chain. Reports every break: edited payloads, edited fields, gaps, a moved head."""
    problems: list[str] = []
    published_seq, _, published_hash = (expected_head or "").rpartition(":")
    published_found = expected_head is None
    prev = GENESIS
    expected_seq = 1
    count = 0
    for r in audit_rows.rows(conn):
        count += 1
        seq = r["seq"]
        if seq != expected_seq:
            problems.append(f"entry {seq}: expected entry {expected_seq} here (rows deleted or inserted)")
        if sha256_hex(r["payload_json"]) != r["payload_hash"]:
            problems.append(f"entry {seq}: payload does not match its hash (edited)")
        if r["prev_hash"] != prev:
            problems.append(f"entry {seq}: does not link to the entry before it")
        recomputed = entry_hash(seq, r["time"], r["actor"], r["action"], r["object_id"],
                                r["payload_hash"], r["prev_hash"])
        if recomputed != r["hash"]:
            problems.append(f"entry {seq}: fields do not match its hash (edited)")
        if not published_found and r["hash"] == published_hash and published_seq in ("", str(seq)):
            published_found = True
        prev = r["hash"]
        expected_seq = seq + 1
    stored = audit_rows.get_meta(conn, "audit_head")
    actual = f"{count}:{prev}" if count else None
    if stored != actual:
        problems.append(f"the recorded head is {stored} but the log ends at {actual} (rows removed at the end)")
    if not published_found:
        problems.append(f"the published head {expected_head} is not in the log (rows edited or removed)")
    problems += _tree_problems(conn)
    return Verification(ok=not problems, entries=count, head=prev, problems=problems)


def _tree_problems(conn: Any) -> list[str]:
    """The Merkle root kept with every append must be the root of the rows as they are now."""
    size, recorded = public_log.head(conn)
    if size == 0:
        return []  # a log made before the tree existed: it is built on the next append
    leaves = public_log.leaves(conn)
    if size > len(leaves):
        return [f"the Merkle tree recorded {size} entries but the log holds {len(leaves)}"]
    actual = merkle.Tree(leaves).root_at(size).hex()
    if actual != recorded:
        return [f"the Merkle root of the first {size} entries is {actual}, not the recorded {recorded} "
                "(rows edited)"]
    return []
