"""Every endpoint answers bad input with a clear 4xx JSON error, never a traceback or an internal path;
and the authorization matrix: who may call what, for every route the OpenAPI schema lists."""

from __future__ import annotations

import itertools
import re

import httpx
import pytest

from fednb.domain import Domain
from tests.api_support import assert_clean_error as _assert_clean_error
from tests.api_support import auth as _auth


@pytest.fixture(scope="module")
def api(hospitals):
    live = hospitals[0]
    d = Domain(live.path)
    bob = d.invite("bob")
    revoked = d.invite("rex")
    d.revoke("rex")
    d.close()
    with httpx.Client(base_url=live.url, timeout=30) as client:
        alice_req = client.post("/v1/requests", headers=_auth(live.token), json={
            "dataset": "patients", "kind": "function", "name": "f", "code": "def f(df):\n    return 1\n"}).json()
        api = {"client": client, "live": live, "tokens": {
            "none": None, "bad": "fednb_" + "x" * 43, "revoked": revoked, "alice": live.token, "bob": bob,
            "owner": live.owner_token}, "rid": alice_req["id"]}
        api["rounds_rid"] = _rounds_request(api)
        done = client.post(f"/v1/requests/{api['rounds_rid']}/rounds?wait=30", headers=_auth(live.token),
                           json={"round": 1, "inputs": {}})
        assert done.status_code == 202 and done.json()["status"] == "done", done.text
        yield api


def _rounds_request(api) -> str:
    """An approved request of alice's that runs in rounds (a GLM: auto-approved by the default policy)."""
    r = api["client"].post("/v1/requests", headers=_auth(api["tokens"]["alice"]), json={
        "dataset": "patients", "kind": "builtin", "name": "glm", "limits": {"max_rounds": 5},
        "args": {"formula": f"readmitted ~ age + I(bmi * {next(_addresses).split('.')[-1]})", "family": "binomial"}})
    assert r.status_code == 201 and r.json()["status"] == "approved", r.text
    return r.json()["id"]


JSON = {"content-type": "application/json"}
FN = b'{"dataset": "patients", "kind": "function", "name": "f", "code": "def f(df): pass", '


