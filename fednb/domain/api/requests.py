"""Routes for requests: analysts submit and follow theirs; the owner lists, approves and denies."""

from typing import Annotated

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from fednb.domain.api.auth import Analyst, AnyCaller, Owner, TheDomain
from fednb.domain.api.errors import CONFLICT, RESPONSES
from fednb.domain.api.waiting import TheNotifier, Wait, until_final
from fednb.models import Decision, ErrorBody, Request, RequestIn

router = APIRouter()


@router.post("/v1/requests", response_model=Request, status_code=201, tags=["requests"],
             responses={**CONFLICT, 429: {"model": ErrorBody}})
async def receive_request(body: RequestIn, c: Analyst, domain: TheDomain, notifier: TheNotifier, wait: Wait = 0) -> Request:
    """Submit work on a dataset. Built-ins the policy allows are approved at once; with ``wait``
    the answer comes when the request is final (or the wait is over)."""
    req, _ = await run_in_threadpool(domain.receive, c.name, body)
    return await until_final(domain, notifier, req.id, c.scope, wait) if wait else req


@router.get("/v1/requests", response_model=list[Request], responses=RESPONSES, tags=["requests"])
async def list_requests(c: AnyCaller, domain: TheDomain, response: Response, status: Annotated[str | None, Query(
        pattern="^(pending|approved|denied|running|done|failed|blocked)$")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
        offset: Annotated[int, Query(ge=0, le=2**62)] = 0) -> list[Request]:
    """Analysts see their own requests; the owner sees all, pending first, a page of ``limit``
    from ``offset``; a full page carries the next page's offset in ``X-Fednb-Next-Offset``."""
    page = await run_in_threadpool(domain.requests, analyst=c.scope, status=status, limit=limit, offset=offset)
    if len(page) == limit:
        response.headers["X-Fednb-Next-Offset"] = str(offset + limit)
    return page


@router.get("/v1/requests/{request_id}", response_model=Request, responses=RESPONSES, tags=["requests"])
async def get_request(request_id: str, c: AnyCaller, domain: TheDomain, notifier: TheNotifier,
                      wait: Wait = 0) -> Request:
    return await until_final(domain, notifier, request_id, c.scope, wait)


@router.post("/v1/requests/{request_id}/approve", response_model=Request, tags=["review"], responses=CONFLICT)
async def approve(request_id: str, c: Owner, domain: TheDomain, body: Decision | None = None) -> Request:
    return await run_in_threadpool(domain.approve, request_id, (body or Decision()).reason, actor=c.actor)


@router.post("/v1/requests/{request_id}/deny", response_model=Request, tags=["review"], responses=CONFLICT)
async def deny(request_id: str, body: Decision, c: Owner, domain: TheDomain) -> Request:
    return await run_in_threadpool(domain.deny, request_id, body.reason, actor=c.actor)
