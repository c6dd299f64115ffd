"""Talking to one domain: HTTP with timeouts and retries; every failure a fednb error naming it.

All network I/O runs on one background asyncio loop (:func:`run`), so the analyst's code stays
synchronous, a fan-out to 100 domains costs no thread per domain, and it works inside Jupyter,
whose kernel already runs a loop of its own.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import threading
import uuid
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlparse

import httpx

from fednb import i18n
from fednb.client import tls
from fednb.errors import AuthenticationError, CertificateError, DomainError, DomainUnavailable, NotFound

SERVER_MAX_WAIT = 60.0  # the domain caps one long-poll at this many seconds


class _LoopThread:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="fednb-io", daemon=True).start()
                self._loop = loop
            return self._loop


_io = _LoopThread()


def run(coro: Coroutine, timeout: float | None = None) -> Any:
    """Run ``coro`` on fednb's I/O loop and wait for it (Ctrl-C cancels it)."""
    future = asyncio.run_coroutine_threadsafe(coro, _io.loop)
    try:
        return future.result(timeout)
    except BaseException:
        future.cancel()
        raise


async def gather(*coros: Coroutine, return_exceptions: bool = False) -> list:
    """``asyncio.gather`` as a coroutine, so that it is created on the I/O loop, not the caller's thread."""
    return await asyncio.gather(*coros, return_exceptions=return_exceptions)


async def fan_out(calls: dict[str, Any]) -> tuple[dict[str, Any], dict[str, DomainError]]:
    """Send {key: coroutine} to every domain at once; returns ({key: value}, {key: the DomainError it raised}).

    A domain's failure is collected, not raised, so one domain down never hides the others' answers."""
    keys = list(calls)
    values = await asyncio.gather(*calls.values(), return_exceptions=True)
    ok, problems = {}, {}
    for key, value in zip(keys, values):
        if isinstance(value, DomainError):
            problems[key] = value
        elif isinstance(value, BaseException):
            raise value
        else:
            ok[key] = value
    return ok, problems


def _label(url: str) -> str:
    p = urlparse(url)
    return p.netloc or url