BAD_INPUTS = [
    ("POST", "/v1/requests", {"content": b"not json", "headers": {"content-type": "application/json"}}, 422),
    ("POST", "/v1/requests", {"json": []}, 422),
    ("POST", "/v1/requests", {"json": {"dataset": "patients"}}, 422),
    ("POST", "/v1/requests", {"json": {"dataset": "../etc/passwd", "kind": "builtin", "name": "count"}}, 422),
    ("POST", "/v1/requests", {"json": {"dataset": "patients", "kind": "shell", "name": "count"}}, 422),
    ("POST", "/v1/requests", {"json": {"dataset": "patients", "kind": "builtin", "name": "count", "evil": 1}}, 422),
    ("POST", "/v1/requests", {"json": {"dataset": "nosuch", "kind": "builtin", "name": "count"}}, 404),
    ("POST", "/v1/requests", {"json": {"dataset": "patients", "kind": "builtin", "name": "median"}}, 400),
    ("POST", "/v1/requests", {"json": {"dataset": "patients", "kind": "builtin", "name": "histogram",
                                       "args": {"column": "age", "bins": [3, 2]}}}, 400),
    ("POST", "/v1/requests", {"json": {"dataset": "patients", "kind": "builtin", "name": "mean",
                                       "args": {"column": "age", "where": [{"column": "age", "op": "~", "value": 1}]}}}, 400),
    ("POST", "/v1/requests", {"json": {"dataset": "patients", "kind": "builtin", "name": "mean", "args": {"column": 5}}}, 400),
    ("POST", "/v1/requests", {"json": {"dataset": "patients", "kind": "function", "name": "f", "code": "def f(:"}}, 400),
    ("POST", "/v1/requests", {"json": {"dataset": "patients", "kind": "function", "name": "g", "code": "def f(df): pass"}}, 400),
    ("POST", "/v1/requests", {"json": {"dataset": "patients", "kind": "function", "name": "f"}}, 400),
    ("POST", "/v1/requests", {"content": b'{"dataset": "patients", "kind": "function", "name": "f", '
                                         b'"code": "def f(df): pass", "args": {"x": NaN}}',
                              "headers": {"content-type": "application/json"}}, (400, 422)),
    ("POST", "/v1/requests", {"content": b"{" + b" " * 3_000_000 + b"}", "headers": {"content-type": "application/json"}}, 413),
    ("POST", "/v1/requests?wait=999", {"json": {"dataset": "patients", "kind": "builtin", "name": "count"}}, 422),
    ("GET", "/v1/requests?status=bogus", {}, 422),
    ("GET", "/v1/requests?limit=0", {}, 422),
    ("GET", "/v1/requests/..%2F..%2Fetc", {}, 404),
    ("GET", "/v1/requests/" + "z" * 5000, {}, 404),
    ("GET", "/v1/requests/nope?wait=-1", {}, 422),
    ("GET", "/v1/datasets/nosuch", {}, 404),
    ("GET", "/v1/datasets/nosuch/mock", {}, 404),
    ("GET", "/v1/nothing-here", {}, 404),
    ("DELETE", "/v1/datasets", {}, 405),
    # found by fuzzing (tests/test_fuzz_api.py): each was a 500 before
    ("POST", "/v1/requests", {"content": FN + b'"args": {"\\ud800": 1}}', "headers": JSON}, 400),  # lone surrogate
    ("POST", "/v1/requests", {"content": b'{"dataset": "patients", "kind": "builtin", "name": "count", "args": '
                                         b'{"where": [{"column": "age", "op": ">", "value": NaN}]}}', "headers": JSON}, 400),
    ("POST", "/v1/requests", {"content": b'{"dataset": "patients", "kind": "builtin", "name": "count", "args": '
                                         b'{"where": [{"column": "age", "op": ">", "value": -Infinity}]}}', "headers": JSON}, 400),
    ("POST", "/v1/requests", {"content": FN + b'"args": {"x": ' + b"[" * 200 + b"]" * 200 + b"}}", "headers": JSON}, 400),
    ("GET", "/v1/requests?limit=" + "9" * 40, {}, 422),
    # bodies the JSON parser refuses: a sentence, not "There was an error parsing the body"
    ("POST", "/v1/requests", {"content": FN + b'"args": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}", "headers": JSON}, 400),
    ("POST", "/v1/requests", {"content": FN + b'"args": {"x": 1' + b"0" * 5000 + b"}}", "headers": JSON}, 400),
    ("POST", "/v1/requests", {"content": b'{"dataset": "\xff\xfe"}', "headers": JSON}, 400),
    # a streamed (chunked) body over the limit: 413 like a declared one
    ("POST", "/v1/requests", {"content": lambda: iter([b"{" + b" " * 500_000] * 5 + [b"}"]), "headers": JSON}, 413),
]


@pytest.mark.parametrize("method,path,kwargs,status", BAD_INPUTS, ids=[f"{m} {p[:40]} {s}" for m, p, _, s in BAD_INPUTS])
def test_bad_input_gets_a_clear_4xx(api, method, path, kwargs, status):
    kwargs = dict(kwargs)
    headers = {**_auth(api["tokens"]["alice"]), **kwargs.pop("headers", {})}
    if callable(kwargs.get("content")):
        kwargs["content"] = kwargs["content"]()
    response = api["client"].request(method, path, headers=headers, **kwargs)
    _assert_clean_error(response, status)
    assert "error parsing the body" not in response.text


def test_owner_paths_stay_private(api):
    """/v1/info is public: the isolation level is there, the owner's folders are not."""
    info = api["client"].get("/v1/info")
    assert info.status_code == 200 and info.json()["isolation"]["level"] in ("strong", "standard", "minimal", "none")
    assert str(api["live"].path) not in info.text and "/root" not in info.text and "/tmp/" not in info.text
    _assert_clean_error(api["client"].get("/v1/audit?since=" + "9" * 30, headers=_auth(api["tokens"]["owner"])), 422)


def test_owner_bad_input(api):
    c, owner = api["client"], _auth(api["tokens"]["owner"])
    _assert_clean_error(c.post("/v1/requests/nope/approve", headers=owner, json={}), 404)
    _assert_clean_error(c.post(f"/v1/requests/{api['rid']}/deny", headers=owner, json={"reason": " "}), 400)
    _assert_clean_error(c.post(f"/v1/requests/{api['rid']}/deny", headers=owner, json={"reason": 3}), 422)
    _assert_clean_error(c.post(f"/v1/requests/{api['rid']}/deny", headers=owner, json={"reason": "x" * 6000}), 422)
    _assert_clean_error(c.get("/v1/audit?since=-4", headers=owner), 422)


def test_openapi_schema_describes_every_route(api):
    schema = api["client"].get("/openapi.json").json()
    paths = set(schema["paths"])
    assert {"/v1/info", "/v1/session", "/v1/datasets", "/v1/datasets/{name}", "/v1/datasets/{name}/mock",
            "/v1/requests", "/v1/requests/{request_id}", "/v1/requests/{request_id}/approve",
            "/v1/requests/{request_id}/deny", "/v1/audit", "/v1/audit/verify"} <= paths


# (method, route as the OpenAPI schema spells it) -> the callers who may use it. Everyone else is refused:
# 401 without a valid token, 403 for the wrong role, 404 for another analyst's request. A route the
# schema lists without a row here fails test_every_route_has_a_matrix_row: say who may call it.
MATRIX = {
    ("GET", "/v1/info"): {"none", "bad", "revoked", "alice", "bob", "owner"},
    ("POST", "/v1/session"): {"alice", "bob", "owner"},
    ("GET", "/v1/datasets"): {"alice", "bob", "owner"},
    ("GET", "/v1/datasets/{name}"): {"alice", "bob", "owner"},
    ("GET", "/v1/datasets/{name}/mock"): {"alice", "bob", "owner"},
    ("GET", "/v1/requests"): {"alice", "bob", "owner"},
    ("GET", "/v1/requests/{request_id}"): {"alice", "owner"},
    ("POST", "/v1/requests"): {"alice", "bob"},
    ("POST", "/v1/requests/{request_id}/approve"): {"owner"},
    ("POST", "/v1/requests/{request_id}/deny"): {"owner"},
    ("GET", "/v1/audit"): {"owner"},
    ("GET", "/v1/audit/verify"): {"owner"},
    ("POST", "/v1/requests/{request_id}/rounds"): {"alice"},
    ("GET", "/v1/requests/{request_id}/rounds/{number}"): {"alice", "owner"},
    ("GET", "/v1/requests/{request_id}/rounds/{number}/weights"): {"alice", "owner"},
    ("POST", "/v1/requests/{request_id}/finish"): {"alice"},
    ("GET", "/v1/datasets/{name}/budget"): {"alice", "bob", "owner"},
    ("POST", "/v1/secagg/{session}/{step}"): {"alice", "bob"},
    ("POST", "/v1/secagg"): {"alice", "bob"},
    ("GET", "/v1/wakeups"): {"owner"},
}
# Routes whose rows need a request that runs in rounds, and answers that still mean "allowed" where
# the matrix's generic inputs cannot succeed (a GLM round has no weights; a secure-aggregation step
# needs a session): refused for what was sent, never for who sent it.
ROUNDS = {("POST", "/v1/requests/{request_id}/rounds"), ("GET", "/v1/requests/{request_id}/rounds/{number}"),
          ("GET", "/v1/requests/{request_id}/rounds/{number}/weights"), ("POST", "/v1/requests/{request_id}/finish")}
ALLOWED_REFUSALS = {("GET", "/v1/requests/{request_id}/rounds/{number}/weights"): {409},
                    ("POST", "/v1/secagg/{session}/{step}"): {400, 409, 422}, ("POST", "/v1/secagg"): {400}}
CALLERS = ("none", "bad", "revoked", "alice", "bob", "owner")
BODIES = {("POST", "/v1/requests"): {"dataset": "patients", "kind": "builtin", "name": "count"},
          ("POST", "/v1/requests/{request_id}/rounds"): {"round": 1, "inputs": {}},
          ("POST", "/v1/secagg/{session}/{step}"): {},
          ("POST", "/v1/secagg"): {"steps": [{"session": "matrix-session-01", "step": "keys", "body": {}}]}}
# Decisions change the request; each allowed cell gets a fresh pending request of alice's.
DECISIONS = {("POST", "/v1/requests/{request_id}/approve"), ("POST", "/v1/requests/{request_id}/deny")}
_addresses = (f"127.77.{i // 250}.{i % 250 + 1}" for i in itertools.count())


def _from_new_address(api, method: str, path: str, token: str | None, body) -> httpx.Response:
    """Each call from its own loopback address, so that the failed-token lock-out (tested in
    test_rate_limit.py) never turns an expected 401 into a 429 as the matrix grows."""
    transport = httpx.HTTPTransport(local_address=next(_addresses))
    with httpx.Client(base_url=api["live"].url, transport=transport, timeout=30) as client:
        return client.request(method, path, headers=_auth(token), json=body)


def _pending_request(api) -> str:
    code = f"def f(df):\n    return {next(_addresses)!r}\n"  # a new hash: a new pending request
    r = api["client"].post("/v1/requests", headers=_auth(api["tokens"]["alice"]),
                           json={"dataset": "patients", "kind": "function", "name": "f", "code": code})
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    return r.json()["id"]


def _concrete(template: str, rid: str) -> str:
    values = {"name": "patients", "request_id": rid, "number": "1", "session": "matrix", "step": "keys"}
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)


def test_every_route_has_a_matrix_row(api):
    schema = api["client"].get("/openapi.json").json()
    routes = {(method.upper(), path) for path, item in schema["paths"].items() for method in item}
    assert routes - set(MATRIX) == set(), "routes without an authorization row in MATRIX: add who may call them"
    assert set(MATRIX) - routes == set(), "MATRIX rows for routes the API no longer has"
    # the schema documents the token exactly where one is needed
    for (method, path), allowed in MATRIX.items():
        secured = bool(schema["paths"][path][method.lower()].get("security"))
        assert secured == ("none" not in allowed), (method, path)


@pytest.mark.parametrize("endpoint", list(MATRIX), ids=[f"{m} {p}" for m, p in MATRIX])
@pytest.mark.parametrize("caller", CALLERS)
def test_authorization_matrix(api, endpoint, caller):
    method, template = endpoint
    allowed = caller in MATRIX[endpoint]
    if endpoint in DECISIONS and allowed:
        rid = _pending_request(api)
    elif endpoint == ("POST", "/v1/requests/{request_id}/finish") and allowed:
        rid = _rounds_request(api)  # finishing ends a request: use one of its own
    else:
        rid = api["rounds_rid"] if endpoint in ROUNDS else api["rid"]
    path = _concrete(template, rid)
    body = BODIES.get(endpoint, {"reason": "matrix"} if method == "POST" else None)
    r = _from_new_address(api, method, path, api["tokens"][caller], body)
    if allowed:
        refused_for_input = r.status_code in ALLOWED_REFUSALS.get(endpoint, ())
        assert r.status_code < 300 or refused_for_input, (caller, path, r.status_code, r.text)
        if refused_for_input:
            _assert_clean_error(r, r.status_code)
        return
    # another analyst's request looks absent (404) wherever analysts may act on their own
    expected = 401 if caller in ("none", "bad", "revoked") else \
        404 if caller == "bob" and "{request_id}" in template and "alice" in MATRIX[endpoint] else 403
    _assert_clean_error(r, expected)
    if caller == "revoked":
        assert "revoked" in r.json()["error"]
    # a refused call changed nothing: alice's request is still pending, with no decision recorded
    state = api["client"].get(f"/v1/requests/{api['rid']}", headers=_auth(api["tokens"]["alice"])).json()
    assert state["status"] == "pending" and state["decided_by"] is None


def test_analysts_see_only_their_own_requests(api):
    c, t = api["client"], api["tokens"]
    mine = c.get("/v1/requests", headers=_auth(t["alice"])).json()
    theirs = c.get("/v1/requests", headers=_auth(t["bob"])).json()
    assert api["rid"] in {r["id"] for r in mine}
    assert api["rid"] not in {r["id"] for r in theirs}
    assert all(r["analyst"] == "bob" for r in theirs)
    everyone = c.get("/v1/requests", headers=_auth(t["owner"])).json()
    assert api["rid"] in {r["id"] for r in everyone}
