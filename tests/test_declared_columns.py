"""Custom code that declares its columns gets only those, bound to the approval; the owner's row cap
refuses before anything runs. Attacks through the real HTTP API of a served domain.

The domain serves "patients" (1,200 rows, over the owner's cap of 1,000) and "cohort" (600 rows of
the same columns, under it). A job that declared ``columns=["age"]`` holds no other column: reading
one fails inside the sandbox as a KeyError, opening the dataset's file to read it directly is refused
by the file wall, and the values of the other columns appear nowhere in what comes back.
"""

from __future__ import annotations

import secrets
import uuid
import warnings

import httpx
import pandas as pd
import pytest

import fednb
from fednb.demo import data
from fednb.domain import Domain
from fednb.errors import InvalidInput
from fednb.models import code_hash
from tests.api_support import assert_clean_error, auth
from tests.conftest import start_live

FAST = {"wall_seconds = 120": "wall_seconds = 20", "memory_mb = 2048": "memory_mb = 512",
        "show_error_text = false": "show_error_text = true",  # the reasons name the exception
        "max_rows_loaded = 0": "max_rows_loaded = 1000"}


@pytest.fixture(scope="module")
def target(tmp_path_factory, alice_token):
    root = tmp_path_factory.mktemp("columns")
    frame = data.hospital("hospital-a")
    live = start_live(root, "columns", frame, alice_token, policy_edits=FAST)
    cohort = frame.head(600)
    cohort.to_parquet(root / "cohort.parquet", index=False)
    canary = "CANARY" + secrets.token_hex(8)  # in every value of a column no job below declares
    pd.DataFrame({"age": cohort.age.to_numpy(), "note": [f"{canary}-{i}" for i in range(len(cohort))]}).to_parquet(
        root / "notes.parquet", index=False)
    d = Domain(live.path)
    d.add_dataset(root / "cohort.parquet", "cohort", "600 patients, under the row cap")
    d.add_dataset(root / "notes.parquet", "notes", "ages and free-text notes")
    d.close()
    with httpx.Client(base_url=live.url, timeout=60) as client:
        yield {"live": live, "client": client, "cohort": cohort, "canary": canary,
               "data_file": str(live.path / "datasets" / "cohort" / "data.parquet")}
    live.server.stop()


def _source(body: str) -> str:
    return "def job(df):\n" + "\n".join("    " + line for line in body.splitlines()) + "\n"


def _submit(target, body: str, columns: list[str] | None, dataset: str = "cohort") -> httpx.Response:
    limits = {} if columns is None else {"columns": columns}
    return target["client"].post("/v1/requests", headers=auth(target["live"].token),
                                 json={"dataset": dataset, "kind": "function", "name": "job", "code": _source(body),
                                       "limits": limits, "idempotency_key": uuid.uuid4().hex})


def _approve(target, rid: str) -> None:
    approved = target["client"].post(f"/v1/requests/{rid}/approve", headers=auth(target["live"].owner_token),
                                     json={"reason": "columns suite"})
    assert approved.status_code == 200, approved.text


def _final(target, rid: str) -> dict:
    return target["client"].get(f"/v1/requests/{rid}?wait=30", headers=auth(target["live"].token)).json()


def _run(target, body: str, columns: list[str] | None) -> dict:
    submitted = _submit(target, body, columns)
    assert submitted.status_code == 201, submitted.text
    _approve(target, submitted.json()["id"])
    return _final(target, submitted.json()["id"])


def test_the_frame_holds_only_the_declared_columns(target):
    final = _run(target, "return sorted(df.columns)", ["age", "bmi"])
    assert final["status"] == "done", final.get("reason")
    assert final["result"] == ["age", "bmi"]


def test_a_declared_column_is_verified_and_released(target):
    final = _run(target, "return fednb.stat(df.age)", ["age"])
    assert final["status"] == "done", final.get("reason")
    assert final["result"] == pytest.approx(target["cohort"].age.mean(), rel=1e-3)


