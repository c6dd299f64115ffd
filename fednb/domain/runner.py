"""The job queue's workers: run approved work, check it, release or block it.

Jobs live in the store, so a kill -9 loses none: on start, jobs left ``running`` are re-queued once
(``requeue`` in the audit log) and failed with a reason the second time. Built-ins run in this
process on a lane of their own, so a long custom job never delays them; custom code runs in the
sandbox on ``policy.sandbox.workers`` lanes.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fednb import codec
from fednb.domain import audit, builtins, disclosure
from fednb.domain.disclosure import Blocked
from fednb.errors import FednbError

if TYPE_CHECKING:
    from fednb.domain.domain import Domain

log = logging.getLogger("fednb.domain.runner")

MAX_ATTEMPTS = 2
POLL_SECONDS = 0.2  # picks up approvals made by another process (the CLI)
LEVELS = ("none", "minimal", "standard", "strong")


@dataclass
class Outcome:
    """What a job produced: released (``result``), blocked or failed (``reason``)."""

    action: str  # "release" | "block" | "fail"
    result: Any = None
    reason: str | None = None
    disclosure: dict[str, Any] = field(default_factory=dict)
    blob: bytes | None = None


class Runner:
    def __init__(self, domain: Domain, sandbox: Any = None):
        self.domain = domain
        self.sandbox = sandbox
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self.recover()
        self.domain.subscribe(self.wake)
        lanes = ["builtin"] + ["sandbox"] * self.domain.policy.sandbox.workers
        for i, lane in enumerate(lanes):
            t = threading.Thread(target=self._loop, args=(lane,), name=f"fednb-{lane}-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5) -> None:
        self._stop.set()
        self.wake()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def recover(self) -> list[str]:
        """Jobs interrupted by a crash: re-queue once, then fail with a reason. Never drop one."""
        touched = []
        with self.domain.store.transaction() as tx:
            for job in tx.execute("SELECT * FROM jobs WHERE status = 'running'").fetchall():
                rid = job["request_id"]
                if job["attempts"] < MAX_ATTEMPTS:
                    tx.execute("UPDATE jobs SET status = 'queued' WHERE id = ?", (job["id"],))
                    tx.execute("UPDATE requests SET status = 'approved' WHERE id = ? AND status = 'running'", (rid,))
                    audit.append(tx, "domain", "requeue", rid, {"job": job["id"], "attempts": job["attempts"]})
                else:
                    reason = f"interrupted {job['attempts']} times by a domain restart; submit it again"
                    self._finish(tx, job, rid, Outcome("fail", reason=reason))
                touched.append(rid)
        return touched

    # -- the loop ------------------------------------------------------------------------------
    def _loop(self, lane: str) -> None:
        while not self._stop.is_set():
            try:
                job = self._claim(lane)
            except Exception:  # a locked or closing store must not kill the worker
                log.exception("claiming a job failed")
                job = None
            if job is None:
                with self._wake:
                    self._wake.wait(POLL_SECONDS)
                continue
            try:
                outcome = self._execute(job)
            except Exception as exc:  # our bug, not the analyst's: fail the job, keep serving
                log.exception("job %s crashed", job["id"])
                outcome = Outcome("fail", reason=f"the domain could not run this job ({type(exc).__name__}); "
                                                 "the owner can see the details in the server log")
            with self.domain.store.transaction() as tx:
                self._finish(tx, job, job["request_id"], outcome)
            self.domain.changed()

    def _claim(self, lane: str):
        with self.domain.store.transaction() as tx:
            job = tx.execute("SELECT * FROM jobs WHERE status = 'queued' AND lane = ? ORDER BY id LIMIT 1",
                             (lane,)).fetchone()
            if job is None:
                return None
            now = time.time()
            tx.execute("UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ? WHERE id = ?",
                       (now, job["id"]))
            tx.execute("UPDATE requests SET status = 'running' WHERE id = ? AND status = 'approved'",
                       (job["request_id"],))
            audit.append(tx, "domain", "run", job["request_id"], {"job": job["id"], "attempt": job["attempts"] + 1})
            job = tx.execute("SELECT * FROM jobs WHERE id = ?", (job["id"],)).fetchone()
        self.domain.changed()
        return job

    def _finish(self, tx, job, request_id: str, outcome: Outcome) -> None:
        now = time.time()
        result_json = None if outcome.result is None else json.dumps(outcome.result, allow_nan=False)
        job_status = "done" if outcome.action == "release" else "failed"
        tx.execute("UPDATE jobs SET status = ?, result_json = ?, result_blob = ?, reason = ?, finished_at = ?"
                   " WHERE id = ?", (job_status, result_json, outcome.blob, outcome.reason, now, job["id"]))
        status = {"release": "done", "block": "blocked", "fail": "failed"}[outcome.action]
        tx.execute("UPDATE requests SET status = ?, result_json = ?, disclosure_json = ?, reason = ?,"
                   " finished_at = ? WHERE id = ?",
                   (status, result_json, json.dumps(outcome.disclosure) if outcome.disclosure else None,
                    outcome.reason if outcome.action != "release" else None, now, request_id))
        payload: dict[str, Any] = {"job": job["id"]}
        if outcome.action == "release":
            payload["result_sha256"] = audit.sha256_hex(result_json or "")
            payload["disclosure"] = outcome.disclosure
        else:
            payload["reason"] = outcome.reason
        audit.append(tx, "domain", outcome.action, request_id, payload)

    # -- execution -----------------------------------------------------------------------------
    def _execute(self, job) -> Outcome:
        req = self.domain.store.query_one("SELECT * FROM requests WHERE id = ?", (job["request_id"],))
        if req["kind"] == "builtin":
            return self._builtin(req)
        if req["kind"] == "function":
            return self._function(req, job)
        return Outcome("fail", reason=f"this domain cannot run {req['kind']} requests")

    def _builtin(self, req) -> Outcome:
        rules = self.domain.policy.disclosure
        try:
            df = self.domain.load(req["dataset"])
            ctx = builtins.Context(rules, self.domain.levels(req["dataset"]))
            result = builtins.compute(req["name"], json.loads(req["args_json"]), df, ctx)
            disclosure.check_size(len(json.dumps(result, allow_nan=False)), rules)
        except Blocked as exc:
            return Outcome("block", reason=str(exc))
        except FednbError as exc:
            return Outcome("fail", reason=str(exc))
        return Outcome("release", result=result, disclosure={"suppressed_cells": result.get("suppressed", 0)})

    def _function(self, req, job) -> Outcome:
        policy = self.domain.policy
        if self.sandbox is None:
            return Outcome("fail", reason="this domain has no sandbox running, so it cannot run custom code")
        level = self.sandbox.isolation.get("level", "none")
        if LEVELS.index(level) < LEVELS.index(policy.sandbox.min_isolation):
            return Outcome("fail", reason=f"this domain's sandbox isolation is '{level}' but its policy requires "
                                          f"'{policy.sandbox.min_isolation}' to run custom code")
        from fednb.domain.sandbox import JobSpec, Limits

        wall = policy.sandbox.wall_seconds
        limits_req = json.loads(req["limits_json"])
        if limits_req.get("max_runtime_s"):
            wall = min(wall, float(limits_req["max_runtime_s"]))
        limits = Limits(cpu_seconds=policy.sandbox.cpu_seconds, wall_seconds=wall,
                        memory_mb=policy.sandbox.memory_mb, max_file_mb=policy.sandbox.max_file_mb,
                        max_output_bytes=policy.disclosure.max_output_bytes)
        spec = JobSpec(job_id=str(job["id"]), code=req["code"], entry=req["name"], args=json.loads(req["args_json"]),
                       data_path=str(self.domain.data_path(req["dataset"])), data_format="parquet",
                       probe_fraction=0.5, limits=limits)
        out = self.sandbox.run(spec)
        return self._judge(out, limits, self.domain.row_count(req["dataset"]))

    def _judge(self, out: Any, limits: Any, rows: int) -> Outcome:
        """Map a sandbox outcome to release, block or fail, with reasons an analyst can act on.

        ``rows`` is the domain's own count, never the job's. The probe (the same code run on half
        the rows) catches careless row-level output; code written to lie about it is what the
        owner's review and the value-count rule on the released value are for.
        """
        rules = self.domain.policy.disclosure
        if out.status == "ok":
            probe = out.probe or {}
            values = codec.count_values(out.value)
            try:
                disclosure.check_cohort(rows, rules, "the dataset's rows")
                disclosure.check_values(values, rows, rules, probe.get("probe_values"))
            except Blocked as exc:
                return Outcome("block", reason=str(exc))
            return Outcome("release", result=out.value, disclosure={"values": values})
        reasons = {
            "error": f"your code raised {_clip(out.message)}",
            "timeout": f"the job ran past its wall-clock limit of {limits.wall_seconds:g} s and was stopped",
            "cpu_limit": f"the job used more than {limits.cpu_seconds:g} CPU seconds and was stopped",
            "memory": f"the job ran out of memory (limit {limits.memory_mb} MiB)",
            "bad_output": f"the result could not be released: {_clip(out.message)}",
            "killed": f"the job was stopped by the sandbox: {_clip(out.message)}",
        }
        if out.status == "output_too_large":
            return Outcome("block", reason=f"the result is larger than the domain's limit of "
                                           f"{limits.max_output_bytes:,} bytes; return a smaller aggregate")
        return Outcome("fail", reason=reasons.get(out.status, f"the job ended with status {out.status}: {out.message}"))


def _clip(message: str, limit: int = 300) -> str:
    """Analyst code writes its own error text: keep it short, like any other output."""
    message = (message or "").strip()
    return message if len(message) <= limit else message[:limit] + "..."
