"""The domain's HTTP API. Routes only: every decision is made by :class:`fednb.domain.Domain`.

Nothing blocks the event loop: every store call runs in a worker thread, and long-polls wait on an
asyncio event, not in a held thread, so one slow query or a hundred waiting clients never stall
another analyst. A request body must arrive within ``BODY_SECONDS``.

Errors are JSON ``{"error": "...", "detail": ...}`` with a 4xx status a client can act on; no
traceback or internal path ever leaves the server (unexpected errors are logged, answered with 500
and a reference the owner can find in the log).
"""


import asyncio
import logging
import secrets
import time
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Response, Security
from fastapi import Request as HttpRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from fednb._version import __version__
from fednb.domain.api import privacy as privacy_api
from fednb.domain.api.ratelimit import FailedTokenLimiter
from fednb.domain.domain import Domain
from fednb.domain.review.requests import Conflict, http_status
from fednb.errors import FednbError, NotFound
from fednb.models import (
    ROUND_FINAL,
    AuditEntry,
    Dataset,
    Decision,
    DomainInfo,
    ErrorBody,
    Request,
    RequestIn,
    Round,
    Session,
)

log = logging.getLogger("fednb.domain.api.app")

MAX_BODY_BYTES = 2_000_000
MAX_WAIT_SECONDS = 60.0
BODY_SECONDS = 30.0  # a client that sends its body slower than this is cut off (slowloris)
RECHECK_SECONDS = 0.25  # long-polls also re-read the store: the CLI may decide from another process
BAD_BODY = ("the request body is not valid JSON: send UTF-8 JSON, not nested too deeply, with integers "
            "of at most 4300 digits")
# Documents the token in the OpenAPI schema; `caller` reads the header itself for its own messages.
BEARER = HTTPBearer(auto_error=False, description="A token from the domain's owner (`fednb domain invite`).")
# What /v1/info shows anyone: the level and which walls held, never the owner's paths or notes.
PUBLIC_ISOLATION = ("level", "netns", "mountns", "pidns", "userns", "landlock_abi", "seccomp", "uid_drop",
                    "tmpfs", "probe")


class ApiError(Exception):
    def __init__(self, status: int, message: str, detail: Any = None, headers: dict | None = None):
        self.status, self.message, self.detail, self.headers = status, message, detail, headers


class Caller:
    def __init__(self, name: str, role: str):
        self.name, self.role = name, role

    @property
    def actor(self) -> str:
        return f"owner:{self.name}" if self.role == "owner" else self.name


class Notifier:
    """Wakes long-polls when the domain changes (called from worker threads)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def bind(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def fire_threadsafe(self) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        if self._event is None or self.loop is not asyncio.get_running_loop():
            self.bind()
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            pass


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes, declared or streamed
    (``large`` for paths ending in ``large_suffix``: a training round's weights)."""

    def __init__(self, app, limit: int, large: int = 0, large_suffix: str = "/rounds"):
        self.app, self.limit, self.large, self.large_suffix = app, limit, large, large_suffix

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = max(self.limit, self.large) if scope.get("path", "").endswith(self.large_suffix) else self.limit
        declared = dict(scope.get("headers") or []).get(b"content-length")
        receive = _deadline(receive, BODY_SECONDS)
        if declared is not None:  # the server reads no more than the declared length
            if not declared.isdigit() or int(declared) > limit:
                return await _too_large(send, limit)
            return await self.app(scope, receive, send)
        # Streamed (chunked): read it all here, up to the limit, so that going over it is a 413
        # before the app starts, not an exception in the middle of its body parsing.
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            seen += len(message.get("body", b""))
            if seen > limit:
                return await _too_large(send, limit)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        return await self.app(scope, replay, send)


