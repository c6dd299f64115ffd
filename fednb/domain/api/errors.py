"""Every error the API answers is JSON ``{"error": "...", "detail": ...}`` with a status a client can
act on; no traceback or internal path ever leaves the server (unexpected errors are logged and
answered with 500 and a reference the owner can find in the log)."""

import logging
import secrets
from typing import Any

from fastapi import FastAPI
from fastapi import Request as HttpRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from fednb.domain.review.requests import http_status
from fednb.errors import FednbError
from fednb.locale import N_
from fednb.models import ErrorBody

log = logging.getLogger("fednb.domain.api.app")

BAD_BODY = N_("the request body is not valid JSON: send UTF-8 JSON, not nested too deeply, with integers "
             "of at most 4300 digits")
# What routes declare they may answer besides success
RESPONSES = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 404: {"model": ErrorBody},
             422: {"model": ErrorBody}}
CONFLICT = {**RESPONSES, 409: {"model": ErrorBody}}


class ApiError(Exception):
    def __init__(self, status: int, message: str, detail: Any = None, headers: dict | None = None):
        self.status, self.message, self.detail, self.headers = status, message, detail, headers


def error(status: int, message: str, detail: Any = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(ErrorBody(error=message, detail=detail).model_dump(), status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """The app's exception handlers."""

    @app.exception_handler(ApiError)
    async def _api_error(_: HttpRequest, exc: ApiError):
        return error(exc.status, exc.message, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: HttpRequest, exc: RequestValidationError):
        problems = [{"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
                    for e in exc.errors()]
        summary = "; ".join(f"{p['where']}: {p['problem']}" for p in problems[:5])
        return error(422, N_("invalid input: {summary}").format(summary=summary), problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: HttpRequest, exc: StarletteHTTPException):
        message = {404: N_("no such endpoint; the API is described at /openapi.json"),
                   405: N_("{method} is not allowed here; the API is described at /openapi.json").format(
                       method=request.method)
                   }.get(exc.status_code, str(exc.detail))
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            message = BAD_BODY
        return error(exc.status_code, message)

    @app.exception_handler(FednbError)
    async def _fednb(_: HttpRequest, exc: FednbError):
        return error(http_status(exc), str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(_: HttpRequest, exc: Exception):
        ref = secrets.token_hex(4)
        log.error("unexpected error (ref %s)", ref, exc_info=exc)
        return error(500, N_("the domain hit an unexpected error (reference {ref} in its log); try again later").format(
            ref=ref))