@pytest.mark.parametrize("body,error", [
    ("return sorted(df['sex'].unique())", "KeyError: 'sex'"),
    ("return df[['age', 'sex']].value_counts().to_dict()", "KeyError"),
    ("return fednb.stat(df.loc[df.sex == 'F', 'age'])", "AttributeError: 'DataFrame' object has no attribute 'sex'"),
    ("return fednb.table(df, 'sex')", r"ResultShapeError: fednb.table groups by columns of the frame; ['sex']"),
], ids=["its values", "with a declared one", "a filter on it", "a table by it"])
def test_reading_an_undeclared_column_fails_inside_the_sandbox(target, body, error):
    final = _run(target, body, ["age"])
    assert final["status"] == "failed", (final["status"], final.get("result"))
    assert error in final["reason"], final["reason"]
    assert final["result"] is None
    assert "'F'" not in final["reason"] and "'M'" not in final["reason"]


def test_opening_the_dataset_file_for_the_other_columns_is_refused(target):
    body = (f"import pyarrow.parquet as pq\n"
            f"return sorted(pq.read_table({target['data_file']!r}, columns=['sex']).column(0).to_pylist())[:3]")
    final = _run(target, body, ["age"])
    assert final["status"] == "failed", (final["status"], final.get("result"))
    assert "PermissionError" in final["reason"] or "Permission denied" in final["reason"], final["reason"]
    assert final["result"] is None


# Reads the job's own memory page by page around ``anchors`` (its heaps, the frame's buffers; a pipe
# write tells readable pages from unmapped ones without a crash) and counts the pages holding
# ``needle``, the needle's own pages left out. The text to look for is assembled in the job, never
# sent whole. Job code to prepend to a job's body (which calls ``pages_holding``).
PAGES_HOLDING = """import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.malloc.restype = ctypes.c_void_p
page = bytearray(4096)  # one buffer, refilled: no copy of a page is left behind to be found again
probe, sink = os.pipe()
def pages_holding(needle, anchors):
    mine = {(id(needle) + d) // 4096 * 4096 for d in (0, 64)}
    seen, found = set(), 0
    for anchor in anchors:
        for k in range(-20000, 20000):
            addr = anchor - anchor % 4096 + k * 4096
            if addr <= 0 or addr in seen or addr in mine:
                continue
            seen.add(addr)
            if libc.write(sink, ctypes.c_void_p(addr), 4096) != 4096:
                continue
            os.readv(probe, [page])
            if needle in page:
                found += 1
    assert len(seen) > 50000, f'scanned only {len(seen)} pages'
    return found
"""
MEMORY_SCAN = PAGES_HOLDING + """needle = b'CANARY' + tail[::-1].encode()  # no other object holds the whole text
anchors = [df['age'].values.ctypes.data, id(df), id(tail), libc.malloc(100), libc.malloc(5000),
           libc.malloc(70000), libc.malloc(300000)]
found = pages_holding(needle, anchors)
assert not found, f'the notes are in memory: {found} pages'
return fednb.stat(df.age)"""


def _scan(target, columns: list[str] | None) -> dict:
    src = "def job(df, tail):\n" + "\n".join("    " + line for line in MEMORY_SCAN.splitlines()) + "\n"
    submitted = target["client"].post("/v1/requests", headers=auth(target["live"].token), json={
        "dataset": "notes", "kind": "function", "name": "job", "code": src, "args": {"tail": target["canary"][6:][::-1]},
        "limits": {} if columns is None else {"columns": columns}, "idempotency_key": uuid.uuid4().hex})
    assert submitted.status_code == 201, submitted.text
    _approve(target, submitted.json()["id"])
    return _final(target, submitted.json()["id"])


def test_the_other_columns_are_nowhere_in_the_jobs_memory(target):
    control = _scan(target, None)  # the scan finds the notes when the job was given them
    assert control["status"] == "failed" and "the notes are in memory" in control["reason"], control.get("reason")
    declared = _scan(target, ["age"])
    assert declared["status"] == "done", declared.get("reason")


@pytest.mark.parametrize("columns", [["age", "bmi"], None], ids=["declared", "all"])
def test_the_frame_is_the_jobs_own_to_change(target, columns):
    final = _run(target, "df['age'] += 0\ndf.loc[df.index[0], 'bmi'] = 0.0\nreturn fednb.stat(df.age)", columns)
    assert final["status"] == "done", final.get("reason")


def test_no_declaration_reads_every_column(target):
    final = _run(target, "return sorted(df.columns)", None)
    assert final["status"] == "done", final.get("reason")
    assert final["result"] == sorted(target["cohort"].columns)


