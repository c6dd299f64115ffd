"""The job queue's workers: run approved work, check it, release or block it.

Jobs live in the store, so a kill -9 loses none: on start, jobs left ``running`` are re-queued once
(``requeue`` in the audit log) and failed with a reason the second time. Built-ins run on lanes of
their own (``policy.requests.builtin_workers``), each with a warm worker process that a CPU, memory
or wall-clock limit stops (:mod:`fednb.domain.run.workers`), one of them started ahead of the first
job with the datasets opened (``builtin_worker_ready``); a built-in that hits a limit is failed
with the reason, never re-queued, and one analyst holds at most one built-in lane at a time, so a
long custom job or another analyst's pathological request never delays them. Custom code runs in
the sandbox on ``policy.sandbox.workers`` lanes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
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
from fednb.domain.run import builtins, evidence_files
from fednb.domain.run.custom_code import CustomCode
from fednb.domain.run.outcome import Outcome
from fednb.domain.run.workers import Worker, WorkerLimits, engine_settings
from fednb.domain.store import jobs as job_rows
from fednb.domain.store import requests as request_rows
from fednb.errors import FednbError

if TYPE_CHECKING:
    from fednb.domain.domain import Domain

log = logging.getLogger("fednb.domain.run.runner")

MAX_ATTEMPTS = 2
# Re-reading the queue finds approvals made by another process (the CLI) when nothing tells the runner
# about them; the server passes None when its store watcher (fednb.domain.store.outside_writes) does.
POLL_SECONDS = 0.2


class Runner:
    def __init__(self, domain: Domain, sandbox: Any = None, *, poll_seconds: float | None = POLL_SECONDS,
                 worker_idle_seconds: float | None = None, worker_spawn: Any = None):
        self.domain = domain
        self.worker_spawn = worker_spawn  # forks warm built-in workers (fednb.domain.run.worker_template)
        self.sandbox = sandbox
        self.poll_seconds = poll_seconds
        self.worker_idle_seconds = worker_idle_seconds  # a built-in worker unused this long is stopped
        self.wakeups = 0  # times an idle lane woke up: the owner's proof that idle means asleep
        self._generation = 0  # bumped by wake(), so a wake-up between a claim and the wait is not lost
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.custom = CustomCode(domain, sandbox)
        self._workers: list[Worker] = []
        self._busy: set[int] = set()  # built-in lanes' workers (by id) running a job now
        self._readying = threading.Lock()  # two lanes going idle at once start one ready worker, not two

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, *, recover: bool = True) -> None:
        """Start the lanes; ``recover=False`` where another process recovered before this one started
        (several server processes on one store: only the first may re-queue what a crash left running)."""
        if recover:
            self.recover()
        evidence_files.sweep(self.domain.path)  # row sets left by a server process killed mid-job
        self.domain.subscribe(self.wake)
        limits = self.builtin_limits()
        self._workers = [Worker(limits, self.worker_spawn, self._datasets_to_open)
                         for _ in range(self.domain.policy.requests.builtin_workers)]
        self._busy = set()
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

    def workers_running(self) -> int:
        return sum(w.running for w in self._workers)

    def builtin_limits(self) -> WorkerLimits:
        r = self.domain.policy.requests
        return WorkerLimits(cpu_seconds=r.builtin_cpu_seconds, wall_seconds=r.builtin_wall_seconds,
                            memory_mb=r.builtin_memory_mb)

    def wake(self) -> None:
        with self._wake:
            self._generation += 1
            self._wake.notify_all()

    def recover(self) -> list[str]:
        """Jobs interrupted by a crash: re-queue once, then fail with a reason. Never drop one."""
        touched = []
        with self.domain.store.transaction() as tx:
            for job in job_rows.running(tx):
                rid = job["request_id"]
                if job["attempts"] < MAX_ATTEMPTS:
                    job_rows.requeue(tx, job["id"], rid)
                    audit.append(tx, "domain", "requeue", rid, {"job": job["id"], "attempts": job["attempts"]})
                else:
                    reason = f"interrupted {job['attempts']} times by a domain restart; submit it again"
                    self._finish(tx, job, rid, Outcome("fail", reason=reason))
                touched.append(rid)
        return touched

    # -- the loop ------------------------------------------------------------------------------
    def _loop(self, lane: str, worker: Worker | None) -> None:
        if worker is not None and worker is self._workers[0]:
            self._keep_ready(worker)
        while not self._stop.is_set():
            with self._wake:
                seen = self._generation
            try:
                job = self._claim(lane) if self._queued(lane) and not self._defers(worker) else None
            except Exception:  # a locked or closing store must not kill the worker
                log.exception("claiming a job failed")
                job = None
            if job is None:
                if lane == "sandbox":
                    self.custom.close_idle_sessions()
                self._sleep(seen, lane, worker)
                continue
            self._busy_with(worker, True)
            try:
                outcome = self._execute(job, worker)
            except Exception as exc:  # our bug, not the analyst's: fail the job, keep serving
                log.exception("job %s crashed", job["id"])
                outcome = Outcome("fail", reason=f"the domain could not run this job ({type(exc).__name__}); "
                                                 "the owner can see the details in the server log")
            # free before the release commits: the analyst's next statistic, sent the moment this one
            # is done, must find this warm worker free rather than start a second one
            self._busy_with(worker, False)
            try:
                with self.domain.store.transaction() as tx:
                    self._finish(tx, job, job["request_id"], outcome)
            finally:
                evidence_files.remove(evidence_files.path_for(self.domain.path, job["id"]))
            self.domain.changed()

    def _defers(self, worker: Worker | None) -> bool:
        """A built-in lane without a running worker leaves the job to a lane whose worker runs and is
        not busy with a job: a
        worker's first job costs its start (a fork, DuckDB opening the data: tens of milliseconds
        of CPU), so one domain's sequential statistics reuse one warm worker, and a hundred domains'
        pooled calls do not start a second worker each. The lane that claims wakes the others
        (:meth:`_claim` commits a change), so a second job still finds this lane."""
        if worker is None:
            return False
        with self._wake:
            return not worker.running and any(w.running and id(w) not in self._busy
                                              for w in self._workers if w is not worker)

    def _busy_with(self, worker: Worker | None, busy: bool) -> None:
        if worker is not None:
            with self._wake:
                (self._busy.add if busy else self._busy.discard)(id(worker))
            if not busy:  # after its job (which may have started it): idle, it is stopped in time
                worker.used = True

    def _queued(self, lane: str) -> bool:
        """A plain read first: most wake-ups (every commit wakes every lane) find nothing for this
        lane, and then take no write lock that the API's own writes would queue behind."""
        return job_rows.any_queued(self.domain.store.connect(), lane)

    def _sleep(self, seen: int, lane: str, worker: Worker | None) -> None:
        """Wait for wake() (a new job, a decision, a change seen in the store), without a timeout
        unless something is due: a re-read where no watcher reports outside writes, a training
        worker's idle check, or stopping this lane's idle built-in worker."""
        timeout = self.poll_seconds
        due = self.custom.seconds_to_idle_check() if lane == "sandbox" else None
        if due is not None:
            timeout = due if timeout is None else min(timeout, due)
        stop_worker = (worker is not None and worker.running and worker.used and self.worker_idle_seconds is not None
                       and (timeout is None or self.worker_idle_seconds < timeout))
        if stop_worker:
            timeout = self.worker_idle_seconds
        with self._wake:
            woken = self._generation != seen or self._wake.wait(timeout)
        self.wakeups += 1
        if not woken and stop_worker:
            worker.close()  # started again by the next built-in
            self._keep_ready(worker)

    def _keep_ready(self, worker: Worker) -> None:
        """Start ``worker`` ahead of any job, with the datasets opened, if no built-in worker of this
        domain runs (``policy.requests.builtin_worker_ready``). A worker's first job otherwise pays its
        start: a fork, DuckDB's connection and the Parquet footer, ~40 ms of CPU, which a hundred
        domains answering one pooled call pay together on a laptop's cores. The ready worker is a fork
        of the warm template and asleep on its pipe: no CPU, and only the pages it wrote are its own.
        It is not stopped for idleness (it ran nothing); a used worker that is, is replaced by a fresh
        one here, which also returns what the jobs grew its heap by."""
        if not self.domain.policy.requests.builtin_worker_ready or self._stop.is_set():
            return
        with self._readying:
            if any(w.running for w in self._workers):
                return
            try:
                worker.start(ahead=True)
            except Exception:  # the next built-in starts one as before
                log.exception("starting a built-in worker ahead of its first job failed")

    def _datasets_to_open(self) -> list[dict[str, Any]]:
        """Each dataset as a built-in job names it (its file, the policy's engine settings), for a
        worker started ahead of its first job to open."""
        settings = engine_settings(self.domain.policy)
        return [{"data_path": str(self.domain.data_path(d.name)), "engine": settings} for d in self.domain.datasets()]

    def _claim(self, lane: str):
        with self.domain.store.transaction() as tx:
            job = job_rows.next_queued(tx, lane)
            if job is None:
                return None
            claimed = job_rows.mark_running(tx, job["id"], job["request_id"])
            audit.append(tx, "domain", "run", job["request_id"],  # which server process ran it (--workers N)
                         {"job": job["id"], "attempt": job["attempts"] + 1, "process": os.getpid()})
            job = claimed
        self.domain.changed()
        return job

    def _finish(self, tx, job, request_id: str, outcome: Outcome) -> None:
        if outcome.evidence and outcome.action == "release":
            rules = self.domain.policy.disclosure
            try:
                reason = differencing.settle(tx, request_id, job["id"], outcome.evidence,
                                             min_cohort=rules.min_cohort, min_cell=rules.min_cell_count)
            except evidence_files.UnreadableEvidence as exc:
                log.error("the row sets of job %s were unreadable: %s", job["id"], exc)
                reason, outcome = None, Outcome("fail", reason=f"the domain could not check this result ({exc})")
            if reason is not None:
                outcome = Outcome("block", reason=reason)
        if outcome.spend is not None:  # set on releases, and on DP rounds that fail where the analyst learns
            outcome = self._debit(tx, job, request_id, outcome)
        result_json = None if outcome.result is None else json.dumps(outcome.result, allow_nan=False)
        job_status = {"release": "done", "block": "blocked", "fail": "failed"}[outcome.action]
        job_rows.finish(tx, job["id"], status=job_status, result_json=result_json, result_blob=outcome.blob,
                        reason=outcome.reason)
        if job["round"] is None or outcome.final:  # a training request lives on across its rounds
            status = {"release": "done", "block": "blocked", "fail": "failed"}[outcome.action]
            request_rows.finish(tx, request_id, status=status, result_json=result_json,
                                disclosure_json=json.dumps(outcome.disclosure) if outcome.disclosure else None,
                                reason=outcome.reason if outcome.action != "release" else None)
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
        req = request_rows.one(tx, request_id)
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
        req = request_rows.one(self.domain.store.connect(), job["request_id"])
        if req["kind"] == "builtin" and worker is None:  # outside the lanes: a worker for this job only
            worker = Worker(self.builtin_limits(), self.worker_spawn)
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
                                    "rules": rules.model_dump(), "levels": ctx.levels,
                                    "evidence_file": str(evidence_files.path_for(self.domain.path, job["id"]))}
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
