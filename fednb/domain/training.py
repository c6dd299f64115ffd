"""Training requests on the domain: rounds are jobs of one approved request.

The owner approves a training request once, for its code hash and its round budget
(``limits.max_rounds``). Each round the analyst sends the global weights (safetensors, with the
round's inputs in its metadata); the round is queued as a job, runs in the request's kept-alive
sandbox session, and releases updated weights that must have exactly the model's parameters.
"""

from __future__ import annotations

import hashlib
import json
import time

from fednb import tensors
from fednb.domain import audit
from fednb.domain.policy import Policy
from fednb.domain.review import Conflict, enqueue, get, row_to_request
from fednb.domain.store import Store
from fednb.errors import InvalidInput, NotFound
from fednb.models import Request, Round

OPEN = ("approved", "running")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def row_to_round(row) -> Round:
    result = json.loads(row["result_json"]) if row["result_json"] else {}
    return Round(request_id=row["request_id"], round=row["round"], status=row["status"], reason=row["reason"],
                 n=result.get("n"), metrics=result.get("metrics") or {}, eval=result.get("eval"),
                 weights_sha256=_sha(row["result_blob"]) if row["result_blob"] and not result.get("secure") else None,
                 dp=result.get("dp"))


def check_request(args: dict, code: str, limits_max_rounds: int | None, policy: Policy) -> None:
    """Shape of a training request at submission (the code itself is checked like any function)."""
    import ast

    model = args.get("model")
    if not isinstance(model, str):
        raise InvalidInput("a training request names its model class in args['model']")
    tree = ast.parse(code)
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    if model not in classes:
        raise InvalidInput(f"the code defines no class {model!r} for the model")
    if args.get("evaluate") and args["evaluate"] not in functions:
        raise InvalidInput(f"the code defines no function {args['evaluate']!r} for evaluation")
    for key in ("model_args", "config"):
        if not isinstance(args.get(key, {}), dict):
            raise InvalidInput(f"args[{key!r}] must be a dict")
    if not isinstance(args.get("secure_aggregation", False), bool):
        raise InvalidInput("args['secure_aggregation'] must be true or false")
    from fednb.domain import dp_training

    dp_training.check(args, policy)
    if not policy.learning.enabled:
        raise InvalidInput("this domain does not accept training requests (policy: learning.enabled = false)")
    if limits_max_rounds is None:
        raise InvalidInput("a training request states its round budget (limits.max_rounds)")
    if limits_max_rounds > policy.learning.max_rounds:
        raise InvalidInput(f"this domain allows at most {policy.learning.max_rounds} rounds per request")


def submit_round(store: Store, policy: Policy, analyst: str, request_id: str, blob: bytes) -> Round:
    """Queue one round with the global weights in ``blob``; resubmitting a round is idempotent."""
    if len(blob) > policy.learning.max_model_mb * 1_000_000:
        raise InvalidInput(f"the weights are over this domain's limit of {policy.learning.max_model_mb} MB")
    try:
        layout, metadata = tensors.header(blob)
        inputs = tensors.inputs_of(metadata)
    except tensors.TensorFormatError as exc:
        raise InvalidInput(f"the weights are not valid safetensors: {exc}") from None
    number = inputs.get("round")
    if not isinstance(number, int) or number < 1:
        raise InvalidInput("the round inputs need a round number >= 1 (metadata 'fednb': {\"round\": N})")
    with store.transaction() as tx:
        req = tx.execute("SELECT * FROM requests WHERE id = ?", (request_id,)).fetchone()
        if req is None or req["analyst"] != analyst:
            raise NotFound(f"no request {request_id!r}")
        if req["kind"] != "training":
            raise InvalidInput(f"request {request_id} is not a training request")
        if req["status"] not in OPEN:
            raise Conflict(f"request {request_id} is {req['status']}; rounds run only on an approved training request")
        existing = tx.execute("SELECT * FROM jobs WHERE request_id = ? AND round = ?", (request_id, number)).fetchone()
        if existing is not None and existing["status"] != "failed":
            return row_to_round(existing)
        first = tx.execute("SELECT input_blob FROM jobs WHERE request_id = ? ORDER BY id LIMIT 1",
                           (request_id,)).fetchone()
        if first is not None and tensors.signature(tensors.header(first["input_blob"])[0]) != tensors.signature(layout):
            raise InvalidInput("these weights do not have the same parameters as the earlier rounds' model")
        budget = json.loads(req["limits_json"]).get("max_rounds") or policy.learning.max_rounds
        (used,) = tx.execute("SELECT count(DISTINCT round) FROM jobs WHERE request_id = ?", (request_id,)).fetchone()
        if existing is None and used >= budget:
            raise Conflict(f"the round budget of {budget} approved for request {request_id} is used up")
        if existing is not None:
            tx.execute("DELETE FROM jobs WHERE id = ?", (existing["id"],))
        job = enqueue(tx, request_id, "training", inputs)
        tx.execute("UPDATE jobs SET round = ?, input_blob = ? WHERE id = ?", (number, blob, job))
        tx.execute("UPDATE requests SET status = 'running' WHERE id = ? AND status = 'approved'", (request_id,))
        audit.append(tx, analyst, "round", request_id, {"round": number, "weights_sha256": _sha(blob),
                                                        "parameters": tensors.parameter_count(layout)})
        row = tx.execute("SELECT * FROM jobs WHERE id = ?", (job,)).fetchone()
    return row_to_round(row)


def get_round(store: Store, request_id: str, number: int, *, analyst: str | None = None) -> Round:
    get(store, request_id, analyst=analyst)  # visibility: an analyst sees only their own
    row = store.query_one("SELECT * FROM jobs WHERE request_id = ? AND round = ?", (request_id, number))
    if row is None:
        raise NotFound(f"request {request_id} has no round {number}")
    return row_to_round(row)


def round_weights(store: Store, request_id: str, number: int, *, analyst: str | None = None) -> bytes:
    req = get(store, request_id, analyst=analyst)
    if req.args.get("secure_aggregation"):
        raise Conflict(f"request {request_id} uses secure aggregation: its weights leave this domain only masked, "
                       "inside a sum over domains (POST /v1/secagg/...)")
    row = store.query_one("SELECT status, result_blob FROM jobs WHERE request_id = ? AND round = ?",
                          (request_id, number))
    if row is None:
        raise NotFound(f"request {request_id} has no round {number}")
    if row["status"] != "done" or row["result_blob"] is None:
        raise Conflict(f"round {number} of request {request_id} is {row['status']}; it released no weights")
    return bytes(row["result_blob"])


def finish(store: Store, request_id: str, analyst: str) -> Request:
    """The analyst ends a training request: no more rounds; its session is closed."""
    with store.transaction() as tx:
        req = tx.execute("SELECT * FROM requests WHERE id = ?", (request_id,)).fetchone()
        if req is None or req["analyst"] != analyst:
            raise NotFound(f"no request {request_id!r}")
        if req["kind"] != "training":
            raise InvalidInput(f"request {request_id} is not a training request")
        if req["status"] in OPEN:
            (rounds,) = tx.execute("SELECT count(*) FROM jobs WHERE request_id = ? AND status = 'done'",
                                   (request_id,)).fetchone()
            tx.execute("UPDATE requests SET status = 'done', finished_at = ? WHERE id = ?", (time.time(), request_id))
            audit.append(tx, analyst, "finish", request_id, {"rounds_released": rounds})
        row = tx.execute("SELECT * FROM requests WHERE id = ?", (request_id,)).fetchone()
    return row_to_request(row)
