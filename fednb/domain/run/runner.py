"""The job queue's workers: run approved work, check it, release or block it.

Jobs live in the store, so a kill -9 loses none: on start, jobs left ``running`` are re-queued once
(``requeue`` in the audit log) and failed with a reason the second time. Built-ins run on lanes of
their own (``policy.requests.builtin_workers``), each with a warm worker process that a CPU, memory
or wall-clock limit stops (:mod:`fednb.domain.run.workers`); a built-in that hits a limit is failed
with the reason, never re-queued, and one analyst holds at most one built-in lane at a time, so a
long custom job or another analyst's pathological request never delays them. Custom code runs in
the sandbox on ``policy.sandbox.workers`` lanes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from fednb.domain.audit import log as audit
from fednb.domain.audit import receipts
from fednb.domain.release import (
    budget,
    differencing,
    disclosure,
    dp_training,
    noisy,
    secure_inputs,
)
from fednb.domain.release.disclosure import Blocked
from fednb.domain.run import builtins
from fednb.domain.run.custom_code import CustomCode
from fednb.domain.run.outcome import Outcome
from fednb.domain.run.workers import Worker, WorkerLimits, engine_settings
from fednb.errors import FednbError

if TYPE_CHECKING:
    from fednb.domain.domain import Domain

log = logging.getLogger("fednb.domain.run.runner")

MAX_ATTEMPTS = 2
POLL_SECONDS = 0.2  # picks up approvals made by another process (the CLI)


class Runner:
    def __init__(self, domain: Domain, sandbox: Any = None):
        self.domain = domain
        self.sandbox = sandbox
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.custom = CustomCode(domain, sandbox)
        self._workers: list[Worker] = []

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self.recover()
        self.domain.subscribe(self.wake)
        limits = self.builtin_limits()
        self._workers = [Worker(limits) for _ in range(self.domain.policy.requests.builtin_workers)]
        lanes = [("builtin", w) for w in self._workers] + [("sandbox", None)] * self.domain.policy.sandbox.workers
        for i, (lane, worker) in enumerate(lanes):
            t = threading.Thread(target=self._loop, args=(lane, worker), name=f"fednb-{lane}-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5) -> None:
        self._stop.set()
        self.wake()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
        for worker in self._workers:
            worker.close()
        self.custom.close()

    def builtin_limits(self) -> WorkerLimits:
        r = self.domain.policy.requests
        return WorkerLimits(cpu_seconds=r.builtin_cpu_seconds, wall_seconds=r.builtin_wall_seconds,
                            memory_mb=r.builtin_memory_mb)

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
    def _loop(self, lane: str, worker: Worker | None) -> None:
        while not self._stop.is_set():
            try:
                job = self._claim(lane)
            except Exception:  # a locked or closing store must not kill the worker
                log.exception("claiming a job failed")
                job = None
            if job is None:
                if lane == "sandbox":
                    self.custom.close_idle_sessions()
                with self._wake:
                    self._wake.wait(POLL_SECONDS)
                continue
            try:
                outcome = self._execute(job, worker)
            except Exception as exc:  # our bug, not the analyst's: fail the job, keep serving
                log.exception("job %s crashed", job["id"])
                outcome = Outcome("fail", reason=f"the domain could not run this job ({type(exc).__name__}); "
                                                 "the owner can see the details in the server log")
            with self.domain.store.transaction() as tx:
                self._finish(tx, job, job["request_id"], outcome)
            self.domain.changed()

    def _claim(self, lane: str):
        with self.domain.store.transaction() as tx:
            sql = _NEXT_JOB[lane]
            job = tx.execute(sql, (lane,) * sql.count("?")).fetchone()
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
        if outcome.evidence and outcome.action == "release":
            rules = self.domain.policy.disclosure
            reason = differencing.settle(tx, request_id, job["id"], outcome.evidence,
                                         min_cohort=rules.min_cohort, min_cell=rules.min_cell_count)
            if reason is not None:
                outcome = Outcome("block", reason=reason)
        if outcome.spend is not None:  # set on releases, and on DP rounds that fail where the analyst learns
            outcome = self._debit(tx, job, request_id, outcome)
        now = time.time()
        result_json = None if outcome.result is None else json.dumps(outcome.result, allow_nan=False)
        job_status = {"release": "done", "block": "blocked", "fail": "failed"}[outcome.action]
        tx.execute("UPDATE jobs SET status = ?, result_json = ?, result_blob = ?, reason = ?, finished_at = ?"
                   " WHERE id = ?", (job_status, result_json, outcome.blob, outcome.reason, now, job["id"]))
        if job["round"] is None or outcome.final:  # a training request lives on across its rounds
            status = {"release": "done", "block": "blocked", "fail": "failed"}[outcome.action]
            tx.execute("UPDATE requests SET status = ?, result_json = ?, disclosure_json = ?, reason = ?,"
                       " finished_at = ? WHERE id = ?",
                       (status, result_json, json.dumps(outcome.disclosure) if outcome.disclosure else None,
                        outcome.reason if outcome.action != "release" else None, now, request_id))
        payload: dict[str, Any] = {"job": job["id"]}
        if job["round"] is not None:
            payload["round"] = job["round"]
        if outcome.action == "release":
            payload["result_sha256"] = audit.sha256_hex(result_json or "")
            if outcome.blob is not None:
                payload["weights_sha256"] = hashlib.sha256(outcome.blob).hexdigest()
            payload["disclosure"] = outcome.disclosure
        else:
            payload["reason"] = outcome.reason
        receipts.issue(tx, self.domain, job, request_id, outcome,
                       audit.append(tx, "domain", outcome.action, request_id, payload))

    def _debit(self, tx, job, request_id: str, outcome: Outcome) -> Outcome:
        """Spend the release's epsilon in the releasing transaction, or block it if that would overspend."""
        req = tx.execute("SELECT analyst, dataset FROM requests WHERE id = ?", (request_id,)).fetchone()
        spend = outcome.spend
        if isinstance(spend, dp_training.RoundSpend):
            spend = spend.resolve(tx, request_id)
        try:
            after = budget.spend(tx, self.domain.policy, analyst=req["analyst"], dataset=req["dataset"],
                                 request_id=request_id, job_id=job["id"], epsilon=spend.epsilon, delta=spend.delta,
                                 mechanism=spend.mechanism)
        except Blocked as exc:
            return Outcome("block", reason=str(exc))
        outcome.disclosure = {**outcome.disclosure, "privacy": {
            "mechanism": spend.mechanism, "epsilon": spend.epsilon, "delta": spend.delta,
            "remaining_epsilon": after.remaining_epsilon, "remaining_delta": after.remaining_delta}}
        return outcome

    # -- execution -----------------------------------------------------------------------------
    def _execute(self, job, worker: Worker | None = None) -> Outcome:
        req = self.domain.store.query_one("SELECT * FROM requests WHERE id = ?", (job["request_id"],))
        if req["kind"] == "builtin" and worker is None:  # outside the lanes: a worker for this job only
            worker = Worker(self.builtin_limits())
            try:
                return self._builtin(req, job, worker)
            finally:
                worker.close()
        if req["kind"] == "builtin":
            return self._builtin(req, job, worker)
        if req["kind"] == "function":
            return self.custom.function(req, job)
        if req["kind"] == "training":
            return self.custom.training(req, job)
        return Outcome("fail", reason=f"this domain cannot run {req['kind']} requests")

    def _builtin(self, req, job, worker: Worker) -> Outcome:
        """Evaluate the built-in in ``worker`` (the analyst's arguments never run in this process),
        then check and release its JSON result here."""
        rules = self.domain.policy.disclosure
        args = json.loads(req["args_json"])
        inputs = json.loads(job["inputs_json"]) if job["round"] is not None and job["inputs_json"] else None
        spend = None
        try:
            ctx = builtins.Context(rules, self.domain.levels(req["dataset"]))
            task: dict[str, Any] = {"name": req["name"], "args": args, "inputs": inputs,
                                    "data_path": str(self.domain.data_path(req["dataset"])),
                                    "engine": engine_settings(self.domain.policy),
                                    "rules": rules.model_dump(), "levels": ctx.levels}
            if noisy.wanted(req["name"], args, self.domain.policy):
                spend = noisy.plan(req["name"], args, self.domain.policy, req["analyst"], req["dataset"])
                bounds = self.domain.bounds(req["dataset"])
                noisy.check(req["name"], args, bounds)
                task["noisy"] = {"spend": dataclasses.asdict(spend), "bounds": bounds}
            reply = worker.run(task)
            if reply.evidence:  # what the built-in recorded for the owner travels back with the result
                ctx.evidence = reply.evidence
            if reply.status == "blocked":
                return Outcome("block", reason=reply.reason)
            if reply.status != "ok":
                return _worker_failure(req, reply)
            result = reply.result
            disclosure.check_size(len(json.dumps(result, allow_nan=False)), rules)
            outcome = Outcome("release", result=result, spend=spend, evidence=ctx.evidence,
                              disclosure={"noise": spend.mechanism} if spend else
                              {"suppressed_cells": result.get("suppressed", 0)})
            if args.get("secure"):
                outcome.result, outcome.blob = secure_inputs.from_builtin(req["name"], result)
        except Blocked as exc:
            return Outcome("block", reason=str(exc))
        except FednbError as exc:
            return Outcome("fail", reason=str(exc))
        return outcome

