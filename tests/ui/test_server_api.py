"""The server extension's REST API, through a real JupyterLab and real domains: what the panels
read and do, its authentication, input validation, and errors as JSON without tracebacks."""

from __future__ import annotations

import fednb
from fednb.client.federation import Federation as ClientFederation


def _submit(federation, name: str, args: dict, description: str):
    """A built-in request that waits for the owner. The args must differ from every other test's:
    the same code hash would be the same pending request, or run on a prior approval."""
    fed = fednb.connect([d.url for d in federation.domains], token=federation.token)
    ds = fed.dataset("patients")
    req = fed.send(ds.clients, {"dataset": "patients", "kind": "builtin", "name": name, "args": args,
                                  "description": description})
    return fed, req


def _older_than(age: int) -> dict:
    return {"where": [{"column": "age", "op": ">", "value": age}]}


def test_every_route_needs_jupyters_authentication(lab):
    for path in ("/fednb/api/strings", "/fednb/api/analyst/domains", "/fednb/api/owner/requests"):
        r = lab.api("GET", path, headers={"Authorization": ""})
        assert r.status_code == 403, path
        assert "Traceback" not in r.text and r.json()["error"]
    r = lab.api("POST", "/fednb/api/owner/requests/hospital-a/abc/approve", json={},
                headers={"Authorization": ""})
    assert r.status_code == 403


def test_strings_follow_the_requested_language(lab):
    en = lab.api("GET", "/fednb/api/strings", params={"lang": "en-US"}).json()
    es = lab.api("GET", "/fednb/api/strings", params={"lang": "es_ES"}).json()
    assert en["language"] == "en" and es["language"] == "es"
    assert en["strings"]["lab.owner.deny"] == "Deny" and es["strings"]["lab.owner.deny"] == "Denegar"
    assert set(en["strings"]) == set(es["strings"])


def test_analyst_sees_domains_datasets_and_requests(lab, federation):
    domains = lab.api("GET", "/fednb/api/analyst/domains").json()
    assert [d["domain"] for d in domains] == ["hospital-a", "hospital-b"]
    assert all(d["up"] and d["analyst"] == "alice" for d in domains)
    assert "token" not in str(domains) and federation.token not in str(domains)
    datasets = lab.api("GET", "/fednb/api/analyst/datasets").json()
    assert {(d["domain"], d["name"]) for d in datasets} == {("hospital-a", "patients"), ("hospital-b", "patients")}
    assert "age" in datasets[0]["columns"]
    fed, req = _submit(federation, "count", _older_than(21), "analyst listing")
    listing = lab.api("GET", "/fednb/api/analyst/requests").json()
    mine = [s for s in listing["submissions"] if s["description"] == "analyst listing"]
    assert len(mine) == 1, "the copies on both domains are one submission"
    assert sorted((p["domain"], p["status"]) for p in mine[0]["parts"]) == [("hospital-a", "pending"),
                                                                            ("hospital-b", "pending")]
    fed.close()


def test_owner_denies_with_a_reason_and_approves_and_the_analyst_sees_both(lab, federation):
    fed, req = _submit(federation, "mean", {"column": "bmi", **_older_than(22)}, "owner decisions")
    ids = {p.domain: p.id for p in req.parts}
    pending = lab.api("GET", "/fednb/api/owner/requests").json()
    assert {d["domain"] for d in pending["domains"]} == {"hospital-a", "hospital-b"}
    assert {d["kind"] for d in pending["domains"]} == {"folder", "url"}
    assert {(r["domain"], r["id"]) for r in pending["pending"]} >= set(ids.items())

    base = "/fednb/api/owner/requests"
    no_reason = lab.api("POST", f"{base}/hospital-a/{ids['hospital-a']}/deny", json={"reason": "  "})
    assert no_reason.status_code == 400 and "reason" in no_reason.json()["error"]
    denied = lab.api("POST", f"{base}/hospital-a/{ids['hospital-a']}/deny", json={"reason": "too few patients"})
    assert denied.status_code == 200, denied.text
    assert denied.json()["status"] == "denied"
    approved = lab.api("POST", f"{base}/hospital-b/{ids['hospital-b']}/approve", json={"reason": "fine"})
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    again = lab.api("POST", f"{base}/hospital-b/{ids['hospital-b']}/deny", json={"reason": "changed my mind"})
    assert again.status_code == 409 and "already" in again.json()["error"]

    req.wait(20)
    assert req.status == {"hospital-a": "denied", "hospital-b": "done"}
    assert req.problems["hospital-a"] == "denied by the owner: too few patients"
    detail = lab.api("GET", f"/fednb/api/analyst/requests/hospital-b/{ids['hospital-b']}").json()
    assert detail["status"] == "done"
    assert {r["key"] for r in detail["result"]} >= {"n", "mean"}
    recent = lab.api("GET", base).json()["recent"]
    assert any(r["id"] == ids["hospital-a"] and r["reason"] == "too few patients" for r in recent)
    fed.close()


