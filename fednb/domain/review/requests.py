"""Accepting requests and deciding on them: by the owner, by policy, or by a prior approval.

A request is bound to the SHA-256 of its code and static arguments (:func:`fednb.models.code_hash`).
The owner approves that hash, for that analyst and dataset; re-submitting it runs without a new
review (when the policy allows), and any change is a new pending request (Fed-BioMed's rule).
"""

from __future__ import annotations

import ast
import json
import secrets
import sqlite3
import time
from typing import Any

from fednb.domain.audit import log as audit
from fednb.domain.release import secure_inputs
from fednb.domain.review import inputs
from fednb.domain.review.policy import Policy
from fednb.domain.run import builtins
from fednb.domain.store import datasets as dataset_rows
from fednb.domain.store.database import Store
from fednb.errors import FednbError, InvalidInput, NotFound
from fednb.models import Request, RequestIn, code_hash

_ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
# Decisions an owner took, which a re-submission of the same hash may reuse.
OWNER_APPROVED = ("owner", "prior approval")


class Conflict(InvalidInput):
    """The request is not in a state that allows this action."""


class TooManyPending(InvalidInput):
    """The analyst already has the policy's maximum of pending requests."""


def http_status(exc: FednbError) -> int:
    """The HTTP status a domain answers a refusal with."""
    return 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else \
        429 if isinstance(exc, TooManyPending) else 400 if isinstance(exc, InvalidInput) else 500


def new_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))


def check_code(code: str | None, entry: str, kind: str) -> None:
    """Syntax and shape of submitted source: it must parse and define ``entry`` at top level."""
    if not code or not code.strip():
        raise InvalidInput(f"a {kind} request needs its source code")
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise InvalidInput(f"the code does not parse: {exc.msg} (line {exc.lineno})") from None
    names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    if entry not in names:
        raise InvalidInput(f"the code defines no top-level function named {entry!r}")


def normalise(req: RequestIn, policy: Policy) -> RequestIn:
    """Validate a submission's shape before anything is stored."""
    inputs.check_json(req.args)
    size = len(json.dumps(req.args))
    if size > policy.requests.max_argument_bytes:
        raise InvalidInput(f"the arguments are {size:,} bytes of JSON; this domain accepts at most "
                           f"{policy.requests.max_argument_bytes:,} (they are stored with the request)")
    if req.kind == "builtin":
        if req.code:
            raise InvalidInput("a built-in request carries no code")
        args = builtins.validate_args(req.name, req.args)
        if builtins.iterative(req.name) and not req.limits.max_rounds:
            raise InvalidInput(f"{req.name} runs in rounds: state the round budget (limits.max_rounds)")
        if builtins.iterative(req.name) and req.limits.max_rounds > policy.learning.max_rounds:
            raise InvalidInput(f"this domain allows at most {policy.learning.max_rounds} rounds per request")
        return req.model_copy(update={"args": args})
    check_code(req.code, req.name, req.kind)
    if req.kind == "training":
        from fednb.domain.run.rounds import check_request

        check_request(req.args, req.code, req.limits.max_rounds, policy)
    return req


def row_to_request(row: sqlite3.Row, *, full: bool = True) -> Request:
    """A stored request; listings (``full=False``) leave out the code and the result."""
    return Request(
        id=row["id"], analyst=row["analyst"], dataset=row["dataset"], kind=row["kind"], name=row["name"],
        code=row["code"] if full else None, args=json.loads(row["args_json"]), code_hash=row["code_hash"],
        description=row["description"], limits=json.loads(row["limits_json"]), status=row["status"],
        reason=row["reason"], decided_by=row["decided_by"], created_at=row["created_at"],
        decided_at=row["decided_at"], finished_at=row["finished_at"],
        result=json.loads(row["result_json"]) if full and row["result_json"] else None,
        disclosure=json.loads(row["disclosure_json"]) if row["disclosure_json"] else None,
    )


def runs_in_rounds(kind: str, name: str) -> bool:
    """Training and iterative built-ins get no job at approval: the analyst sends each round."""
    return kind == "training" or (kind == "builtin" and builtins.iterative(name))


def _lane(kind: str) -> str:
    return "builtin" if kind == "builtin" else "sandbox"


def enqueue(tx: sqlite3.Connection, request_id: str, kind: str, inputs: Any = None) -> int:
    (job_id,) = tx.execute(
        "INSERT INTO jobs (request_id, lane, status, inputs_json, created_at) VALUES (?, ?, 'queued', ?, ?)"
        " RETURNING id",
        (request_id, _lane(kind), None if inputs is None else json.dumps(inputs), time.time()),
    ).fetchone()
    return int(job_id)


