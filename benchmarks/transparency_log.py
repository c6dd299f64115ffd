"""The transparency log at scale: a domain whose audit log holds N entries (default 100,000), one real
release with its signed receipt, then the export and the offline checks.

Prints JSON lines: the log's size (SQLite file, exported log.json), proof sizes (inclusion at N,
consistency from N/2 to N), the cost of keeping the Merkle tree on each append, and the time to
verify a receipt (signature + result hash + inclusion proof) and a consistency proof, next to the
plain alternatives measured in the same run (an Ed25519 verification alone with ``cryptography``;
recomputing the root from every leaf, which is what a checker without proofs must do).

    python benchmarks/transparency_log.py [--entries 100000] [--runs 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fednb.demo import data  # noqa: E402
from fednb.demo.local import create_domain  # noqa: E402
from fednb.domain.audit import log as audit  # noqa: E402
from fednb.domain.audit import merkle, public_log, receipts  # noqa: E402
from fednb.domain.audit.publish import export  # noqa: E402
from fednb.domain.audit.verify import PublishedLog  # noqa: E402
from fednb.domain.identity import verify as ed25519_verify  # noqa: E402
from fednb.domain.run.runner import Outcome, Runner  # noqa: E402
from fednb.models import RequestIn, canonical_json  # noqa: E402


def emit(measure: str, **values) -> None:
    print(json.dumps({"benchmark": "transparency_log", "measure": measure, **values}), flush=True)


def timed(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def grow(domain, entries: int) -> float:
    """Append filler entries in batches; CPU seconds per append (this process's own time, so that other
    work on a shared machine does not count)."""
    start, done = time.process_time(), len(domain.audit_entries())
    while done < entries:
        with domain.store.transaction() as tx:
            for i in range(min(5000, entries - done)):
                audit.append(tx, f"analyst{i % 50}", "connect", domain.name, {"n": done + i})
        done = min(entries, done + 5000)
    return (time.process_time() - start) / entries


def release(domain) -> dict:
    """One count released through the runner's own releasing transaction: its receipt."""
    req, _ = domain.receive("alice", RequestIn(dataset="patients", kind="builtin", name="count"))
    job = domain.store.query_one("SELECT * FROM jobs WHERE request_id = ?", (req.id,))
    with domain.store.transaction() as tx:
        Runner(domain)._finish(tx, job, req.id, Outcome("release", result={"n": 1200}))
    return receipts.for_request(domain.store.connect(), req.id)[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        plain = create_domain(root, "plain", data.hospital("hospital-a"), "patients", analyst="alice")
        keep, public_log.extend = public_log.extend, lambda conn, seq, row=None: None  # the hash chain alone, as before
        try:
            chain_only = grow(plain, args.entries)
        finally:
            public_log.extend = keep
            plain.close()
        domain = create_domain(root, "bench", data.hospital("hospital-a"), "patients", analyst="alice")
        per_append = grow(domain, args.entries - 3)
        receipt = release(domain)
        domain.store.connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        n = len(domain.audit_entries())

        start = time.perf_counter()
        export(domain, root / "out")
        publish_s = time.perf_counter() - start
        emit("log_size", entries=n, sqlite_bytes=(root / "bench" / "domain.db").stat().st_size,
             export_log_json_bytes=(root / "out" / "log.json").stat().st_size,
             bytes_per_entry=round((root / "out" / "log.json").stat().st_size / n, 1),
             append_with_tree_cpu_us=round(per_append * 1e6, 1),
             append_chain_only_cpu_us=round(chain_only * 1e6, 1),
             publish_s=round(publish_s, 2))

        log = PublishedLog(root / "out")
        item = log.receipts[0]
        consistency = log.tree.consistency_proof(n // 2)
        emit("proof_sizes", entries=n, inclusion_hashes=len(item["inclusion"]),
             inclusion_proof_bytes=32 * len(item["inclusion"]),
             inclusion_hashes_first_entry=len(log.tree.inclusion_proof(0)),
             consistency_from=n // 2, consistency_hashes=len(consistency), consistency_proof_bytes=32 * len(consistency),
             receipt_json_bytes=len(json.dumps(receipt)), sth_json_bytes=(root / "out" / "sth.json").stat().st_size)

        leaf = public_log.leaf_of(log.entries[item["leaf_index"]])
        proof = [bytes.fromhex(h) for h in item["inclusion"]]

        def check_receipt() -> None:
            assert not receipts.check_result(receipt, {"n": 1200}, log.fingerprint)
            assert merkle.verify_inclusion(leaf, item["leaf_index"], log.size, proof, log.root)

        import base64

        key, sig = base64.b64decode(receipt["public_key"]), base64.b64decode(receipt["signature"])
        message = f"{receipts.RECEIPT}\n".encode() + canonical_json(receipt["body"]).encode()
        old_root = log.tree.root_at(n // 2)
        emit("verify_times", entries=n, runs=args.runs,
             receipt_us=round(timed(check_receipt, args.runs) * 1e6, 1),
             ed25519_verify_alone_us=round(timed(lambda: ed25519_verify(key, message, sig), args.runs) * 1e6, 1),
             consistency_proof_us=round(timed(lambda: merkle.verify_consistency(
                 n // 2, n, old_root, log.root, consistency), args.runs) * 1e6, 1),
             recompute_root_from_all_leaves_s=round(timed(lambda: merkle.root(log.tree.levels[0]), 3), 3))
        start = time.perf_counter()
        problems = PublishedLog(root / "out").check()
        emit("verify_whole_export", entries=n, seconds=round(time.perf_counter() - start, 2), problems=len(problems))
        domain.close()


if __name__ == "__main__":
    main()
