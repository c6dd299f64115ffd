"""What every error answer of the domain API must look like, shared by the contract, matrix and fuzz tests."""

from __future__ import annotations

import sys
from typing import Any

# Strings that would mean a traceback or a path on the owner's machine reached a caller.
LEAKS = ("Traceback (most recent call last)", 'File "', "site-packages", "/work/", "sqlite3.", sys.prefix, sys.base_prefix)


def auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def error_problems(status: int, headers: Any, text: str, *, private: tuple[str, ...] = ()) -> list[str]:
    """Everything wrong with one answer: a 5xx, a leak, a 4xx without a clear JSON sentence."""
    headers = {str(k).lower(): ", ".join(v) if isinstance(v, list) else str(v) for k, v in headers.items()}
    problems = []
    if status >= 500:
        problems.append(f"server error {status}")
    for leak in (*LEAKS, *private):
        if leak and leak in text:
            problems.append(f"{leak!r} leaked")
    if 400 <= status < 500:
        import json

        try:
            body = json.loads(text)
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, str):
            problems.append(f"{status} without a JSON {{'error': str}} body")
        elif len(error) < 15 or " " not in error:
            problems.append(f"{status} with an unhelpful message {error!r}")
        if not (headers.get("content-type") or "").startswith("application/json"):
            problems.append(f"{status} not sent as JSON")
        if status == 401 and "www-authenticate" not in headers:
            problems.append("401 without WWW-Authenticate")
        if status == 429 and isinstance(error, str) and "refused tokens" in error and "retry-after" not in headers:
            problems.append("429 without Retry-After")
    return problems


def assert_clean_error(response, status: int | tuple[int, ...]) -> None:
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, (response.status_code, response.text)
    problems = error_problems(response.status_code, response.headers, response.text)
    assert not problems, (problems, response.text[:300])


def run_approved(domain, fn, args: dict | None = None, *, timeout: float = 60):
    """Submit ``fn`` on the one-domain ``(live, dataset)`` pair, approve it as the owner if it waits
    for review, wait; returns the domain's part of the request."""
    live, ds = domain
    req = ds.submit(fn, args=args or {})
    part = req.parts[0]
    if part.status == "pending":
        d = live.domain()
        d.approve(part.id, "reviewed")
        d.close()
    req.wait(timeout)
    return req.parts[0]


def builtin_round(client: Any, args: dict, inputs: dict | None = None, rid: str | None = None, number: int = 1,
                  *, name: str) -> tuple[str, dict]:
    """Round ``number`` of an iterative built-in ``name`` over ``patients`` through the HTTP API (the
    request is submitted first when ``rid`` is None): its id and the round's final state."""
    if rid is None:
        body = {"dataset": "patients", "kind": "builtin", "name": name, "args": args, "limits": {"max_rounds": 5}}
        r = client.post("/v1/requests", json=body, params={"wait": 0})
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
    r = client.post(f"/v1/requests/{rid}/rounds", json={"round": number, "inputs": inputs or {}},
                    params={"wait": 60})
    assert r.status_code == 202, r.text
    final = r.json()
    for _ in range(10):
        if final["status"] in ("done", "failed", "blocked"):
            break
        final = client.get(f"/v1/requests/{rid}/rounds/{number}", params={"wait": 60}).json()
    return rid, final


def released(final: dict) -> dict:
    """The result of a request (or round) that must have been released."""
    assert final["status"] == "done", (final["status"], final.get("reason"))
    return final["result"]


def ask_builtin(client: Any, name: str, **args) -> dict:
    """Submit built-in ``name`` over ``patients`` through the HTTP API and wait for its final state."""
    body = {"dataset": "patients", "kind": "builtin", "name": name, "args": args}
    r = client.post("/v1/requests", json=body, params={"wait": 60})
    assert r.status_code == 201, r.text
    final = r.json()
    if final["status"] not in ("done", "blocked", "failed"):
        final = client.get(f"/v1/requests/{final['id']}", params={"wait": 60}).json()
    return final
