"""Offline checks of what a domain published or released: ``fednb verify``.

Needs only files: an export written by ``fednb domain publish`` and/or an analyst's saved results
with their receipts. Nothing here opens a domain or the network. Each check returns the list of
problems found (empty: it holds) so the command can print all of them, not only the first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fednb.domain.audit import merkle, public_log, receipts
from fednb.domain.audit.log import GENESIS
from fednb.domain.audit.publish import TREE_HEAD


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise ValueError(f"{path} is not JSON") from None


def _hashes(proof: Any) -> list[bytes]:
    return [bytes.fromhex(p) for p in proof]


class PublishedLog:
    """An export folder, loaded: its signed head, entries and leaf hashes."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        self.folder = folder
        self.sth = _load(folder / "sth.json")
        self.entries = _load(folder / "log.json").get("entries", [])
        self.receipts = _load(folder / "receipts.json")
        self.consistency = _load(folder / "consistency.json")
        self.tree = merkle.Tree([public_log.leaf_of(e) for e in self.entries])

    @property
    def size(self) -> int:
        return self.sth["body"]["tree_size"]

    @property
    def root(self) -> bytes:
        return bytes.fromhex(self.sth["body"]["root_hash"])

    @property
    def fingerprint(self) -> str:
        return self.sth.get("fingerprint", "")

    def check(self, pinned: str | None = None) -> list[str]:
        problem = receipts.check(self.sth, TREE_HEAD, pinned)
        if problem:
            return [f"sth.json: {problem}"]
        problems = self._entries()
        for i, item in enumerate(self.receipts):
            problems += [f"receipts.json #{i + 1}: {p}" for p in self._receipt(item)]
        for item in self.consistency:
            problems += self.check_head(item.get("from"), item.get("proof"), "consistency.json")
        return problems

    def _entries(self) -> list[str]:
        problems = []
        if len(self.entries) != self.size:
            problems.append(f"the signed head is for {self.size} entries but log.json holds {len(self.entries)}")
        elif self.tree.root() != self.root:
            problems.append("the entries in log.json do not hash to the signed root (an entry was edited, "
                            "added, removed or reordered)")
        prev = GENESIS
        for i, e in enumerate(self.entries, start=1):
            if e.get("seq") != i:
                problems.append(f"entry {i}: numbered {e.get('seq')}")
            if e.get("prev") != prev:
                problems.append(f"entry {i}: does not link to the hash of the entry before it")
            prev = e.get("chain")
        return problems

    def _receipt(self, item: dict[str, Any]) -> list[str]:
        receipt = item.get("receipt")
        problem = receipts.check(receipt, receipts.RECEIPT, self.fingerprint)
        if problem:
            return [problem]
        body = receipt["body"]
        index = body["audit_seq"] - 1
        problems = self.locate(body)
        if not 0 <= index < len(self.entries):
            return problems
        leaf = public_log.leaf_of(self.entries[index])
        if not merkle.verify_inclusion(leaf, index, self.size, _hashes(item.get("inclusion", [])), self.root):
            problems.append(f"the inclusion proof of entry {index + 1} does not lead to the signed root")
        head = body["log_head"]
        if not merkle.verify_consistency(head["tree_size"], self.size, bytes.fromhex(head["root_hash"]), self.root,
                                         _hashes(item.get("consistency", []))):
            problems.append(f"the log head in the receipt (size {head['tree_size']}) is not a prefix of the signed "
                            "head (the log was rewritten after the release)")
        return problems

    def locate(self, body: dict[str, Any]) -> list[str]:
        """The receipt's release must be the log's entry ``audit_seq``, and its head a prefix of this log."""
        seq = body.get("audit_seq", 0)
        if not 1 <= seq <= len(self.entries):
            return [f"request {body.get('request')}: its release (entry {seq}) is not in the published log"]
        e = self.entries[seq - 1]
        if (e.get("action"), e.get("object"), e.get("chain")) != ("release", body.get("request"),
                                                                  body.get("audit_chain_hash")):
            return [f"request {body.get('request')}: entry {seq} of the published log is not its release"]
        head = body.get("log_head", {})
        size = head.get("tree_size", 0)
        if size > self.tree.size or self.tree.root_at(size).hex() != head.get("root_hash"):
            return [f"request {body.get('request')}: the log head in its receipt is not a prefix of the published log"]
        return []

    def check_head(self, old: Any, proof: Any = None, where: str = "--head") -> list[str]:
        """An earlier signed head against this one: same key, and this log is its extension."""
        problem = receipts.check(old, TREE_HEAD, self.fingerprint)
        if problem:
            return [f"{where}: {problem}"]
        size, root = old["body"]["tree_size"], bytes.fromhex(old["body"]["root_hash"])
        if size == self.size and root != self.root:
            return [f"{where}: FORK: the domain signed two different heads for the same {size} entries "
                    f"({root.hex()[:16]}... and {self.root.hex()[:16]}...)"]
        if size > self.size:
            return [f"{where}: the earlier head has {size} entries, this log only {self.size} (entries removed)"]
        if proof is None and len(self.entries) == self.size:
            proof = [p.hex() for p in self.tree.consistency_proof(size)]
        if not merkle.verify_consistency(size, self.size, root, self.root, _hashes(proof or [])):
            return [f"{where}: this log is not an extension of the earlier head of {size} entries "
                    "(entries were rewritten)"]
        return []


def check_results(data: Any, pins: dict[str, str], log: PublishedLog | None = None) -> tuple[list[str], list[str]]:
    """A saved result file (``FederatedRequest.save``): (what holds, problems) for every domain's receipts."""
    if not isinstance(data, dict) or not isinstance(data.get("domains"), dict):
        return [], ["not a fednb result file: save one with r.save('RESULT.json')"]
    held, problems = [], []
    for name, part in data["domains"].items():
        found = part.get("receipts") or []
        if not found:
            problems.append(f"{name}: no receipt for this result")
            continue
        pinned = pins.get(name, pins.get("*"))
        for receipt in found:
            wrong = receipts.check_result(receipt, part.get("result"), pinned)
            if not wrong and log is not None and receipt["body"].get("domain") == log.sth["body"].get("domain"):
                wrong = log.locate(receipt["body"])
                if receipt.get("fingerprint") != log.fingerprint:
                    wrong.append(f"the receipt is signed by {receipt.get('fingerprint')}, the log by {log.fingerprint}")
            if wrong:
                problems += [f"{name}: {w}" for w in wrong]
            else:
                body = receipt["body"]
                held.append(f"{name}: request {body['request']} ({body['what']} on {body['dataset']}) released "
                            f"{body['released_at'][:19]}, audit entry {body['audit_seq']}, signed by "
                            f"{receipt['fingerprint']}{'' if pinned else ' (key not pinned: compare it out of band)'}")
    return held, problems
