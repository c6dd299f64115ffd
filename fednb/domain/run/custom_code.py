"""Custom code's lane of the runner: approved analyst functions and training rounds in the sandbox.

A function runs once per job; a training request keeps one sandboxed worker alive across its rounds
(same isolation), so a round costs compute and transfer, not start-up. What comes back is checked
against the domain's own copy of the data (:mod:`fednb.domain.release.output_check`), and what a
failure may say is reduced to what the analyst may learn (:mod:`fednb.domain.release.error_text`).
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

from fednb import tensors
from fednb.domain.data.engines.base import EngineError
from fednb.domain.release import disclosure, dp_training, error_text, output_check
from fednb.domain.release.disclosure import Blocked
from fednb.domain.review.data_access import rows_over_cap
from fednb.domain.run.job_data import JobData, RowsNotLoaded, clear_left_behind
from fednb.domain.run.outcome import Outcome
from fednb.domain.run.rounds import charged
from fednb.domain.store import requests as request_rows
from fednb.errors import FednbError
from fednb.locale import N_

if TYPE_CHECKING:
    from fednb.domain.domain import Domain

LEVELS = ("none", "minimal", "standard", "strong")


class CustomCode:
    """Runs functions and training rounds in ``sandbox`` for ``domain``; owns the training workers."""

    def __init__(self, domain: Domain, sandbox: Any = None):
        self.domain = domain
        self.sandbox = sandbox
        self._sessions: dict[str, tuple[Any, float]] = {}  # training request -> (session, last used)
        self._sessions_lock = threading.Lock()
        clear_left_behind(domain.path)

    def seconds_to_idle_check(self) -> float | None:
        """When the oldest-used training worker passes the idle limit (None: no worker alive), so
        the runner wakes then, and not before, to stop it."""
        with self._sessions_lock:
            used = [last for _, last in self._sessions.values()]
        if not used:
            return None
        due = min(used) + self.domain.policy.learning.idle_minutes * 60 - time.monotonic()
        return max(due, 0.0) + 0.05

    def close(self) -> None:
        with self._sessions_lock:
            for session, _ in self._sessions.values():
                session.close()
            self._sessions.clear()

    def _unsafe(self) -> Outcome | None:
        """Why custom code may not run here now (no sandbox, or weaker isolation than the policy asks)."""
        policy = self.domain.policy
        if self.sandbox is None:
            return Outcome("fail", reason=N_("this domain has no sandbox running, so it cannot run custom code"))
        try:
            level = self.sandbox.wake().get("level", "none")  # a zygote started now is probed now
        except FednbError as exc:
            return Outcome("fail", reason=f"this domain's sandbox could not start: {exc}")
        if LEVELS.index(level) < LEVELS.index(policy.sandbox.min_isolation):
            return Outcome("fail", reason=N_("this domain's sandbox isolation is '{level}' but its policy requires "
                                             "'{required}' to run custom code").format(
                level=level, required=policy.sandbox.min_isolation))
        return None

    def _limits(self, req, *, cpu_scale: float = 1, max_output_bytes: int | None = None):
        from fednb.domain.run.sandbox import Limits

        policy = self.domain.policy
        wall = policy.sandbox.wall_seconds
        asked = json.loads(req["limits_json"]).get("max_runtime_s")
        if asked:
            wall = min(wall, float(asked))
        return Limits(cpu_seconds=policy.sandbox.cpu_seconds * cpu_scale, wall_seconds=wall,
                      memory_mb=policy.sandbox.memory_mb, max_file_mb=policy.sandbox.max_file_mb,
                      max_output_bytes=max_output_bytes or policy.disclosure.max_output_bytes)

    def _spec(self, req, job, limits, data: JobData, *, harness: str, probe: float | None):
        from fednb.domain.run.sandbox import JobSpec

        return JobSpec(job_id=str(job["id"]), code=req["code"], entry=req["name"], args=json.loads(req["args_json"]),
                       data_path=data.path(), data_format="parquet",
                       harness=harness, probe_fraction=probe, limits=limits, columns=_columns(req))

    def _over_row_cap(self, req) -> Outcome | None:
        """The owner's row cap, checked again when the job is due (the policy may have changed since
        the request was accepted): a refusal before anything runs, never a silent sample."""
        refused = rows_over_cap(self.domain.row_count(req["dataset"]), self.domain.policy)
        return Outcome("fail", reason=refused) if refused else None

    def function(self, req, job) -> Outcome:
        refused = self._over_row_cap(req) or self._unsafe()
        if refused:
            return refused
        limits = self._limits(req)
        with _job_data(self.domain, req, job) as data:
            try:
                spec = self._spec(req, job, limits, data, harness="function", probe=None)
            except (RowsNotLoaded, EngineError) as exc:  # the owner's store refused, or holds too many rows
                return Outcome("fail", reason=str(exc))
            out = self.sandbox.run(spec)
        rows = self.domain.row_count(req["dataset"]) if data.frame is None else len(data.frame)
        return self._judge(out, limits, rows, req, data)

    def training(self, req, job) -> Outcome:
        """One round in the request's kept-alive worker; the update must be the model's parameters."""
        refused = self._over_row_cap(req) or self._unsafe()
        if refused:
            return refused
        rules = self.domain.policy.disclosure
        rows = self.domain.row_count(req["dataset"])
        try:
            disclosure.check_cohort(rows, rules, N_("the dataset's rows"))
        except Blocked as exc:
            return Outcome("block", reason=str(exc))
        blob = bytes(job["input_blob"])
        expected = tensors.signature(tensors.header(blob)[0])
        rounds = json.loads(req["limits_json"]).get("max_rounds") or 1
        limits = self._limits(req, cpu_scale=rounds, max_output_bytes=len(blob) + 1_000_000)
        args = json.loads(req["args_json"])
        inputs = json.loads(job["inputs_json"] or "{}")
        inputs.pop("dp", None)  # only the domain sets DP-SGD's parameters
        plan = None
        if args.get("dp") is not None:
            try:
                plan = dp_training.plan(args, rounds, self.domain.dataset(req["dataset"]).rows, self.domain.policy,
                                        req["analyst"], req["dataset"])
            except FednbError as exc:
                return Outcome("fail", reason=str(exc))
            inputs["dp"] = plan.inputs()
        with _job_data(self.domain, req, job) as data:  # a new worker loads its rows in its first round
            try:
                session = self._session(req, job, limits, data)
            except (RowsNotLoaded, EngineError) as exc:
                return Outcome("fail", reason=str(exc))
            out = session.call(inputs, blob)
        if not session.alive:
            self._drop_session(req["id"])
        if out.status != "ok":
            return charged(self._judge(out, limits, rows, req), out.status, plan)
        try:
            released = tensors.signature(tensors.header(out.blob or b"")[0])
        except tensors.TensorFormatError as exc:
            return charged(Outcome("block", reason=N_("the update is not valid safetensors ({problem})").format(
                problem=exc)), "block", plan)
        if released != expected:
            return charged(Outcome("block", reason=N_("the update does not have exactly the model's parameters, so "
                                               "it cannot be released")), "block", plan)
        value = out.value if isinstance(out.value, dict) else {}
        try:
            result = self._round_result(value, rows)
        except Blocked as exc:
            return charged(Outcome("block", reason=str(exc)), "block", plan)
        shown = {"parameters": tensors.parameter_count(tensors.header(out.blob)[0])}
        if plan is not None:  # exact losses and counts are outside the noise: release weights only
            result = {"n": self.domain.dataset(req["dataset"]).rows, "metrics": {}, "eval": None,
                      "dp": {"noise_multiplier": plan.noise_multiplier, "sample_rate": plan.sample_rate,
                             "steps": plan.steps_per_round, "target_epsilon": plan.epsilon}}
        if args.get("secure_aggregation"):
            result["secure"] = True
        return Outcome("release", result=result, blob=out.blob, disclosure=shown,
                       spend=dp_training.RoundSpend(plan) if plan is not None else None)

    def _session(self, req, job, limits, data: JobData):
        with self._sessions_lock:
            found = self._sessions.get(req["id"])
            if found is not None and found[0].alive:
                self._sessions[req["id"]] = (found[0], time.monotonic())
                return found[0]
        session = self.sandbox.session(self._spec(req, job, limits, data, harness="training", probe=None))
        with self._sessions_lock:
            self._sessions[req["id"]] = (session, time.monotonic())
        return session

    def _drop_session(self, request_id: str) -> None:
        with self._sessions_lock:
            found = self._sessions.pop(request_id, None)
        if found is not None:
            found[0].close()

    def close_idle_sessions(self) -> None:
        """Workers of finished requests, or idle longer than the policy allows, are stopped."""
        with self._sessions_lock:
            ids = list(self._sessions)
        if not ids:
            return
        idle = self.domain.policy.learning.idle_minutes * 60
        open_ = request_rows.still_open(self.domain.store.connect(), list(ids))
        now = time.monotonic()
        for rid in ids:
            with self._sessions_lock:
                found = self._sessions.get(rid)
            if found is not None and (rid not in open_ or now - found[1] > idle):
                self._drop_session(rid)

    def _round_result(self, value: dict, rows: int) -> dict:
        """A round's JSON result; metrics and evaluation pass the output checker (raises Blocked)."""
        rules = self.domain.policy.disclosure
        n = min(max(int(value.get("n") or 0), 0), rows)
        disclosure.check_cohort(n, rules, N_("the samples this round trained on"))
        evaluation = value.get("eval")
        return {"n": n, "metrics": output_check.check_metrics(value.get("metrics"), rules),
                "eval": None if evaluation is None else output_check.check_metrics(evaluation, rules, "the evaluation"),
                "train_seconds": float(value.get("train_seconds") or 0.0)}

    def _judge(self, out: Any, limits: Any, rows: int, req: Any, data: JobData | None = None) -> Outcome:
        """Map a sandbox outcome to release, block or fail, with reasons an analyst can act on.

        ``rows`` is the domain's own count, never the job's. A released value passes the output
        checker (:mod:`fednb.domain.release.output_check`) against the domain's own copy of the
        data (``data``: the rows the job was given, when the domain read them from the owner's
        store); a failure's text is reduced to what the analyst may learn (:mod:`error_text`).
        """
        rules = self.domain.policy.disclosure
        if out.status == "ok":
            try:
                disclosure.check_cohort(rows, rules, N_("the dataset's rows"))
                own = data.frame if data is not None and data.frame is not None else \
                    self.domain.load(req["dataset"], _columns(req))
                checker = output_check.OutputChecker(rules, own,
                                                     unchecked_allowed=rules.allows_unchecked(req["dataset"]))
                value, report = checker.check(out.value)
            except Blocked as exc:
                return Outcome("block", reason=str(exc))
            evidence = checker.evidence()
            return Outcome("release", result=value, disclosure=report,
                           evidence=data.store_evidence(evidence) if data is not None else evidence)
        said = error_text.reduce(out.message, req["code"], show_text=rules.show_error_text)
        reasons = {
            "error": N_("your code raised {error}").format(error=said),
            "timeout": N_("the job ran past its wall-clock limit of {seconds:g} s and was stopped").format(
                seconds=limits.wall_seconds),
            "cpu_limit": N_("the job used more than {seconds:g} CPU seconds and was stopped").format(
                seconds=limits.cpu_seconds),
            "memory": N_("the job ran out of memory (limit {limit} MiB)").format(limit=limits.memory_mb),
            "bad_output": N_("the result could not be released: {problem}").format(problem=_clip(out.message)),
            "killed": N_("the job was stopped by the sandbox: {problem}").format(problem=_clip(out.message)),
        }
        if out.status == "output_too_large":
            return Outcome("block", reason=N_("the result is larger than the domain's limit of "
                                              "{limit:,} bytes; return a smaller aggregate").format(
                limit=limits.max_output_bytes))
        return Outcome("fail", reason=reasons.get(out.status, f"the job ended with status {out.status}"))


def _columns(req) -> list[str] | None:
    """The columns the request declared (the job and the output checker read only these), or None."""
    return json.loads(req["limits_json"]).get("columns")


def _job_data(domain: Domain, req, job) -> JobData:
    """The rows of ``job``: its dataset's file, or the declared columns read from the owner's store."""
    return JobData(domain, req["dataset"], _columns(req), str(job["id"]))


def _clip(message: str, limit: int = 300) -> str:
    """Text the domain itself wrote (sandbox and codec reports), kept short."""
    message = (message or "").strip()
    return message if len(message) <= limit else message[:limit] + "..."