def submit(store: Store, policy: Policy, analyst: str, req: RequestIn) -> tuple[Request, bool]:
    """Record a request and decide what policy allows. Returns (request, created)."""
    req = normalise(req, policy)
    secure_inputs.check_secure_only(policy, req)
    digest = code_hash(req.kind, req.name, req.code, req.args, req.limits.model_dump())
    with store.transaction() as tx:
        if not dataset_rows.exists(tx, req.dataset):
            raise NotFound(f"this domain has no dataset {req.dataset!r}")
        if req.idempotency_key:
            row = tx.execute("SELECT * FROM requests WHERE analyst = ? AND idempotency_key = ?",
                             (analyst, req.idempotency_key)).fetchone()
            if row is not None:
                return row_to_request(row), False
        same = tx.execute(
            "SELECT * FROM requests WHERE analyst = ? AND dataset = ? AND code_hash = ? AND status = 'pending'",
            (analyst, req.dataset, digest)).fetchone()
        if same is not None:
            return row_to_request(same), False
        status, decided_by, reason = "pending", None, None
        if policy.auto_approves(req.kind, req.name):
            status, decided_by, reason = "approved", "policy", f"built-in {req.name} is auto-approved by policy"
        elif policy.review.reuse_approvals:
            prior = tx.execute(
                "SELECT id FROM requests WHERE analyst = ? AND dataset = ? AND code_hash = ? AND decided_by IN (?, ?)"
                " AND status NOT IN ('pending', 'denied') ORDER BY created_at LIMIT 1",
                (analyst, req.dataset, digest, *OWNER_APPROVED)).fetchone()
            if prior is not None:
                status, decided_by = "approved", "prior approval"
                reason = f"same code and arguments as request {prior['id']}, approved by the owner"
        if status == "pending":
            (pending,) = tx.execute("SELECT count(*) FROM requests WHERE analyst = ? AND status = 'pending'",
                                    (analyst,)).fetchone()
            if pending >= policy.review.max_pending_per_analyst:
                raise TooManyPending(
                    f"you already have {pending} pending requests on this domain (the policy's limit); "
                    "wait for the owner's decisions")
        now = time.time()
        rid = new_id()
        tx.execute(
            "INSERT INTO requests (id, analyst, dataset, kind, name, code, args_json, code_hash, description,"
            " limits_json, status, reason, decided_by, created_at, decided_at, idempotency_key)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rid, analyst, req.dataset, req.kind, req.name, req.code, json.dumps(req.args), digest,
             req.description, req.limits.model_dump_json(), status, reason, decided_by, now,
             now if decided_by else None, req.idempotency_key),
        )
        audit.append(tx, analyst, "submit", rid, {"dataset": req.dataset, "kind": req.kind, "name": req.name,
                                                   "code_hash": digest, "description": req.description})
        if status == "approved":
            audit.append(tx, decided_by, "approve", rid, {"code_hash": digest, "reason": reason})
            if not runs_in_rounds(req.kind, req.name):
                enqueue(tx, rid, req.kind)
        row = tx.execute("SELECT * FROM requests WHERE id = ?", (rid,)).fetchone()
    return row_to_request(row), True


def not_visible(request_id: str) -> NotFound:
    """The same answer for a request that does not exist and one that is someone else's."""
    return NotFound(f"this domain has no request {request_id!r} that you may see; listing your requests shows their ids")


def get(store: Store, request_id: str, *, analyst: str | None = None) -> Request:
    """One request; with ``analyst`` set, only that analyst's own (others' look absent)."""
    row = store.query_one("SELECT * FROM requests WHERE id = ?", (request_id,))
    if row is None or (analyst is not None and row["analyst"] != analyst):
        raise not_visible(request_id)
    return row_to_request(row)


def resolve_id(store: Store, prefix: str) -> str:
    """The owner may type a unique prefix of an id on the command line."""
    rows = store.query("SELECT id FROM requests WHERE id LIKE ? || '%' LIMIT 2", (prefix,))
    if not rows:
        raise NotFound(f"this domain has no request {prefix!r}; `fednb domain requests` lists them")
    if len(rows) > 1:
        raise InvalidInput(f"{prefix!r} matches several requests; type more of the id")
    return rows[0]["id"]


def listing(store: Store, *, analyst: str | None = None, status: str | None = None,
            limit: int = 200, offset: int = 0) -> list[Request]:
    """Requests, pending first, newest first within a status; a page of ``limit`` from ``offset``."""
    sql = "SELECT * FROM requests WHERE 1 = 1"
    params: list[Any] = []
    if analyst is not None:
        sql += " AND analyst = ?"
        params.append(analyst)
    if status is not None:
        sql += " AND status = ?"
        params.append(status)
    sql += " ORDER BY status != 'pending', created_at DESC, id LIMIT ? OFFSET ?"
    params += [limit, offset]
    return [row_to_request(r, full=False) for r in store.query(sql, tuple(params))]


def decide(store: Store, request_id: str, *, approve: bool, actor: str, reason: str = "") -> Request:
    """The owner's decision on a pending request; atomic with its audit row (and job, if approved)."""
    reason = (reason or "").strip()
    if not approve and not reason:
        raise InvalidInput("a denial needs a reason; the analyst will read it")
    with store.transaction() as tx:
        row = tx.execute("SELECT * FROM requests WHERE id = ?", (request_id,)).fetchone()
        if row is None:
            raise NotFound(f"this domain has no request {request_id!r}; listing the requests shows their ids")
        if row["status"] != "pending":
            raise Conflict(f"request {request_id} is already {row['status']}; only pending requests can be decided")
        status = "approved" if approve else "denied"
        now = time.time()
        tx.execute(
            "UPDATE requests SET status = ?, reason = ?, decided_by = 'owner', decided_at = ?"
            + (", finished_at = ?" if not approve else "") + " WHERE id = ?",
            (status, reason or None, now, *(() if approve else (now,)), request_id),
        )
        audit.append(tx, actor, "approve" if approve else "deny", request_id,
                     {"code_hash": row["code_hash"], "reason": reason})
        if approve and not runs_in_rounds(row["kind"], row["name"]):
            enqueue(tx, request_id, row["kind"])
        row = tx.execute("SELECT * FROM requests WHERE id = ?", (request_id,)).fetchone()
    return row_to_request(row)
