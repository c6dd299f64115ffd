"""ASGI middleware that bounds request bodies in size and in time, before the app reads them."""

import asyncio

from fednb.locale import N_
from fednb.models import ErrorBody

MAX_BODY_BYTES = 2_000_000
BODY_SECONDS = 30.0  # a client that sends its body slower than this is cut off (slowloris)
LARGE_BODY_SECONDS = 600.0  # a training round's weights: 50 MB at 85 kB/s


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes, declared or streamed (``large`` for paths ending in
    ``large_suffix``: a training round's weights), and end bodies not complete within ``BODY_SECONDS``."""

    def __init__(self, app, limit: int, large: int = 0, large_suffix: str = "/rounds"):
        self.app, self.limit, self.large, self.large_suffix = app, limit, large, large_suffix

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        large = scope.get("path", "").endswith(self.large_suffix)
        limit, seconds = (max(self.limit, self.large), LARGE_BODY_SECONDS) if large else (self.limit, BODY_SECONDS)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await _too_large(send, limit)
        # Read the whole body here, within the size and time limits, so that going over either is a
        # 413 or 408 before the app starts, not an exception in the middle of its body parsing.
        try:
            body = await asyncio.wait_for(_read(receive, limit), seconds)
        except TimeoutError:
            return await _refuse(send, 408, N_("the request body did not arrive within {seconds:g} s").format(
                seconds=seconds))
        if body is None:
            return  # the client went away
        if len(body) > limit:
            return await _too_large(send, limit)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


async def _read(receive, limit: int) -> bytes | None:
    """The body, or None if the client went away; stops reading one byte over ``limit``."""
    chunks, seen = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        seen += len(chunk)
        chunks.append(chunk)
        if seen > limit or not message.get("more_body", False):
            return b"".join(chunks)


async def _too_large(send, limit: int) -> None:
    await _refuse(send, 413, N_("request body over {limit:,} bytes").format(limit=limit))


async def _refuse(send, status: int, message: str) -> None:
    body = ErrorBody(error=message).model_dump_json().encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
