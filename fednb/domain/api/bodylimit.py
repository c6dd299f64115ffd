"""ASGI middleware that bounds request bodies in size and in time, before the app reads them."""

import asyncio

from fednb.models import ErrorBody

MAX_BODY_BYTES = 2_000_000
BODY_SECONDS = 30.0  # a client that sends its body slower than this is cut off (slowloris)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes, declared or streamed (``large`` for paths ending in
    ``large_suffix``: a training round's weights), and end bodies not complete within ``BODY_SECONDS``."""

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
