"""``fednb domain publish DIR OUT/``: a static export of a domain's transparency log that anyone can
mirror and check with ``fednb verify --log OUT/``, without access to the domain.

The export holds a signed tree head (the Merkle root over every audit entry, signed with the
domain's Ed25519 key: RFC 9162 §4.10's STH), every entry in its public form (people pseudonymous),
each release's signed receipt with its inclusion proof and a consistency proof from the receipt's
head, consistency proofs from every head this domain published before, the transparency report
with the sovereignty statement, and one HTML page per language. A watchdog that kept an earlier
``sth.json`` proves with ``fednb verify --log OUT/ --head OLD/sth.json`` that the log only grew.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fednb.domain.audit import merkle, public_log, receipts, sovereignty
from fednb.domain.store import access
from fednb.domain.store import audit as audit_rows
from fednb.errors import FednbError

if TYPE_CHECKING:
    from fednb.domain.domain import Domain

TREE_HEAD = "fednb-tree-head/1"
LOG = "fednb-public-log/1"
FILES = ("sth.json", "log.json", "receipts.json", "consistency.json", "report.json", "index.html", "index.es.html",
         "report.html", "report.es.html")


def _hex(proof: list[bytes]) -> list[str]:
    return [p.hex() for p in proof]


def export(domain: Domain, out: str | Path) -> dict[str, Any]:
    """Write the export into ``out`` (created; files of an earlier export there are replaced)."""
    from fednb.domain.audit import report as report_module
    from fednb.domain.audit.publish_html import render_index
    from fednb.domain.audit.report_html import render

    out = Path(out)
    with domain.store.transaction() as tx:  # one consistent view; makes the pseudonym key if new
        key = public_log.pseudonym_key(tx)
        entries = public_log.public_entries(tx)
        tree = merkle.Tree([public_log.leaf_of(e) for e in entries])
        recorded_size, recorded_root = public_log.head(tx)
        if recorded_size and tree.root_at(min(recorded_size, tree.size)).hex() != recorded_root:
            raise FednbError("the audit log's rows no longer match its recorded Merkle root (rows were edited or "
                             "removed); "
                             "run `fednb domain audit DIR --verify` and do not publish it")
        earlier = [json.loads(r) for r in audit_rows.published_heads(tx)]
        sth = receipts.sign(domain.identity, TREE_HEAD, {
            "domain": domain.name, "tree_size": tree.size, "root_hash": tree.root().hex(),
            "chain_head": f"{entries[-1]['seq']}:{entries[-1]['chain']}" if entries else None,
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds")})
        audit_rows.add_published_head(tx, tree.size, tree.root().hex(), json.dumps(sth))
        released = receipts.all_receipts(tx)
    consistency = []
    for old in earlier:
        size, root = old["body"]["tree_size"], old["body"]["root_hash"]
        if size > tree.size or tree.root_at(size).hex() != root:
            raise FednbError(f"this log is not an extension of the head it published for size {size} "
                             "(the log was rewritten); do not publish it")
        consistency.append({"from": old, "proof": _hex(tree.consistency_proof(size))})
    proven = [{"receipt": r, "leaf_index": r["body"]["audit_seq"] - 1,
               "inclusion": _hex(tree.inclusion_proof(r["body"]["audit_seq"] - 1)),
               "consistency": _hex(tree.consistency_proof(r["body"]["log_head"]["tree_size"]))}
              for r in released if r["body"]["audit_seq"] <= tree.size]

    report = pseudonymous(report_module.build(domain), key, released)
    names = _names(domain, key) if domain.policy.transparency.name_analysts else {}
    names_or = lambda name: public_log.pseudonym(key, name)  # noqa: E731
    published = {"format": "fednb-transparency-export/1", "report": report, "names": names,
                 "sovereignty": sovereignty.statement(domain, names_or), "sth": sth}
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "sth.json", sth)
    _write(out / "log.json", {"format": LOG, "domain": domain.name, "entries": entries})
    _write(out / "receipts.json", proven)
    _write(out / "consistency.json", consistency)
    _write(out / "report.json", published)
    for lang, suffix in (("en", ""), ("es", ".es")):
        (out / f"report{suffix}.html").write_text(render(report, lang), encoding="utf-8")
        (out / f"index{suffix}.html").write_text(render_index(published, proven, lang), encoding="utf-8")
    return published


def _write(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    shutil.move(tmp, path)


def _names(domain: Domain, key: bytes) -> dict[str, str]:
    people = access.names(domain.store.connect())
    return {public_log.pseudonym(key, name): name for name in people}


def pseudonymous(report: dict[str, Any], key: bytes, released: list[dict[str, Any]]) -> dict[str, Any]:
    """The transparency report with every person (analysts, owners) replaced by their pseudonym, and
    each result's bare SHA-256 by its receipt's salted one (a bare hash of a small number is
    reversed by trying values; see :func:`receipts.result_sha256`)."""
    who = lambda name: public_log.public_actor(key, name) if name else name  # noqa: E731
    by_seq = {r["body"]["audit_seq"]: r["body"]["result_sha256"] for r in released}
    by_request = {r["body"]["request"]: r["body"]["result_sha256"] for r in released}
    out = dict(report)
    for section in ("decisions", "releases", "blocks", "failures", "requests"):
        out[section] = [{**row, **{k: who(row[k]) for k in ("analyst", "by", "decided_by") if k in row}}
                        for row in report[section]]
    out["releases"] = [{**row, "result_sha256": by_seq.get(row["seq"])} for row in out["releases"]]
    out["requests"] = [{**row, "result_sha256": by_request.get(row["id"])} for row in out["requests"]]
    out["by_analyst"] = {who(name): counts for name, counts in report["by_analyst"].items()}
    access = report["access"]
    out["access"] = {
        "invites": [{**i, "who": public_log.pseudonym(key, i["who"]) if i["who"] else i["who"]}
                    for i in access["invites"]],
        "revocations": [{**i, "who": public_log.pseudonym(key, i["who"]) if i["who"] else i["who"]}
                        for i in access["revocations"]],
        "connects": {who(name): n for name, n in access["connects"].items()}}
    return out
