"""Accepting requests and deciding on them: by the owner, by policy, or by a prior approval.

A request is bound to the SHA-256 of its code and static arguments (:func:`fednb.models.code_hash`).
The owner approves that hash, for that analyst and dataset; re-submitting it runs without a new
review (when the policy allows), and any change is a new pending request (Fed-BioMed's rule).
"""

from __future__ import annotations

import ast
import json
import secrets
import time
from typing import Any

from fednb.domain.audit import log as audit
from fednb.domain.release import secure_inputs
from fednb.domain.review import inputs
from fednb.domain.review.policy import Policy
from fednb.domain.store import datasets as dataset_rows
from fednb.domain.store import jobs as job_rows
from fednb.domain.store import requests as request_rows
from fednb.domain.store.database import Store
from fednb.errors import Conflict, FednbError, InvalidInput, NotFound
from fednb.locale import N_
from fednb.models import Request, RequestIn, code_hash

_ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
# Decisions an owner took, which a re-submission of the same hash may reuse.
OWNER_APPROVED = ("owner", "prior approval")


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
        raise InvalidInput(N_("a {kind} request needs its source code").format(kind=kind))
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise InvalidInput(N_("the code does not parse: {problem} (line {line})").format(
            problem=exc.msg, line=exc.lineno)) from None
    names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    if entry not in names:
        raise InvalidInput(N_("the code defines no top-level function named {entry!r}").format(entry=entry))


def normalise(req: RequestIn, policy: Policy) -> RequestIn:
    """Validate a submission's shape before anything is stored."""
    from fednb.domain.run import builtins  # the built-ins load pandas; listing and approving never need them

    inputs.check_json(req.args)
    size = len(json.dumps(req.args))
    if size > policy.requests.max_argument_bytes:
        raise InvalidInput(N_("the arguments are {size:,} bytes of JSON; this domain accepts at most "
                             "{limit:,} (they are stored with the request)").format(
            size=size, limit=policy.requests.max_argument_bytes))
    if req.kind == "builtin":
        if req.code:
            raise InvalidInput(N_("a built-in request carries no code"))
        args = builtins.validate_args(req.name, req.args)
        if builtins.iterative(req.name) and not req.limits.max_rounds:
            raise InvalidInput(N_("{name} runs in rounds: state the round budget (limits.max_rounds)").format(
                name=req.name))
        if builtins.iterative(req.name) and req.limits.max_rounds > policy.learning.max_rounds:
            raise InvalidInput(N_("this domain allows at most {rounds} rounds per request").format(
                rounds=policy.learning.max_rounds))
        return req.model_copy(update={"args": args})
    check_code(req.code, req.name, req.kind)
    if req.kind == "training":
        from fednb.domain.review.training_request import check_request

        check_request(req.args, req.code, req.limits.max_rounds, policy)
    return req


def row_to_request(row: Any, *, full: bool = True) -> Request:
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
    if kind != "builtin":
        return kind == "training"
    from fednb.domain.run import builtins  # pandas: only a built-in's approval needs the registry

    return builtins.iterative(name)


def _lane(kind: str) -> str:
    return "builtin" if kind == "builtin" else "sandbox"


def enqueue(tx: Any, request_id: str, kind: str, inputs: Any = None) -> int:
    return job_rows.add(tx, request_id, _lane(kind), None if inputs is None else json.dumps(inputs))


