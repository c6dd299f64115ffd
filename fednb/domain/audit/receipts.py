"""Signed receipts: a domain's statement, checkable offline by anyone, of what it released.

Each release gets one receipt, made in the releasing transaction: request, dataset, the analyst's
pseudonym, the SHA-256 of the approved code (the hash the approval is bound to) and of the released
result, the disclosure actions and privacy budget spent, and the audit entry that records the
release with the Merkle log's size and root right after it. The domain signs it with its Ed25519
identity (RFC 8032). A number quoted in a paper can then be traced to a signed, logged release: the
receipt's entry is in the published log (an inclusion proof) and the receipt's head is a prefix of
every later head (a consistency proof), RFC 9162 §2.1.

What a receipt does not say: that the result is correct or safe, only that this domain released
exactly these bytes for this approved code, and logged it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import TYPE_CHECKING, Any

from fednb.domain import identity as keys
from fednb.domain.audit import public_log
from fednb.domain.store import audit as audit_rows
from fednb.domain.store import requests as request_rows
from fednb.models import Request, canonical_json

if TYPE_CHECKING:
    from fednb.domain.domain import Domain
    from fednb.models import AuditEntry

RECEIPT = "fednb-receipt/1"
def result_sha256(result: Any, salt: str) -> str:
    """SHA-256 of a random salt and the result's canonical JSON (sorted keys, no spaces: the same on
    both sides of the wire). The salt travels to the analyst beside the signed body, never into the
    public export: a bare hash of a count or a mean is found by trying every likely value, which would
    publish the result to anyone; a salted one is a commitment only the analyst can open."""
    return hashlib.sha256(f"{salt}\n{canonical_json(result)}".encode()).hexdigest()


def sign(identity: keys.Identity, purpose: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` signed for one ``purpose`` (its format name is part of the signed bytes, so a
    signature made for one kind of statement never verifies as another)."""
    message = f"{purpose}\n".encode() + canonical_json(body).encode()
    return {"format": purpose, "body": body, "public_key": base64.b64encode(identity.public_key).decode(),
            "fingerprint": identity.fingerprint,
            "signature": base64.b64encode(identity.sign(message)).decode()}


def check(statement: Any, purpose: str, pinned: str | None = None) -> str | None:
    """Why ``statement`` is not a valid signed ``purpose`` (by the key ``pinned``), or None if it is."""
    if not isinstance(statement, dict) or statement.get("format") != purpose:
        return f"not a {purpose} statement"
    try:
        public_key = base64.b64decode(statement["public_key"], validate=True)
        signature = base64.b64decode(statement["signature"], validate=True)
        message = f"{purpose}\n".encode() + canonical_json(statement["body"]).encode()
    except (KeyError, TypeError, ValueError):
        return "malformed: it needs body, public_key and signature (base64)"
    fingerprint = keys.fingerprint(public_key)
    if pinned is not None and fingerprint != pinned:
        return f"signed by key {fingerprint}, not by the pinned {pinned}"
    if statement.get("fingerprint") not in (None, fingerprint):
        return "its fingerprint does not belong to its public key"
    if not keys.verify(public_key, message, signature):
        return "the signature does not match its content (forged or altered)"
    return None


def issue(tx: Any, domain: Domain, job: Any, request_id: str, outcome: Any,
          entry: AuditEntry) -> None:
    """Sign and store the receipt of a release (``entry``); other outcomes get none. The result is
    hashed as the analyst will parse it (through JSON: keys become strings)."""
    if outcome.action != "release":
        return
    req = request_rows.one(tx, request_id)
    size, root = public_log.head(tx)
    privacy = (outcome.disclosure or {}).get("privacy") or {}
    salt = secrets.token_hex(16)
    body = {
        "domain": domain.name, "request": request_id, "job": job["id"], "round": job["round"],
        "dataset": req["dataset"], "analyst": public_log.pseudonym(public_log.pseudonym_key(tx), req["analyst"]),
        "what": f"{req['kind']}:{req['name']}", "code_sha256": req["code_hash"],
        "result_sha256": result_sha256(json.loads(json.dumps(outcome.result, allow_nan=False)), salt),
        "weights_sha256": hashlib.sha256(outcome.blob).hexdigest() if outcome.blob is not None else None,
        "disclosure": outcome.disclosure or {},
        "epsilon_spent": privacy.get("epsilon", 0.0), "delta_spent": privacy.get("delta", 0.0),
        "audit_seq": entry.seq, "audit_chain_hash": entry.hash, "released_at": entry.time,
        "log_head": {"tree_size": size, "root_hash": root},
    }
    receipt = {**sign(domain.identity, RECEIPT, body), "result_salt": salt}
    audit_rows.add_receipt(tx, entry.seq, request_id, json.dumps(receipt))


def for_request(conn: Any, request_id: str) -> list[dict[str, Any]]:
    """The receipt of a one-off release, or of the latest round of a request that runs in rounds
    (a request is polled often: its earlier rounds' receipts are in the published export)."""
    return [json.loads(r) for r in audit_rows.latest_receipt(conn, request_id)]


def all_receipts(conn: Any) -> list[dict[str, Any]]:
    """Every receipt as it may be published: without the salt that would let anyone test guesses of a result."""
    found = (json.loads(r) for r in audit_rows.all_receipts(conn))
    return [{k: v for k, v in r.items() if k != "result_salt"} for r in found]


def attach(conn: Any, request: Request) -> Request:
    """The request with its receipts, as the API serves it."""
    found = for_request(conn, request.id)
    return request.model_copy(update={"receipts": found}) if found else request


def check_result(receipt: dict[str, Any], result: Any, pinned: str | None = None) -> list[str]:
    """Everything wrong with ``receipt`` as the receipt of ``result`` (empty: it holds)."""
    problem = check(receipt, RECEIPT, pinned)
    if problem:
        return [f"receipt: {problem}"]
    body = receipt["body"]
    if body.get("round") is not None:
        return []
    if not isinstance(receipt.get("result_salt"), str):
        return [f"receipt of request {body.get('request')}: it has no result_salt, so no result can be matched to "
                "it (the public export leaves the salt out; the analyst's copy has it)"]
    if result_sha256(result, receipt["result_salt"]) != body.get("result_sha256"):
        return [f"receipt of request {body.get('request')}: the result is not the one the domain released "
                "(its SHA-256 differs)"]
    return []
