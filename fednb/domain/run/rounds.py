"""Requests that run in rounds: training, and iterative built-ins such as the GLM's IRLS.

The owner (or the policy, for a built-in) approves such a request once, for its code or static
arguments and its round budget (``limits.max_rounds``). Each round the analyst sends the round's
inputs: for training, the global weights as safetensors with the inputs in its metadata; for a
built-in, JSON (``{"round": N, "inputs": {...}}``, e.g. a GLM's current coefficients). Every round
queued counts against the budget, retries of failed or blocked rounds included. The round is queued
as a job; training rounds run in the request's kept-alive sandbox session and release
weights with exactly the model's parameters; built-in rounds release their aggregate.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fednb import tensors
from fednb.domain.audit import log as audit
from fednb.domain.review.policy import Policy
from fednb.domain.review.requests import Conflict, enqueue, get, not_visible, row_to_request, runs_in_rounds
from fednb.domain.run import builtins
from fednb.domain.store import audit as audit_rows
from fednb.domain.store import jobs as job_rows
from fednb.domain.store import requests as request_rows
from fednb.domain.store.database import Store
from fednb.errors import InvalidInput, NotFound
from fednb.locale import N_
from fednb.models import Request, Round

OPEN = ("approved", "running")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def row_to_round(row) -> Round:
    result = json.loads(row["result_json"]) if row["result_json"] else {}
    if row["lane"] == "builtin":
        return Round(request_id=row["request_id"], round=row["round"], status=row["status"], reason=row["reason"],
                     n=result.get("n"), result=result or None)
    return Round(request_id=row["request_id"], round=row["round"], status=row["status"], reason=row["reason"],
                 n=result.get("n"), metrics=result.get("metrics") or {}, eval=result.get("eval"),
                 train_seconds=result.get("train_seconds"),
                 weights_sha256=_sha(row["result_blob"]) if row["result_blob"] and not result.get("secure") else None,
                 dp=result.get("dp"))


def _weights_round(blob: bytes, policy: Policy) -> tuple[int, dict, dict]:
    """(round number, inputs, tensor layout) of a training round's body."""
    if len(blob) > policy.learning.max_model_mb * 1_000_000:
        raise InvalidInput(N_("the weights are over this domain's limit of {limit} MB").format(
            limit=policy.learning.max_model_mb))
    try:
        layout, metadata = tensors.header(blob)
        inputs = tensors.inputs_of(metadata)
    except tensors.TensorFormatError as exc:
        raise InvalidInput(f"the weights are not valid safetensors: {exc}") from None
    return _number(inputs.get("round")), inputs, layout