def accept(store: Store, policy: Policy, analyst: str, req: RequestIn) -> tuple[Request, bool]:
    """Record a request and decide what policy allows. Returns (request, created)."""
    req = normalise(req, policy)
    secure_inputs.check_secure_only(policy, req)
    digest = code_hash(req.kind, req.name, req.code, req.args, req.limits.model_dump())
    with store.transaction() as tx:
        if not dataset_rows.exists(tx, req.dataset):
            raise NotFound(N_("this domain has no dataset {dataset!r}").format(dataset=req.dataset))
        if req.kind != "builtin" or req.limits.columns is not None:
            _check_data_access(tx, policy, req)
        if req.idempotency_key:
            row = request_rows.by_idempotency_key(tx, analyst, req.idempotency_key)
            if row is not None:
                return row_to_request(row), False
        same = request_rows.pending_same_code(tx, analyst, req.dataset, digest)
        if same is not None:
            return row_to_request(same), False
        status, decided_by, reason = "pending", None, None
        if policy.auto_approves(req.kind, req.name):
            status, decided_by, reason = "approved", "policy", N_("built-in {name} is auto-approved by policy").format(name=req.name)
        elif policy.review.reuse_approvals:
            prior = request_rows.earliest_approved_by(tx, analyst, req.dataset, digest, tuple(OWNER_APPROVED))
            if prior is not None:
                status, decided_by = "approved", "prior approval"
                reason = N_("same code and arguments as request {request_id}, approved by the owner").format(
                    request_id=prior)
        if status == "pending":
            pending = request_rows.pending_count(tx, analyst)
            if pending >= policy.review.max_pending_per_analyst:
                raise TooManyPending(
                    N_("you already have {pending} pending requests on this domain (the policy's limit); "
                      "wait for the owner's decisions").format(pending=pending))
        now = time.time()
        rid = new_id()
        request_rows.insert(tx, id=rid, analyst=analyst, dataset=req.dataset, kind=req.kind, name=req.name,
                            code=req.code, args_json=json.dumps(req.args), code_hash=digest,
                            description=req.description, limits_json=req.limits.model_dump_json(), status=status,
                            reason=reason, decided_by=decided_by, created_at=now,
                            decided_at=now if decided_by else None, idempotency_key=req.idempotency_key)
        audit.append(tx, analyst, "submit", rid, {"dataset": req.dataset, "kind": req.kind, "name": req.name,
                                                   "code_hash": digest, "description": req.description})
        if status == "approved":
            audit.append(tx, decided_by, "approve", rid, {"code_hash": digest, "reason": reason})
            if not runs_in_rounds(req.kind, req.name):
                enqueue(tx, rid, req.kind)
        row = request_rows.one(tx, rid)
    return row_to_request(row), True


def _check_data_access(tx: Any, policy: Policy, req: RequestIn) -> None:
    """The declared columns exist, and custom code may load a dataset this size (policy's row cap)."""
    from fednb.domain.review import data_access
    from fednb.models import Dataset

    schema = [c.name for c in Dataset.model_validate_json(dataset_rows.meta_json(tx, req.dataset)).columns]
    data_access.check_request(req.kind, req.limits.columns, schema, dataset_rows.row_count(tx, req.dataset) or 0,
                              policy)


def not_visible(request_id: str) -> NotFound:
    """The same answer for a request that does not exist and one that is someone else's."""
    return NotFound(N_("this domain has no request {request_id!r} that you may see; listing your requests shows "
                      "their ids").format(request_id=request_id))


def get(store: Store, request_id: str, *, analyst: str | None = None) -> Request:
    """One request; with ``analyst`` set, only that analyst's own (others' look absent)."""
    row = request_rows.one(store.connect(), request_id)
    if row is None or (analyst is not None and row["analyst"] != analyst):
        raise not_visible(request_id)
    return row_to_request(row)


def resolve_id(store: Store, prefix: str) -> str:
    """The owner may type a unique prefix of an id on the command line."""
    found = request_rows.ids_starting_with(store.connect(), prefix)
    if not found:
        raise NotFound(f"this domain has no request {prefix!r}; `fednb domain requests` lists them")
    if len(found) > 1:
        raise InvalidInput(f"{prefix!r} matches several requests; type more of the id")
    return found[0]


def listing(store: Store, *, analyst: str | None = None, status: str | None = None,
            limit: int = 200, offset: int = 0) -> list[Request]:
    """Requests, pending first, newest first within a status; a page of ``limit`` from ``offset``."""
    found = request_rows.page(store.connect(), analyst=analyst, status=status, limit=limit, offset=offset)
    return [row_to_request(r, full=False) for r in found]


def decide(store: Store, request_id: str, *, approve: bool, actor: str, reason: str = "") -> Request:
    """The owner's decision on a pending request; atomic with its audit row (and job, if approved)."""
    reason = (reason or "").strip()
    if not approve and not reason:
        raise InvalidInput(N_("a denial needs a reason; the analyst will read it"))
    with store.transaction() as tx:
        row = request_rows.one(tx, request_id)
        if row is None:
            raise NotFound(N_("this domain has no request {request_id!r}; listing the requests shows their ids").format(
                request_id=request_id))
        if row["status"] != "pending":
            raise Conflict(N_("request {request_id} is already {status}; only pending requests can be decided").format(
                request_id=request_id, status=row["status"]))
        request_rows.decide(tx, request_id, approve=approve, reason=reason or None)
        audit.append(tx, actor, "approve" if approve else "deny", request_id,
                     {"code_hash": row["code_hash"], "reason": reason})
        if approve and not runs_in_rounds(row["kind"], row["name"]):
            enqueue(tx, request_id, row["kind"])
        row = request_rows.one(tx, request_id)
    return row_to_request(row)
