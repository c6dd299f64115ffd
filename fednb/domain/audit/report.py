"""The transparency report: what was asked of a domain, what its owner decided and why, what left it.

Built from the audit log (the hash chain, verified first) and the current state of each request. It
carries the chain's head, ``SEQ:HASH``, so that anyone holding the published report can ask the owner
to run ``fednb domain audit DIR --verify --head SEQ:HASH``: a log edited after publication fails.

A report is meant to be published, so it leaves out what only the analyst may see: results (their
SHA-256 stands in) and the text of errors raised by analyst code (it can carry data; the exception's
type stays). Descriptions and deny reasons are kept: they say what was asked and why it was refused.
Render it with :func:`fednb.domain.audit.report_html.render` or :func:`to_json`.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fednb._version import __version__
from fednb.domain.store import requests as request_rows
from fednb.models import STATUSES

if TYPE_CHECKING:
    from fednb.domain.domain import Domain

FORMAT = "fednb-transparency-report/1"
_ANALYST_TEXT = re.compile(r"^(your code raised [A-Za-z_][\w.]*)")


def public_reason(reason: str | None) -> str | None:
    """A block or failure reason without the message analyst code wrote (it may carry rows)."""
    if not reason:
        return reason
    m = _ANALYST_TEXT.match(reason)
    return m.group(1) if m else reason


def build(domain: Domain) -> dict[str, Any]:
    """The report as plain data (the JSON export is exactly this)."""
    verified = domain.verify_audit()
    entries = domain.audit_entries()
    head_seq = entries[-1].seq if entries else 0
    stored = {r["id"]: r for r in request_rows.everything_for_report(domain.store.connect())}

    requests: dict[str, dict[str, Any]] = {}
    decisions, releases, blocks, failures = [], [], [], []
    access: dict[str, list] = {"invites": [], "revocations": []}
    connects: Counter[str] = Counter()
    for e in entries:
        rid, p = e.object_id, e.payload
        req = requests.get(rid or "")
        if e.action == "submit":
            requests[rid] = req = {
                "id": rid, "analyst": e.actor, "dataset": p.get("dataset"), "kind": p.get("kind"),
                "name": p.get("name"), "code_hash": p.get("code_hash"), "description": p.get("description", ""),
                "submitted": e.time, "submit_seq": e.seq, "decided_by": None, "decision_reason": None,
                "outcome": None, "outcome_reason": None, "result_sha256": None, "runs": 0}
        elif e.action in ("approve", "deny") and req is not None:
            req["decided_by"], req["decision_reason"] = e.actor, p.get("reason") or ""
            decisions.append({"seq": e.seq, "time": e.time, "request": rid, "analyst": req["analyst"],
                              "dataset": req["dataset"], "what": _what(req), "decision": e.action, "by": e.actor,
                              "reason": p.get("reason") or ""})
        elif e.action == "run" and req is not None:
            req["runs"] += 1
        elif e.action in ("release", "block", "fail") and req is not None:
            row = {"seq": e.seq, "time": e.time, "request": rid, "analyst": req["analyst"],
                   "dataset": req["dataset"], "what": _what(req)}
            req["outcome"] = e.action
            if e.action == "release":
                req["result_sha256"] = p.get("result_sha256")
                releases.append({**row, "result_sha256": p.get("result_sha256"), "disclosure": p.get("disclosure")})
            else:
                req["outcome_reason"] = public_reason(p.get("reason"))
                (blocks if e.action == "block" else failures).append({**row, "reason": req["outcome_reason"]})
        elif e.action == "connect":
            connects[e.actor] += 1
        elif e.action == "invite":
            access["invites"].append({"seq": e.seq, "time": e.time, "who": rid, "role": p.get("role")})
        elif e.action == "revoke":
            access["revocations"].append({"seq": e.seq, "time": e.time, "who": rid})

    for rid, req in requests.items():
        req["status"] = stored[rid]["status"] if rid in stored else "missing from the store"

    return {
        "format": FORMAT,
        "fednb_version": __version__,
        "domain": domain.name,
        "description": domain.policy.domain.description,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "period": {"first": entries[0].time if entries else None, "last": entries[-1].time if entries else None},
        "audit": {"entries": verified.entries, "head": f"{head_seq}:{verified.head}", "intact": verified.ok,
                  "problems": verified.problems,
                  "verify": f"fednb domain audit DIR --verify --head {head_seq}:{verified.head}"},
        "totals": _totals(requests.values(), decisions),
        "by_analyst": _grouped(requests.values(), "analyst"),
        "by_dataset": _grouped(requests.values(), "dataset"),
        "decisions": decisions,
        "releases": releases,
        "blocks": blocks,
        "failures": failures,
        "requests": sorted(requests.values(), key=lambda r: r["submit_seq"]),
        "access": {**access, "connects": dict(sorted(connects.items()))},
        "secure_aggregation": _secure_aggregation(domain),
    }


def _secure_aggregation(domain: Domain) -> dict[str, Any]:
    """Who this domain is (its signing key's fingerprint) and the peers it masks toward in secure sums."""
    from fednb.domain.release import trusted_peers

    return {"fingerprint": domain.identity.fingerprint, "public_key": domain.identity.public_key.hex(),
            "pinned_peers": [{"name": p.name, "url": p.url, "fingerprint": p.fingerprint}
                             for p in trusted_peers.pinned(domain.store).values()]}


def _what(req: dict) -> str:
    return f"{req['kind']}:{req['name']}"


def _counts(reqs) -> dict[str, int]:
    by_status = Counter(r["status"] for r in reqs)
    return {"requests": len(reqs), **{s: by_status.get(s, 0) for s in STATUSES}}


def _totals(reqs, decisions: list[dict]) -> dict[str, int]:
    reqs = list(reqs)
    by = Counter((d["decision"], "owner" if d["by"].startswith("owner") else d["by"]) for d in decisions)
    return {**_counts(reqs),
            "approved_by_owner": by[("approve", "owner")], "approved_by_policy": by[("approve", "policy")],
            "approved_as_before": by[("approve", "prior approval")], "denied_by_owner": by[("deny", "owner")],
            "released": sum(1 for r in reqs if r["outcome"] == "release")}


def _grouped(reqs, key: str) -> dict[str, dict[str, int]]:
    groups: dict[str, list] = defaultdict(list)
    for r in reqs:
        groups[r[key]].append(r)
    return {k: _counts(v) for k, v in sorted(groups.items())}


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def export(domain: Domain, path, lang: str = "en") -> dict[str, Any]:
    """Write the report to ``path``: ``.json`` as data, ``.html`` (or ``.htm``) as a page."""
    from pathlib import Path

    from fednb.errors import InvalidInput

    path = Path(path)
    kind = path.suffix.lower()
    if kind not in (".json", ".html", ".htm"):
        raise InvalidInput(f"cannot tell the format of {path.name}: name it REPORT.html or REPORT.json")
    report = build(domain)
    if kind == ".json":
        content = to_json(report)
    else:
        from fednb.domain.audit.report_html import render

        content = render(report, lang)
    path.write_text(content, encoding="utf-8")
    return report