class DomainClient:
    """One domain's API for one analyst (or owner) token."""

    def __init__(self, url: str, token: str | None, *, timeout: float = 10.0, verify: bool | str = True,
                 retries: int = 2):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http(s) URL")
        self.url = url.rstrip("/")
        self.token = token
        self.name = _label(self.url)  # replaced by the domain's own name once it answers
        self.timeout = timeout
        self.retries = retries
        self.verify = tls.trust(verify)
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            self._http = httpx.AsyncClient(base_url=self.url, headers=headers, verify=self.verify,
                                           timeout=httpx.Timeout(self.timeout),
                                           limits=httpx.Limits(max_connections=16, max_keepalive_connections=8))
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def __repr__(self) -> str:
        return f"DomainClient({self.name!r}, {self.url!r})"

    # -- transport -----------------------------------------------------------------------------
    async def call(self, method: str, path: str, *, json: Any = None, params: dict | None = None,
                   extra_wait: float = 0.0, content: bytes | None = None, raw: bool = False,
                   idempotent: bool = False, accept: str | None = None) -> Any:
        """One API call. Connection failures are retried (GETs, and POSTs that are safe to repeat).
        With ``raw``, a successful answer comes back as the ``httpx.Response`` itself."""
        timeout = httpx.Timeout(self.timeout + extra_wait, connect=self.timeout)
        headers = {"content-type": "application/octet-stream"} if content is not None else {}
        headers["accept-language"] = i18n.get_language()  # the domain's refusals come back in it (fednb.locale)
        if accept:
            headers["accept"] = accept
        attempt = 0
        while True:
            try:
                response = await self._client().request(method, path, json=json, params=params, timeout=timeout,
                                                         content=content, headers=headers)
                break
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                failed_tls = tls.ssl_error(exc)
                if failed_tls is not None:  # not transient: retrying cannot help
                    certificate, why = tls.explain(failed_tls, self.url)
                    raise (CertificateError if certificate else DomainUnavailable)(self.name, why) from None
                retriable = method == "GET" or idempotent or (isinstance(json, dict) and json.get("idempotency_key"))
                if attempt < self.retries and retriable:
                    attempt += 1
                    await asyncio.sleep(0.2 * attempt)
                    continue
                raise DomainUnavailable(self.name, f"cannot reach {self.url} ({_why(exc)}); is the domain running?") from None
            except httpx.TimeoutException:
                raise DomainUnavailable(self.name, f"did not answer within {self.timeout + extra_wait:g} s") from None
            except httpx.HTTPError as exc:
                raise DomainUnavailable(self.name, f"connection failed: {_why(exc)}") from None
        if raw and response.is_success:
            return response
        return self._decode(response)

    def _decode(self, response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success:
            if body is None and response.content:
                raise DomainError(self.name, f"sent an answer that is not JSON (HTTP {response.status_code})")
            return body
        message = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), str) else \
            f"HTTP {response.status_code} without an explanation"
        status = response.status_code
        if status == 401:
            raise AuthenticationError(self.name, message, status=status)
        if status == 404:
            raise _RemoteNotFound(self.name, message, status=status)
        if status >= 500:
            raise DomainError(self.name, f"internal error: {message}", status=status)
        raise DomainError(self.name, message, status=status)

    # -- the API -------------------------------------------------------------------------------
    async def info(self) -> dict:
        info = await self.call("GET", "/v1/info")
        self.name = info.get("name", self.name)
        return info

    async def session(self) -> dict:
        return await self.call("POST", "/v1/session")

    async def datasets(self) -> list[dict]:
        return await self.call("GET", "/v1/datasets")

    async def dataset(self, name: str) -> dict:
        return await self.call("GET", f"/v1/datasets/{_seg(name)}")

    async def mock(self, name: str) -> dict:
        return await self.call("GET", f"/v1/datasets/{_seg(name)}/mock")

    async def post_request(self, request: dict, *, wait: float = 0) -> dict:
        body = {**request, "idempotency_key": request.get("idempotency_key") or uuid.uuid4().hex}
        return await self.call("POST", "/v1/requests", json=body, params={"wait": min(wait, SERVER_MAX_WAIT)},
                               extra_wait=min(wait, SERVER_MAX_WAIT))

    async def request(self, request_id: str, *, wait: float = 0) -> dict:
        wait = min(wait, SERVER_MAX_WAIT)
        return await self.call("GET", f"/v1/requests/{_seg(request_id)}", params={"wait": wait}, extra_wait=wait)

    async def requests(self, status: str | None = None) -> list[dict]:
        return await self.call("GET", "/v1/requests", params={"status": status} if status else None)

    async def approve(self, request_id: str, reason: str = "") -> dict:
        return await self.call("POST", f"/v1/requests/{_seg(request_id)}/approve", json={"reason": reason})

    async def deny(self, request_id: str, reason: str) -> dict:
        return await self.call("POST", f"/v1/requests/{_seg(request_id)}/deny", json={"reason": reason})

    async def post_round(self, request_id: str, weights: bytes, *, wait: float = 0) -> tuple[dict, bytes | None]:
        """Send one round's global weights (safetensors carrying the round number: safe to repeat).

        Returns (the round, its released weights if it finished within ``wait``): one round trip.
        """
        wait = min(wait, SERVER_MAX_WAIT)
        response = await self.call("POST", f"/v1/requests/{_seg(request_id)}/rounds", content=weights,
                                   params={"wait": wait}, extra_wait=wait, idempotent=True, raw=True,
                                   accept="application/octet-stream")
        if response.headers.get("content-type", "").startswith("application/octet-stream"):
            try:
                return json.loads(response.headers["x-fednb-round"]), response.content
            except (KeyError, ValueError):
                raise DomainError(self.name, "sent weights without a valid X-Fednb-Round header") from None
        return self._decode(response), None

    async def post_inputs_round(self, request_id: str, number: int, inputs: dict, *, wait: float = 0) -> dict:
        """One round of an iterative built-in (e.g. a GLM's coefficients); safe to repeat."""
        wait = min(wait, SERVER_MAX_WAIT)
        return await self.call("POST", f"/v1/requests/{_seg(request_id)}/rounds", json={"round": int(number), "inputs": inputs},
                               params={"wait": wait}, extra_wait=wait, idempotent=True)

    async def round(self, request_id: str, number: int, *, wait: float = 0) -> dict:
        wait = min(wait, SERVER_MAX_WAIT)
        return await self.call("GET", f"/v1/requests/{_seg(request_id)}/rounds/{int(number)}",
                               params={"wait": wait}, extra_wait=wait)

    async def round_weights(self, request_id: str, number: int) -> bytes:
        response = await self.call("GET", f"/v1/requests/{_seg(request_id)}/rounds/{int(number)}/weights", raw=True)
        return response.content

    async def finish(self, request_id: str) -> dict:
        return await self.call("POST", f"/v1/requests/{_seg(request_id)}/finish", idempotent=True)

    async def audit(self, since: int = 0) -> list[dict]:
        return await self.call("GET", "/v1/audit", params={"since": since})


class _RemoteNotFound(DomainError, NotFound):
    """A 404 from a domain: both a DomainError (names the domain) and a NotFound."""


def _seg(value: str) -> str:
    from urllib.parse import quote

    return quote(str(value), safe="")


def _why(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.split("\n")[0][:200]


@atexit.register
def _shutdown() -> None:
    loop = _io._loop
    if loop is not None and not loop.is_closed():
        loop.call_soon_threadsafe(loop.stop)
