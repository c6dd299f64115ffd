"""ASGI middleware that answers each analyst in the language they ask for (``Accept-Language``).

The domain decides and records in English (:mod:`fednb.locale`); this layer, outermost, rewrites the
human sentences of a JSON answer (``error`` and ``reason`` fields: refusals, blocks, failures, limits)
into the caller's language just before they leave. Numbers, names and the analyst's own results are
never touched. English callers, and any answer that is not JSON, pass through byte for byte.
"""

from __future__ import annotations

import json

from fednb.locale import negotiate, translate_fields

MAX_TRANSLATED_BYTES = 8_000_000  # larger JSON answers (results, models) are passed on as they are


class AnswerInLanguage:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        language = negotiate(dict(scope.get("headers") or []).get(b"accept-language", b"").decode("latin-1"))
        if language == "en":
            return await self.app(scope, receive, send)
        start: dict | None = None
        chunks: list[bytes] = []
        passing = False

        async def rewrite(message):
            nonlocal start, passing
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                size = headers.get(b"content-length", b"0")
                if (headers.get(b"content-type", b"").startswith(b"application/json")
                        and size.isdigit() and int(size) <= MAX_TRANSLATED_BYTES):
                    start = message
                    return None
                passing = True
                return await send(message)
            if passing or start is None or message["type"] != "http.response.body":
                return await send(message)
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return None
            body = _translated(b"".join(chunks), language)
            headers = [(k, v) for k, v in start.get("headers", []) if k not in (b"content-length", b"content-language")]
            headers += [(b"content-length", str(len(body)).encode()), (b"content-language", language.encode())]
            await send({**start, "headers": headers})
            return await send({"type": "http.response.body", "body": body})

        return await self.app(scope, receive, rewrite)


def _translated(body: bytes, language: str) -> bytes:
    try:
        decoded = json.loads(body)
    except ValueError:
        return body
    translated = translate_fields(decoded, language)
    if translated == decoded:
        return body
    return json.dumps(translated, ensure_ascii=False, separators=(",", ":")).encode()