def test_other_columns_after_approval_are_a_new_request(target):
    body = "return fednb.stat(df.bmi)"
    first = _submit(target, body, ["bmi"])
    assert first.status_code == 201, first.text
    _approve(target, first.json()["id"])
    assert _final(target, first.json()["id"])["status"] == "done"
    # the same code with one more column: a new hash, pending until the owner reviews it
    widened = _submit(target, body, ["bmi", "sex"])
    assert widened.status_code == 201, widened.text
    assert widened.json()["status"] == "pending"
    assert widened.json()["code_hash"] != first.json()["code_hash"]
    # and without a declaration (every column): also a new request
    undeclared = _submit(target, body, None)
    assert undeclared.json()["status"] == "pending"
    assert undeclared.json()["code_hash"] not in (first.json()["code_hash"], widened.json()["code_hash"])
    # the approved columns again reuse the owner's approval
    again = _submit(target, body, ["bmi"])
    assert again.json()["status"] in ("approved", "running", "done"), again.json()
    assert again.json()["code_hash"] == first.json()["code_hash"]
    # the analyst's own fednb computes the same hash the owner approved
    fn = fednb.function(_source(body), name="job", columns=["bmi"])
    assert fn.hash() == first.json()["code_hash"]
    assert code_hash("function", "job", _source(body), {}, {"columns": ["bmi"]}) == first.json()["code_hash"]


