"""Approve one federated request on every domain the owner runs, after reading its code once.

An analyst's submission reaches each domain as its own request. An owner who runs several of those
domains (a hospital group, a teacher's demo) reads the code on one of them; this approves the same
request on the others: the pending request from the same analyst, for the same dataset, kind and
name, **and the same code hash** (SHA-256 of code and static arguments, :func:`fednb.models.code_hash`).
A domain whose matching request has another hash is not approved and is named, so the owner reads
that version too. Each domain records its own approval, bound to its request's hash, in its own
audit log (the approval goes through the domain's ordinary approve, folder or URL).

Used by ``fednb domain approve --all-domains`` and the review panel's "Approve on all my domains".
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

APPROVED = "approved"
HASH_DIFFERS = "hash_differs"
NOT_FOUND = "not_found"
ERROR = "error"


@dataclass
class Outcome:
    """What happened on one domain: ``status`` is approved, hash_differs, not_found or error."""

    domain: str
    status: str
    request: str | None = None
    code_hash: str | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def same_submission(candidate: dict, reference: dict) -> bool:
    """The copy of ``reference`` on another domain: pending, same analyst, dataset, kind and name."""
    return candidate.get("status") == "pending" and all(
        candidate.get(k) == reference.get(k) for k in ("analyst", "dataset", "kind", "name"))


async def approve_on(domain: str, source: Any, reference: dict, reason: str) -> list[Outcome]:
    """Approve on one domain the pending copies of ``reference`` whose code hash is the same."""
    try:
        listing = await source.requests()
    except Exception as exc:  # a domain down is named, the others still get their approval
        return [Outcome(domain, ERROR, message=_message(exc))]
    copies = [r for r in listing if same_submission(r, reference)]
    matching = [r for r in copies if r.get("code_hash") == reference["code_hash"]]
    if not copies:
        return [Outcome(domain, NOT_FOUND, message=(
            f"no pending {reference['kind']}:{reference['name']} from {reference['analyst']} "
            f"on {reference['dataset']}"))]
    if not matching:
        return [Outcome(domain, HASH_DIFFERS, r["id"], r.get("code_hash"),
                        f"{r['id']} has code hash {str(r.get('code_hash'))[:12]}…, not "
                        f"{reference['code_hash'][:12]}…: review it on its own")
                for r in copies]
    out = []
    for r in matching:
        try:
            decided = await source.approve(r["id"], reason)
            out.append(Outcome(domain, APPROVED, r["id"], decided.get("code_hash", r.get("code_hash"))))
        except Exception as exc:  # decided meanwhile, or the domain went away
            out.append(Outcome(domain, ERROR, r["id"], r.get("code_hash"), _message(exc)))
    return out


async def approve_everywhere(sources: dict[str, Any], domain: str, request_id: str, reason: str) -> list[Outcome]:
    """Approve ``request_id`` on ``domain`` and its copies with the same code hash on every other
    domain of ``sources`` ({domain name: FolderOwner or RemoteOwner}); one outcome per request."""
    reference = await sources[domain].request(request_id)
    if reference.get("status") != "pending":
        return [Outcome(domain, ERROR, request_id, reference.get("code_hash"),
                        f"{request_id} is {reference.get('status')}, not pending")]
    try:
        decided = await sources[domain].approve(request_id, reason)
        first = Outcome(domain, APPROVED, request_id, decided.get("code_hash", reference.get("code_hash")))
    except Exception as exc:  # decided meanwhile: the others are not approved on its word
        return [Outcome(domain, ERROR, request_id, reference.get("code_hash"), _message(exc))]
    others = await asyncio.gather(*(approve_on(name, source, reference, reason)
                                    for name, source in sources.items() if name != domain))
    return [first] + [o for found in others for o in found]


def summary(outcomes: list[Outcome]) -> list[str]:
    """One line per outcome, for the CLI."""
    words = {APPROVED: "approved", HASH_DIFFERS: "NOT approved (different code)", NOT_FOUND: "nothing to approve",
             ERROR: "NOT approved"}
    return [f"{o.domain}: {words[o.status]}" + (f" {o.request}" if o.request and o.status == APPROVED else "")
            + (f" (sha256 {o.code_hash[:12]}…)" if o.code_hash and o.status == APPROVED else "")
            + (f": {o.message}" if o.message else "") for o in outcomes]


def _message(exc: BaseException) -> str:
    from fednb.errors import DomainError, FednbError

    if isinstance(exc, DomainError):
        return exc.message
    if isinstance(exc, FednbError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
