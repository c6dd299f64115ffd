"""The audit log as a Merkle tree outsiders can check (RFC 9162 hashing, see :mod:`merkle`).

Each audit row is one leaf. The leaf is the row's *public form*: its sequence number, time, action,
object, the SHA-256 of its payload, its hash-chain link and hash, and its actor, with people
replaced by stable pseudonyms (HMAC-SHA-256 under a random key kept in the domain, RFC 2104), so
the log can be published without naming analysts and a pseudonym cannot be recomputed from a list
of guessed names. The tree's compact range (at most log2 n subtree roots) is kept in ``meta`` and
extended in the transaction of every append, so the current root costs nothing to read. Domains
made before the tree existed get it built from their rows on the first append or read.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

from fednb.domain.audit import merkle
from fednb.domain.store import audit as audit_rows
from fednb.models import canonical_json

SYSTEM_ACTORS = frozenset({"domain", "policy", "owner", "prior approval"})
NAMED_OBJECTS = frozenset({"invite", "revoke"})  # actions whose object is a person
_KEY = "pseudonym_key"
_FRONTIER = "merkle_frontier"


def pseudonym_key(conn: Any) -> bytes:
    """The domain's pseudonym key, made on first use (call inside a write transaction to make it)."""
    found = audit_rows.get_meta(conn, _KEY)
    if found is not None:
        return bytes.fromhex(found)
    return bytes.fromhex(audit_rows.add_meta_once(conn, _KEY, secrets.token_bytes(32).hex()))


def pseudonym(key: bytes, name: str) -> str:
    """``a-`` and 64 bits of HMAC-SHA-256(key, name): one stable pseudonym per person and domain."""
    return "a-" + hmac.new(key, name.encode(), hashlib.sha256).hexdigest()[:16]


def public_actor(key: bytes, actor: str) -> str:
    if actor in SYSTEM_ACTORS:
        return actor
    role, sep, who = actor.partition(":")
    if sep and role == "owner":
        return "owner:" + pseudonym(key, who)
    return pseudonym(key, actor)


def public_entry(key: bytes, row: Any) -> dict[str, Any]:
    """The leaf's content: an audit row without its payload and with people pseudonymous."""
    obj = row["object_id"]
    if obj is not None and row["action"] in NAMED_OBJECTS:
        obj = pseudonym(key, obj)
    return {"seq": row["seq"], "time": row["time"], "actor": public_actor(key, row["actor"]),
            "action": row["action"], "object": obj, "payload_sha256": row["payload_hash"],
            "prev": row["prev_hash"], "chain": row["hash"]}


def leaf_of(entry: dict[str, Any]) -> bytes:
    """The leaf hash of a public entry: anyone holding the export recomputes it."""
    return merkle.leaf_hash(canonical_json(entry).encode())


def _frontier(conn: Any) -> tuple[int, list[tuple[int, bytes]]] | None:
    found = audit_rows.get_meta(conn, _FRONTIER)
    if found is None:
        return None
    stored = json.loads(found)
    return stored["size"], [(s, bytes.fromhex(h)) for s, h in stored["nodes"]]


def _save(conn: Any, size: int, nodes: list[tuple[int, bytes]]) -> None:
    value = json.dumps({"size": size, "nodes": [[s, h.hex()] for s, h in nodes]})
    audit_rows.set_meta(conn, _FRONTIER, value)


def extend(conn: Any, seq: int, row: dict[str, Any] | None = None) -> None:
    """Add row ``seq`` (just inserted; ``row`` its columns, if at hand) to the tree; build the tree
    first where it is missing."""
    key = pseudonym_key(conn)
    found = _frontier(conn)
    if found is None or found[0] != seq - 1:
        nodes: list[tuple[int, bytes]] = []
        for leaf in leaves(conn, key):
            nodes = merkle.frontier_push(nodes, leaf)
        _save(conn, seq, nodes)
        return
    if row is None:
        row = audit_rows.row(conn, seq)
    _save(conn, seq, merkle.frontier_push(found[1], leaf_of(public_entry(key, row))))


def leaves(conn: Any, key: bytes | None = None) -> list[bytes]:
    key = key if key is not None else pseudonym_key(conn)
    return [leaf_of(public_entry(key, r)) for r in _rows(conn)]


def public_entries(conn: Any) -> list[dict[str, Any]]:
    key = pseudonym_key(conn)
    return [public_entry(key, r) for r in _rows(conn)]


def _rows(conn: Any):
    return audit_rows.public_rows(conn)


def head(conn: Any) -> tuple[int, str]:
    """(tree size, root hash hex) as last recorded; ``(0, root of the empty tree)`` for a new log."""
    found = _frontier(conn)
    if found is None:
        return 0, merkle.EMPTY_ROOT.hex()
    return found[0], merkle.frontier_root(found[1]).hex()
