"""Routes for requests that run in rounds: training (weights as safetensors) and iterative built-ins."""

from typing import Annotated

from fastapi import APIRouter, Path, Response
from fastapi import Request as HttpRequest
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from fednb.domain.api.auth import Analyst, AnyCaller, TheDomain
from fednb.domain.api.errors import CONFLICT, RESPONSES
from fednb.domain.api.waiting import TheNotifier, Wait, round_final
from fednb.domain.review.requests import Conflict
from fednb.models import ErrorBody, Request, Round

router = APIRouter(tags=["training"])
BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
RoundNumber = Annotated[int, Path(ge=1, le=1_000_000)]


@router.post("/v1/requests/{request_id}/rounds", response_model=Round, status_code=202,
             responses={**CONFLICT, 413: {"model": ErrorBody},
                        200: {"description": "With `Accept: application/octet-stream`, a round that is done "
                                             "within `wait` answers with its weights; the round is in the "
                                             "`X-Fednb-Round` header.",
                              "content": BINARY}},
             openapi_extra={"requestBody": {"required": True, "content": {
                 **BINARY,
                 "application/json": {"schema": {"type": "object", "properties": {
                     "round": {"type": "integer", "minimum": 1}, "inputs": {"type": "object"}},
                     "required": ["round"]}}}}})
async def receive_round(request_id: str, request: HttpRequest, c: Analyst, domain: TheDomain,
                       notifier: TheNotifier, wait: Wait = 0):
    """One round. Training: the body is the global weights as safetensors, with the round's
    inputs (``{"round": N, "config": {...}}``) as JSON under the metadata key ``fednb``.
    Iterative built-ins (glm): JSON ``{"round": N, "inputs": {...}}``."""
    body = await request.body()
    r = await run_in_threadpool(domain.receive_round, c.name, request_id, body)
    if wait:
        r = await round_final(domain, notifier, request_id, r.round, c.scope, wait)
    if r.status == "done" and "application/octet-stream" in request.headers.get("accept", ""):
        try:
            data = await run_in_threadpool(domain.round_weights, request_id, r.round, analyst=c.name)
        except Conflict:  # secure aggregation: the weights leave only masked, inside a sum
            data = None
        if data is not None:
            return Response(data, media_type="application/octet-stream",
                            headers={"X-Fednb-Round": r.model_dump_json()})
    return JSONResponse(r.model_dump(), status_code=202)


@router.get("/v1/requests/{request_id}/rounds/{number}", response_model=Round, responses=RESPONSES)
async def get_round(request_id: str, number: RoundNumber, c: AnyCaller, domain: TheDomain, notifier: TheNotifier,
                    wait: Wait = 0) -> Round:
    return await round_final(domain, notifier, request_id, number, c.scope, wait)


@router.get("/v1/requests/{request_id}/rounds/{number}/weights",
            responses={**CONFLICT, 200: {"content": BINARY}})
async def get_round_weights(request_id: str, number: RoundNumber, c: AnyCaller, domain: TheDomain):
    """The round's released weights (safetensors)."""
    data = await run_in_threadpool(domain.round_weights, request_id, number, analyst=c.scope)
    return Response(data, media_type="application/octet-stream")


@router.post("/v1/requests/{request_id}/finish", response_model=Request, responses=CONFLICT)
async def finish(request_id: str, c: Analyst, domain: TheDomain) -> Request:
    """End a request that runs in rounds: no more rounds; the domain stops its worker."""
    return await run_in_threadpool(domain.finish, c.name, request_id)