def test_review_detail_has_the_code_and_the_diff_against_the_approved_version(lab, federation):
    fed = fednb.connect([federation.a.url], token=federation.token)
    ds = fed.dataset("patients")
    v1 = ds.submit(fednb.function("def bmi_by_smoking(df):\n    return df.groupby('smoker').bmi.mean()\n"),
                   description="v1")
    rid1 = v1.parts[0].id
    lab_path = f"/fednb/api/owner/requests/hospital-a/{rid1}"
    first = lab.api("GET", lab_path).json()
    assert first["code"].startswith("def bmi_by_smoking") and first["previous"] is None
    assert lab.api("POST", f"{lab_path}/approve", json={"reason": "aggregates"}).status_code == 200
    v2 = ds.submit(fednb.function("def bmi_by_smoking(df):\n    g = df.groupby('smoker').bmi\n"
                                  "    return {'mean': g.mean(), 'n': g.size()}\n"), description="v2")
    rid2 = v2.parts[0].id
    second = lab.api("GET", f"/fednb/api/owner/requests/hospital-a/{rid2}").json()
    assert second["previous"]["id"] == rid1 and not second["previous"]["identical"]
    ops = [(line["op"], line["text"]) for line in second["previous"]["diff"]]
    assert ("-", "    return df.groupby('smoker').bmi.mean()") in ops
    assert ("+", "    return {'mean': g.mean(), 'n': g.size()}") in ops
    lab.api("POST", f"/fednb/api/owner/requests/hospital-a/{rid2}/deny", json={"reason": "test done"})
    fed.close()


def test_bad_input_is_a_json_error_never_a_traceback(lab):
    cases = [
        ("GET", "/fednb/api/owner/requests/hospital-a/not%20an%20id", None, 400),
        ("GET", "/fednb/api/owner/requests/nowhere/abcdefghjk", None, 404),
        ("GET", "/fednb/api/owner/requests/hospital-a/abcdefghjk", None, 404),
        ("GET", "/fednb/api/analyst/requests/hospital-b/abcdefghjk", None, 404),
        ("POST", "/fednb/api/owner/requests/hospital-a/abcdefghjk/approve", "[1, 2]", 400),
        ("POST", "/fednb/api/owner/requests/hospital-a/abcdefghjk/approve", "{not json", 400),
        ("POST", "/fednb/api/owner/requests/hospital-a/abcdefghjk/deny", '{"reason": 5}', 400),
        ("GET", "/fednb/api/analyst/nothing", None, 404),
    ]
    for method, path, body, status in cases:
        r = lab.api(method, path, content=body)
        assert r.status_code == status, (path, r.status_code, r.text)
        assert "Traceback" not in r.text and isinstance(r.json()["error"], str), path
    spanish = lab.api("GET", "/fednb/api/owner/requests/nowhere/abcdefghjk", params={"lang": "es"})
    assert spanish.json()["error"] == "no hay ningún dominio configurado llamado 'nowhere'"


def test_connect_remembers_the_last_federation_for_the_magic(federation):
    fed = fednb.connect([federation.a.url], token=federation.token)
    from fednb.client import federation as fmod

    assert fmod.last_connected is fed and isinstance(fed, ClientFederation)
    fed.close()