def _deadline(receive, seconds: float):
    """``receive`` that reports a disconnect when the body is not complete within ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    complete = False

    async def timed():
        nonlocal complete
        if complete:
            return await receive()
        try:
            message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.001))
        except TimeoutError:
            return {"type": "http.disconnect"}
        complete = message["type"] != "http.request" or not message.get("more_body", False)
        return message

    return timed


async def _too_large(send, limit: int) -> None:
    body = ErrorBody(error=f"request body over {limit:,} bytes").model_dump_json().encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(domain: Domain, *, isolation: dict | None = None) -> FastAPI:
    app = FastAPI(title=f"fednb domain {domain.name}", version=__version__, docs_url=None, redoc_url=None,
                  description="The API of one fednb data domain. Analysts see metadata, mocks and released "
                              "results of approved requests; owners review requests and read the audit log.")
    notifier = Notifier()
    domain.subscribe(notifier.fire_threadsafe)
    info = DomainInfo(name=domain.name, version=__version__, isolation=public_isolation(isolation),
                      description=domain.policy.domain.description)
    access = domain.policy.access
    failed_tokens = FailedTokenLimiter(access.failed_token_limit, access.failed_token_window_seconds,
                                       access.lockout_seconds)

    # -- errors: never a traceback ---------------------------------------------------------------
    def _error(status: int, message: str, detail: Any = None, headers: dict | None = None) -> JSONResponse:
        return JSONResponse(ErrorBody(error=message, detail=detail).model_dump(), status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def _api_error(_: HttpRequest, exc: ApiError):
        return _error(exc.status, exc.message, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: HttpRequest, exc: RequestValidationError):
        problems = [{"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
                    for e in exc.errors()]
        summary = "; ".join(f"{p['where']}: {p['problem']}" for p in problems[:5])
        return _error(422, f"invalid input: {summary}", problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: HttpRequest, exc: StarletteHTTPException):
        message = {404: "no such endpoint; the API is described at /openapi.json",
                   405: f"{request.method} is not allowed here; the API is described at /openapi.json"
                   }.get(exc.status_code, str(exc.detail))
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            message = BAD_BODY
        return _error(exc.status_code, message)

    @app.exception_handler(FednbError)
    async def _fednb(_: HttpRequest, exc: FednbError):
        return _error(http_status(exc), str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(_: HttpRequest, exc: Exception):
        ref = secrets.token_hex(4)
        log.error("unexpected error (ref %s)", ref, exc_info=exc)
        return _error(500, f"the domain hit an unexpected error (reference {ref} in its log); try again later")

    # -- authentication ------------------------------------------------------------------------
    def caller(request: HttpRequest, credentials: Annotated[Any, Security(BEARER)] = None) -> Caller:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "this endpoint needs a token: send 'Authorization: Bearer <token>'",
                           headers={"WWW-Authenticate": "Bearer"})
        address = request.client.host if request.client else "unknown"
        wait = failed_tokens.retry_after(address)
        if wait:
            raise ApiError(429, f"too many refused tokens from your address ({address}); try again in {wait} s",
                           headers={"Retry-After": str(wait)})
        found = domain.authenticate(token.strip())
        if found is None:
            if failed_tokens.record_failure(address):
                log.warning("%s presented %d refused tokens; refused for %g s", address,
                            access.failed_token_limit, access.lockout_seconds)
            state = domain.token_state(token.strip())
            why = "has been revoked" if state == "revoked" else "is not known here"
            raise ApiError(401, f"the token {why}; ask the owner of '{domain.name}' for a new one",
                           headers={"WWW-Authenticate": "Bearer"})
        return Caller(*found)

    def owner(c: Annotated[Caller, Depends(caller)]) -> Caller:
        if c.role != "owner":
            raise ApiError(403, "only the domain's owner may do this")
        return c

    def analyst(c: Annotated[Caller, Depends(caller)]) -> Caller:
        if c.role != "analyst":
            raise ApiError(403, "owner tokens review requests; submit with an analyst token")
        return c

    AnyCaller = Annotated[Caller, Depends(caller)]
    Owner = Annotated[Caller, Depends(owner)]
    Analyst = Annotated[Caller, Depends(analyst)]
    Wait = Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS, description="Seconds to wait for a final state.")]

    def scope(c: Caller) -> str | None:
        return None if c.role == "owner" else c.name

    async def until_final(request_id: str, c: Caller, wait: float) -> Request:
        deadline = time.monotonic() + wait
        while True:
            req = await run_in_threadpool(domain.request, request_id, analyst=scope(c))
            remaining = deadline - time.monotonic()
            if req.final or remaining <= 0:
                return req
            await notifier.wait(min(remaining, RECHECK_SECONDS))

    errors = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 404: {"model": ErrorBody},
              422: {"model": ErrorBody}}

    # -- routes --------------------------------------------------------------------------------
    @app.get("/v1/info", response_model=DomainInfo, tags=["domain"])
    async def get_info() -> DomainInfo:
        """The domain's name, version and the sandbox isolation that holds on its machine. Public."""
        return info

    @app.post("/v1/session", response_model=Session, responses=errors, tags=["domain"])
    async def open_session(c: AnyCaller) -> Session:
        """Who the token belongs to; recorded as a ``connect`` in the audit log."""
        await run_in_threadpool(domain.connect, c.actor)
        return Session(domain=domain.name, analyst=c.name, role=c.role)

    @app.get("/v1/datasets", response_model=list[Dataset], responses=errors, tags=["datasets"])
    async def list_datasets(c: AnyCaller) -> list[Dataset]:
        return await run_in_threadpool(domain.datasets)

    @app.get("/v1/datasets/{name}", response_model=Dataset, responses=errors, tags=["datasets"])
    async def get_dataset(name: str, c: AnyCaller) -> Dataset:
        return await run_in_threadpool(domain.dataset, name)

    @app.get("/v1/datasets/{name}/mock", responses=errors, tags=["datasets"])
    async def get_mock(name: str, c: AnyCaller) -> dict:
        """The synthetic mock: ``{"columns", "dtypes", "data"}`` (rows as lists)."""
        return await run_in_threadpool(_mock_json, domain, name)

    @app.post("/v1/requests", response_model=Request, status_code=201, tags=["requests"],
              responses={**errors, 409: {"model": ErrorBody}, 429: {"model": ErrorBody}})
    async def submit(body: RequestIn, c: Analyst, wait: Wait = 0) -> Request:
        """Submit work on a dataset. Built-ins the policy allows are approved at once; with ``wait``
        the answer comes when the request is final (or the wait is over)."""
        req, _ = await run_in_threadpool(domain.submit, c.name, body)
        return await until_final(req.id, c, wait) if wait else req

    @app.get("/v1/requests", response_model=list[Request], responses=errors, tags=["requests"])
    async def list_requests(c: AnyCaller, response: Response, status: Annotated[str | None, Query(
            pattern="^(pending|approved|denied|running|done|failed|blocked)$")] = None,
            limit: Annotated[int, Query(ge=1, le=1000)] = 200,
            offset: Annotated[int, Query(ge=0, le=2**62)] = 0) -> list[Request]:
        """Analysts see their own requests; the owner sees all, pending first, a page of ``limit``
        from ``offset``; a full page carries the next page's offset in ``X-Fednb-Next-Offset``."""
        page = await run_in_threadpool(domain.requests, analyst=scope(c), status=status, limit=limit,
                                       offset=offset)
        if len(page) == limit:
            response.headers["X-Fednb-Next-Offset"] = str(offset + limit)
        return page

    @app.get("/v1/requests/{request_id}", response_model=Request, responses=errors, tags=["requests"])
    async def get_request(request_id: str, c: AnyCaller, wait: Wait = 0) -> Request:
        return await until_final(request_id, c, wait)

    @app.post("/v1/requests/{request_id}/approve", response_model=Request, tags=["review"],
              responses={**errors, 409: {"model": ErrorBody}})
    async def approve(request_id: str, c: Owner, body: Decision | None = None) -> Request:
        return await run_in_threadpool(domain.approve, request_id, (body or Decision()).reason, actor=c.actor)

    @app.post("/v1/requests/{request_id}/deny", response_model=Request, tags=["review"],
              responses={**errors, 409: {"model": ErrorBody}})
    async def deny(request_id: str, body: Decision, c: Owner) -> Request:
        return await run_in_threadpool(domain.deny, request_id, body.reason, actor=c.actor)

    @app.get("/v1/audit", response_model=list[AuditEntry], responses=errors, tags=["audit"])
    async def get_audit(c: Owner, since: Annotated[int, Query(ge=0, le=2**62)] = 0,
                        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[AuditEntry]:
        return await run_in_threadpool(domain.audit_entries, since=since, limit=limit)

    @app.get("/v1/audit/verify", responses=errors, tags=["audit"])
    async def verify_audit(c: Owner) -> dict:
        v = await run_in_threadpool(domain.verify_audit)
        return {"ok": v.ok, "entries": v.entries, "head": v.head, "problems": v.problems}

    @app.post("/v1/requests/{request_id}/rounds", response_model=Round, status_code=202, tags=["training"],
              responses={**errors, 409: {"model": ErrorBody}, 413: {"model": ErrorBody},
                         200: {"description": "With `Accept: application/octet-stream`, a round that is done "
                                              "within `wait` answers with its weights; the round is in the "
                                              "`X-Fednb-Round` header.",
                               "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                  "application/json": {"schema": {"type": "object", "properties": {
                      "round": {"type": "integer", "minimum": 1}, "inputs": {"type": "object"}},
                      "required": ["round"]}}}}})
    async def submit_round(request_id: str, request: HttpRequest, c: Analyst, wait: Wait = 0):
        """One round. Training: the body is the global weights as safetensors, with the round's
        inputs (``{"round": N, "config": {...}}``) as JSON under the metadata key ``fednb``.
        Iterative built-ins (glm): JSON ``{"round": N, "inputs": {...}}``."""
        body = await request.body()
        r = await run_in_threadpool(domain.submit_round, c.name, request_id, body)
        if wait:
            r = await round_final(request_id, r.round, c, wait)
        if r.status == "done" and "application/octet-stream" in request.headers.get("accept", ""):
            try:
                data = await run_in_threadpool(domain.round_weights, request_id, r.round, analyst=c.name)
            except Conflict:  # secure aggregation: the weights leave only masked, inside a sum
                data = None
            if data is not None:
                return Response(data, media_type="application/octet-stream",
                                headers={"X-Fednb-Round": r.model_dump_json()})
        return JSONResponse(r.model_dump(), status_code=202)

    async def round_final(request_id: str, number: int, c: Caller, wait: float) -> Round:
        deadline = time.monotonic() + wait
        while True:
            r = await run_in_threadpool(domain.round, request_id, number, analyst=scope(c))
            remaining = deadline - time.monotonic()
            if r.status in ROUND_FINAL or remaining <= 0:
                return r
            await notifier.wait(min(remaining, RECHECK_SECONDS))

    @app.get("/v1/requests/{request_id}/rounds/{number}", response_model=Round, responses=errors, tags=["training"])
    async def get_round(request_id: str, number: Annotated[int, Path(ge=1, le=1_000_000)], c: AnyCaller,
                        wait: Wait = 0) -> Round:
        return await round_final(request_id, number, c, wait)

    @app.get("/v1/requests/{request_id}/rounds/{number}/weights", tags=["training"],
             responses={**errors, 409: {"model": ErrorBody},
                        200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
    async def get_round_weights(request_id: str, number: Annotated[int, Path(ge=1, le=1_000_000)], c: AnyCaller):
        """The round's released weights (safetensors)."""
        data = await run_in_threadpool(domain.round_weights, request_id, number, analyst=scope(c))
        return Response(data, media_type="application/octet-stream")

    @app.post("/v1/requests/{request_id}/finish", response_model=Request, responses={**errors, 409: {"model": ErrorBody}},
              tags=["training"])
    async def finish(request_id: str, c: Analyst) -> Request:
        """End a request that runs in rounds: no more rounds; the domain stops its worker."""
        return await run_in_threadpool(domain.finish, c.name, request_id)

    privacy_api.add_routes(app, domain, caller=AnyCaller, analyst=Analyst,
                           responses={**errors, 409: {"model": ErrorBody}})
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES, large=domain.policy.learning.max_model_mb * 1_000_000)
    return app


def public_isolation(isolation: dict | None) -> dict:
    """The sandbox report without its free-text details (they name folders on the owner's machine)."""
    isolation = isolation or {"level": "none"}
    return {k: isolation[k] for k in PUBLIC_ISOLATION if k in isolation}


def _mock_json(domain: Domain, name: str) -> dict:
    import json

    import pandas as pd

    path = domain.mock_path(name)
    if not path.exists():
        raise NotFound(f"dataset {name!r} has no mock")
    df = pd.read_parquet(path)
    return {"columns": list(df.columns), "dtypes": {c: str(t) for c, t in df.dtypes.items()},
            "data": json.loads(df.to_json(orient="values", date_format="iso"))}
