"""Every endpoint answers bad input with a clear 4xx JSON error, never a traceback or an internal path;
and the authorization matrix: who may call what."""

from __future__ import annotations

import httpx
import pytest

from fednb.domain import Domain


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
        yield {"client": client, "live": live, "tokens": {
            "none": None, "bad": "fednb_" + "x" * 43, "revoked": revoked, "alice": live.token, "bob": bob,
            "owner": live.owner_token}, "rid": alice_req["id"]}


def _auth(token):
    return {"Authorization": f"Bearer {token}"} if token else {}


def _assert_clean_error(response: httpx.Response, status: int | tuple[int, ...]):
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, (response.status_code, response.text)
    body = response.json()
    assert isinstance(body["error"], str) and len(body["error"]) > 10
    text = response.text
    for leak in ("Traceback", "File \"", "/work/", "site-packages", ".py\"", "sqlite3."):
        assert leak not in text, f"{leak!r} leaked in {text[:300]}"


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
]


@pytest.mark.parametrize("method,path,kwargs,status", BAD_INPUTS, ids=[f"{m} {p[:40]} {s}" for m, p, _, s in BAD_INPUTS])
def test_bad_input_gets_a_clear_4xx(api, method, path, kwargs, status):
    headers = {**_auth(api["tokens"]["alice"]), **kwargs.pop("headers", {})}
    _assert_clean_error(api["client"].request(method, path, headers=headers, **kwargs), status)


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


# endpoint -> which callers may use it (others get 401 for bad credentials, 403/404 for the wrong role)
MATRIX = {
    ("GET", "/v1/info"): {"none", "bad", "revoked", "alice", "bob", "owner"},
    ("POST", "/v1/session"): {"alice", "bob", "owner"},
    ("GET", "/v1/datasets"): {"alice", "bob", "owner"},
    ("GET", "/v1/datasets/patients"): {"alice", "bob", "owner"},
    ("GET", "/v1/datasets/patients/mock"): {"alice", "bob", "owner"},
    ("GET", "/v1/requests"): {"alice", "bob", "owner"},
    ("GET", "/v1/requests/{rid}"): {"alice", "owner"},
    ("POST", "/v1/requests"): {"alice", "bob"},
    ("GET", "/v1/audit"): {"owner"},
    ("GET", "/v1/audit/verify"): {"owner"},
    ("POST", "/v1/requests/{rid}/approve"): set(),  # tried by everyone but the owner: must be refused
    ("POST", "/v1/requests/{rid}/deny"): set(),
}


@pytest.mark.parametrize("endpoint", list(MATRIX), ids=[f"{m} {p}" for m, p in MATRIX])
def test_authorization_matrix(api, endpoint):
    method, template = endpoint
    path = template.format(rid=api["rid"])
    body = {"dataset": "patients", "kind": "builtin", "name": "count"} if path == "/v1/requests" else \
        ({"reason": "matrix"} if method == "POST" else None)
    for caller, token in api["tokens"].items():
        if caller == "owner" and path.endswith(("/approve", "/deny")):
            continue  # the owner's decision is tested in test_review
        r = api["client"].request(method, path, headers=_auth(token), json=body)
        if caller in MATRIX[endpoint]:
            assert r.status_code < 300, (caller, path, r.status_code, r.text)
        else:
            expected = 401 if caller in ("none", "bad", "revoked") else (404 if caller == "bob" and "{rid}" in template and method == "GET" else 403)
            _assert_clean_error(r, expected)
            if caller == "revoked":
                assert "revoked" in r.json()["error"]


def test_analysts_see_only_their_own_requests(api):
    c, t = api["client"], api["tokens"]
    mine = c.get("/v1/requests", headers=_auth(t["alice"])).json()
    theirs = c.get("/v1/requests", headers=_auth(t["bob"])).json()
    assert api["rid"] in {r["id"] for r in mine}
    assert api["rid"] not in {r["id"] for r in theirs}
    assert all(r["analyst"] == "bob" for r in theirs)
    everyone = c.get("/v1/requests", headers=_auth(t["owner"])).json()
    assert api["rid"] in {r["id"] for r in everyone}