def test_the_owner_sees_the_declared_columns(target):
    import subprocess
    import sys

    submitted = _submit(target, "return fednb.stat(df.age)", ["age", "smoker"])
    shown = subprocess.run([sys.executable, "-m", "fednb", "domain", "show", str(target["live"].path),
                            submitted.json()["id"]], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "columns      age, smoker" in shown.stdout


@pytest.mark.parametrize("columns,says", [
    (["agee"], "did you mean 'age'?"),
    (["age", "diagnosis_code"], "'diagnosis_code', which the dataset does not have"),
    (["age", "age"], "'age' twice"),
], ids=["misspelt", "unknown", "twice"])
def test_undeclarable_columns_are_refused_with_a_clear_reason(target, columns, says):
    r = _submit(target, "return 1", columns)
    assert_clean_error(r, 400)
    assert says in r.json()["error"]


def test_an_empty_or_malformed_column_list_is_refused_cleanly(target):
    for columns in ([], [1, 2], "age"):
        r = _submit(target, "return 1", columns)
        assert_clean_error(r, (400, 422))


def test_a_builtin_cannot_carry_a_column_list(target):
    r = target["client"].post("/v1/requests", headers=auth(target["live"].token),
                              json={"dataset": "cohort", "kind": "builtin", "name": "count",
                                    "limits": {"columns": ["age"]}})
    assert_clean_error(r, 400)
    assert "built-in names its columns in its arguments" in r.json()["error"]


def test_the_row_cap_refuses_custom_code_before_it_runs(target):
    r = _submit(target, "return fednb.stat(df.age)", ["age"], dataset="patients")
    assert_clean_error(r, 400)
    assert "more rows than this domain lets custom code load (1,000" in r.json()["error"]
    # built-ins are not capped
    count = target["client"].post("/v1/requests?wait=20", headers=auth(target["live"].token),
                                  json={"dataset": "patients", "kind": "builtin", "name": "count"})
    assert count.json()["status"] == "done" and count.json()["result"]["n"] == 1200


def test_a_cap_lowered_after_approval_refuses_when_the_job_is_due(tmp_path, alice_token):
    """The owner lowers the cap while a request waits: the approved job fails with the reason,
    having loaded nothing, and the refusal is in the audit log."""
    live = start_live(tmp_path, "capped", data.hospital("hospital-a"), alice_token)
    try:
        with httpx.Client(base_url=live.url, timeout=60) as client:
            target = {"live": live, "client": client}
            submitted = _submit(target, "return fednb.stat(df.age)", ["age"], dataset="patients")
            assert submitted.json()["status"] == "pending", submitted.text
            live.server.stop()
            policy = live.path / "policy.toml"
            policy.write_text(policy.read_text().replace("max_rows_loaded = 0", "max_rows_loaded = 500"))
            live.server.restart()  # the same port; retried while the old socket lingers
            _approve(target, submitted.json()["id"])
            final = _final(target, submitted.json()["id"])
            assert final["status"] == "failed"
            assert "more rows than this domain lets custom code load (500" in final["reason"]
            assert final["result"] is None
            entries = client.get("/v1/audit?limit=1000", headers=auth(live.owner_token)).json()
            ends = [e["action"] for e in entries if e["object_id"] == final["id"]]
            assert ends[-1] == "fail", ends
    finally:
        live.server.stop()


# -- the analyst's side ----------------------------------------------------------------------------
MOCK = pd.DataFrame({"age": [30, 40, 50, 60] * 5, "sex": ["F", "M"] * 10, "bmi": [20.0, 25.0] * 10})


def test_dry_run_gives_the_function_only_its_declared_columns():
    @fednb.function(columns=["age"])
    def by_sex(df):
        return fednb.table(df.assign(group=df["sex"]), "group")

    with pytest.raises(KeyError):
        fednb.dry_run(by_sex, MOCK)


def test_dry_run_suggests_the_columns_the_source_names():
    from IPython.lib.pretty import pretty

    @fednb.function
    def mean_bmi(df, cut=40):
        return fednb.stat(df.loc[df["age"] > cut, "bmi"])

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a suggestion, not a predicted refusal
        out = fednb.dry_run(mean_bmi, MOCK)
    assert out.suggested_columns == ["age", "bmi"]
    assert "fednb.function(columns=['age', 'bmi'])" in pretty(out)  # what a notebook shows under the result
    assert out == {"mock": pytest.approx(MOCK.loc[MOCK.age > 40, "bmi"].mean())}
    declared = fednb.dry_run(fednb.function(mean_bmi, columns=["age", "bmi"]), MOCK)
    assert declared.suggested_columns is None and "columns=" not in pretty(declared)


def test_a_misspelt_declaration_is_caught_before_anything_is_sent():
    with pytest.raises(fednb.RequestFailed, match="did you mean 'age'"):
        fednb.dry_run(fednb.function("def f(df):\n    return 1\n", columns=["agee"]), MOCK)
    with pytest.raises(InvalidInput, match="twice"):
        fednb.function("def f(df):\n    return 1\n", columns=["age", "age"])


def test_submit_sends_the_declared_columns(target):
    fed = fednb.connect([target["live"].url], token=target["live"].token)
    try:
        cohort = fed.dataset("cohort")
        req = cohort.submit(fednb.function("def job(df):\n    return fednb.stat(df.age)\n"), columns=["age"])
        assert req.parts[0].state["limits"]["columns"] == ["age"]
        with pytest.raises(InvalidInput, match="did you mean 'age'"):
            cohort.submit(fednb.function("def job(df):\n    return 1\n"), columns=["agee"])
    finally:
        fed.close()


# -- the owner's setting -----------------------------------------------------------------------------
def test_the_row_cap_is_in_the_template_and_validated(tmp_path):
    from fednb.domain.review.policy import load_policy, render_template
    from fednb.errors import PolicyError

    text = render_template("d")
    assert "\nmax_rows_loaded = 0\n" in text
    path = tmp_path / "policy.toml"
    path.write_text(text.replace("max_rows_loaded = 0", "max_rows_loaded = 250000"))
    assert load_policy(path).sandbox.max_rows_loaded == 250_000
    for bad in ("-1", '"many"', "1.5"):
        path.write_text(text.replace("max_rows_loaded = 0", f"max_rows_loaded = {bad}"))
        with pytest.raises(PolicyError, match="max_rows_loaded"):
            load_policy(path)


def test_a_notebook_cell_keeps_its_declaration(target):
    from fednb.jupyter.cell import declared_columns
    from fednb.jupyter.magic import submit

    cell = ('%%fednb submit cohort\n@fednb.function(columns=["age", "bmi"])\ndef cell_job(df):\n'
            '    return fednb.stat(df.bmi)\n')
    assert declared_columns(cell, "cell_job") == ["age", "bmi"]
    with pytest.raises(InvalidInput, match="written out in the cell"):
        declared_columns(cell.replace('["age", "bmi"]', "COLS"), "cell_job")
    fed = fednb.connect([target["live"].url], token=target["live"].token)
    try:
        req = submit(cell, "cohort", user_ns={"fed": fed}, fed="fed")
        assert req.parts[0].state["limits"]["columns"] == ["age", "bmi"]
        assert "@fednb" not in req.parts[0].state["code"]
    finally:
        fed.close()