# The oldest queued job of the lane; on a built-in lane, only of an analyst who has no built-in
# running, so one analyst's slow requests hold at most one built-in lane.
_NEXT_JOB = {
    "builtin": "SELECT j.* FROM jobs j JOIN requests r ON r.id = j.request_id WHERE j.status = 'queued'"
               " AND j.lane = ? AND r.analyst NOT IN (SELECT r2.analyst FROM jobs j2 JOIN requests r2"
               " ON r2.id = j2.request_id WHERE j2.status = 'running' AND j2.lane = ?) ORDER BY j.id LIMIT 1",
    "sandbox": "SELECT * FROM jobs WHERE status = 'queued' AND lane = ? ORDER BY id LIMIT 1",
}


def _worker_failure(req, reply) -> Outcome:
    """A built-in that was refused (bad input) or stopped by a limit: failed, with the reason."""
    if reply.status == "invalid":
        return Outcome("fail", reason=reply.reason)
    if reply.status == "error":
        log.error("built-in %s of request %s failed in its worker: %s", req["name"], req["id"], reply.reason)
        return Outcome("fail", reason=f"the domain could not run this built-in ({reply.reason}); the owner can "
                                      "see the details in the server log")
    return Outcome("fail", final=True,
                   reason=f"built-in {req['name']} was stopped: {reply.reason}; it will not be run again. "
                          "Ask for less (a simpler formula, fewer levels or bins, a narrower filter)")