def _json_round(body: bytes, name: str) -> tuple[int, dict]:
    """(round number, validated inputs) of an iterative built-in's round: ``{"round": N, "inputs": {...}}``."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput('a round of a built-in is JSON: {"round": N, "inputs": {...}}') from None
    if not isinstance(parsed, dict) or set(parsed) - {"round", "inputs"} or not isinstance(parsed.get("inputs", {}), dict):
        raise InvalidInput('a round of a built-in is JSON: {"round": N, "inputs": {...}}')
    return _number(parsed.get("round")), builtins.validate_round_inputs(name, parsed.get("inputs", {}))


def _number(value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidInput("the round inputs need a round number >= 1 (\"round\": N)")
    return value


# Outcomes of a round that depend on what the analyst's code did with the data.
LEARNABLE = ("error", "timeout", "cpu_limit", "memory", "output_too_large", "bad_output", "block")


def charged(outcome: Any, status: str, plan: Any) -> Any:
    """Under DP training, a round that fails or is blocked after the analyst's code ran on the data
    is charged to the privacy budget like a released round.

    Whether it failed, how (the exception's type and line, a time, CPU or memory limit, an output
    too large) and why it was blocked can all depend on the data, and none of that is covered by
    DP-SGD's noise; charging the round caps how many such outcomes an analyst can collect within the
    same budget. Rounds refused before the code touches the data (no sandbox, weaker isolation than
    the policy asks, the DP plan refused, too few rows) and sandbox breakdowns (``killed``: the
    domain's fault) cost nothing. Without DP, failed rounds still count against the round budget.
    """
    if plan is not None and status in LEARNABLE:
        from fednb.domain.release import dp_training

        outcome.spend = dp_training.RoundSpend(plan)
    return outcome



def attempts(tx, request_id: str) -> int:
    """Rounds queued for a request so far, each retry of a failed or blocked round included.

    A failed or blocked round still tells the analyst something (that it failed, how, and why it was
    blocked), and its code ran on the data; if retries were free, a round that fails on purpose
    would be an unmetered channel. The audit log holds one ``round`` row per queued round.
    """
    return audit_rows.count_for(tx, request_id, "round")


def accept_round(store: Store, policy: Policy, analyst: str, request_id: str, body: bytes) -> Round:
    """Queue one round; resubmitting a round (same number) is idempotent unless it failed or was
    blocked: then it runs again, and counts against the round budget again (:func:`attempts`)."""
    req = request_rows.one(store.connect(), request_id)
    if req is None or req["analyst"] != analyst:
        raise not_visible(request_id)
    if not runs_in_rounds(req["kind"], req["name"]):
        raise InvalidInput(N_("request {request_id} does not run in rounds").format(request_id=request_id))
    training = req["kind"] == "training"
    if training:
        number, inputs, layout = _weights_round(body, policy)
    else:
        number, inputs = _json_round(body, req["name"])
    with store.transaction() as tx:
        req = request_rows.one(tx, request_id)
        if req["status"] not in OPEN:
            raise Conflict(N_("request {request_id} is {status}; rounds run only on an approved request").format(
                request_id=request_id, status=req["status"]))
        existing = job_rows.of_round(tx, request_id, number)
        if existing is not None and existing["status"] not in ("failed", "blocked"):
            return row_to_round(existing)
        first = job_rows.first_input(tx, request_id)
        if training and first is not None and \
                tensors.signature(tensors.header(first)[0]) != tensors.signature(layout):
            raise InvalidInput(N_("these weights do not have the same parameters as the earlier rounds' model"))
        budget = json.loads(req["limits_json"]).get("max_rounds") or policy.learning.max_rounds
        used = attempts(tx, request_id)
        if used >= budget:
            raise Conflict(N_("the round budget of {budget} approved for request {request_id} is used up "
                              "({used} rounds sent, failed and blocked ones included)").format(
                budget=budget, request_id=request_id, used=used))
        if existing is not None:
            job_rows.drop(tx, existing["id"])
        job = enqueue(tx, request_id, req["kind"], inputs)
        job_rows.set_round(tx, job, number, body if training else None)
        request_rows.mark_running(tx, request_id)
        detail = {"weights_sha256": _sha(body), "parameters": tensors.parameter_count(layout)} if training else \
            {"inputs_sha256": _sha(json.dumps(inputs, sort_keys=True).encode())}
        audit.append(tx, analyst, "round", request_id, {"round": number, **detail})
        row = job_rows.one(tx, job)
    return row_to_round(row)


def get_round(store: Store, request_id: str, number: int, *, analyst: str | None = None) -> Round:
    get(store, request_id, analyst=analyst)  # visibility: an analyst sees only their own
    row = job_rows.of_round(store.connect(), request_id, number)
    if row is None:
        raise NotFound(N_("request {request_id} has no round {number} yet; send it with POST "
                       "/v1/requests/{request_id}/rounds").format(request_id=request_id, number=number))
    return row_to_round(row)


def round_weights(store: Store, request_id: str, number: int, *, analyst: str | None = None) -> bytes:
    req = get(store, request_id, analyst=analyst)
    if req.args.get("secure_aggregation"):
        raise Conflict(N_("request {request_id} uses secure aggregation: its weights leave this domain only masked, "
                          "inside a sum over domains (POST /v1/secagg/...)").format(request_id=request_id))
    row = job_rows.of_round(store.connect(), request_id, number)
    if row is None:
        raise NotFound(N_("request {request_id} has no round {number} yet; send it with POST "
                       "/v1/requests/{request_id}/rounds").format(request_id=request_id, number=number))
    if row["status"] != "done" or row["result_blob"] is None:
        raise Conflict(N_("round {number} of request {request_id} is {status}; it released no weights").format(
            number=number, request_id=request_id, status=row["status"]))
    return bytes(row["result_blob"])


def finish(store: Store, request_id: str, analyst: str) -> Request:
    """The analyst ends a request that runs in rounds: no more rounds; a training worker is closed."""
    with store.transaction() as tx:
        req = request_rows.one(tx, request_id)
        if req is None or req["analyst"] != analyst:
            raise not_visible(request_id)
        if not runs_in_rounds(req["kind"], req["name"]):
            raise InvalidInput(N_("request {request_id} does not run in rounds").format(request_id=request_id))
        if req["status"] in OPEN:
            rounds = job_rows.rounds_done(tx, request_id)
            request_rows.finish_rounds(tx, request_id)
            audit.append(tx, analyst, "finish", request_id, {"rounds_released": rounds})
        row = request_rows.one(tx, request_id)
    return row_to_request(row)
