"""The transparency report: counts that match the store, the audit head a reader can check the log
against, a self-contained page with every value escaped, and nothing only the analyst may see."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import time

import pytest

from fednb.demo import data
from fednb.domain.run.runner import Outcome, Runner
from fednb.models import RequestIn
from tests.conftest import make_domain

SECRET_ROW = "row 17 has age 42.5"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fednb", "domain", "audit", *args], capture_output=True,
                          text=True, timeout=60)


def _fn(i: int) -> RequestIn:
    return RequestIn(dataset="patients", kind="function", name="f", code=f"def f(df):\n    return {i}\n",
                     description=f"function {i} <script>alert({i})</script>")


@pytest.fixture(scope="module")
def busy(tmp_path_factory):
    """A domain with a bit of everything: released, blocked, failed, denied, pending, two datasets."""
    root = tmp_path_factory.mktemp("report")
    d = make_domain(root, "reported", data.hospital("hospital-a"))
    (root / "labs.csv").write_text("value\n" + "\n".join(str(i % 37) for i in range(200)))
    d.add_dataset(root / "labs.csv", "labs", "lab values")
    for who in ("alice", "bob", "carol"):
        d.invite(who)
    d.connect("alice")
    d.receive("alice", RequestIn(dataset="patients", kind="builtin", name="count"))
    d.receive("alice", RequestIn(dataset="patients", kind="builtin", name="mean",
                                args={"column": "age", "where": [{"column": "age", "op": ">", "value": 200}]}))
    d.receive("bob", RequestIn(dataset="patients", kind="builtin", name="histogram",
                              args={"column": "age", "bins": [0, 40, 60, 120]}))
    d.receive("bob", RequestIn(dataset="labs", kind="builtin", name="mean", args={"column": "value"}))
    d.receive("bob", RequestIn(dataset="patients", kind="builtin", name="crosstab", args={"row": "age", "col": "sex"}))
    pending, _ = d.receive("alice", _fn(1))
    denied, _ = d.receive("alice", _fn(2))
    d.deny(denied.id, "too broad: <b>aggregate</b> first")
    approved, _ = d.receive("bob", _fn(3))
    d.approve(approved.id, "fine")
    leaky, _ = d.receive("carol", _fn(4))
    runner = Runner(d)  # no sandbox: functions fail with a reason, built-ins run
    runner.start()
    deadline = time.monotonic() + 30
    while d.store.query_one("SELECT count(*) AS n FROM requests WHERE status IN ('approved', 'running')")["n"] \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    runner.stop()
    # what the runner records when analyst code raises with data in its message
    d.approve(leaky.id, "ok")
    job = runner._claim("sandbox")
    with d.store.transaction() as tx:
        runner._finish(tx, job, leaky.id, Outcome("fail", reason=f"your code raised ValueError: {SECRET_ROW}"))
    d.revoke("carol")
    yield d
    d.close()


def _export(d, tmp_path, name: str, *args: str) -> subprocess.CompletedProcess:
    return _cli(str(d.path), "--export", str(tmp_path / name), *args)


def test_the_json_counts_match_the_store(busy, tmp_path):
    r = _export(busy, tmp_path, "report.json")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    conn = sqlite3.connect(busy.path / "domain.db")
    sql = lambda q, *p: conn.execute(q, p).fetchall()  # noqa: E731
    assert report["format"] == "fednb-transparency-report/1" and report["domain"] == "reported"
    assert report["totals"]["requests"] == sql("SELECT count(*) FROM requests")[0][0] == 9
    for status, n in sql("SELECT status, count(*) FROM requests GROUP BY status"):
        assert report["totals"][status] == n, status
    for analyst, status, n in sql("SELECT analyst, status, count(*) FROM requests GROUP BY analyst, status"):
        assert report["by_analyst"][analyst][status] == n, (analyst, status)
    for dataset, n in sql("SELECT dataset, count(*) FROM requests GROUP BY dataset"):
        assert report["by_dataset"][dataset]["requests"] == n
    assert set(report["by_dataset"]) == {"patients", "labs"}
    # every kind of outcome is present, and each list matches the store
    assert report["totals"]["released"] == len(report["releases"]) == sql(
        "SELECT count(*) FROM requests WHERE status = 'done'")[0][0] >= 3
    assert len(report["blocks"]) == sql("SELECT count(*) FROM requests WHERE status = 'blocked'")[0][0] >= 1
    assert len(report["failures"]) == sql("SELECT count(*) FROM requests WHERE status = 'failed'")[0][0] >= 2
    assert report["totals"]["pending"] == 1 and report["totals"]["denied_by_owner"] == 1
    assert report["totals"]["approved_by_owner"] == 2 and report["totals"]["approved_by_policy"] == 5
    stored = dict(sql("SELECT id, result_json FROM requests WHERE status = 'done'"))
    for release in report["releases"]:
        assert release["result_sha256"] == hashlib.sha256(stored[release["request"]].encode()).hexdigest()
    deny = [d for d in report["decisions"] if d["decision"] == "deny"]
    assert deny[0]["reason"] == "too broad: <b>aggregate</b> first" and deny[0]["by"].startswith("owner")
    assert [x["who"] for x in report["access"]["revocations"]] == ["carol"]
    # the head is the chain's, and the published head verifies the log
    seq, digest = sql("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")[0]
    assert report["audit"] == {**report["audit"], "head": f"{seq}:{digest}", "intact": True, "entries": seq}
    assert _cli(str(busy.path), "--verify", "--head", report["audit"]["head"]).returncode == 0
    conn.close()


def test_nothing_only_the_analyst_may_see_is_published(busy, tmp_path):
    _export(busy, tmp_path, "report.json")
    text = (tmp_path / "report.json").read_text()
    assert SECRET_ROW not in text  # analyst code's error text can carry data
    failure = [f for f in json.loads(text)["failures"] if f["analyst"] == "carol"]
    assert failure[0]["reason"] == "your code raised ValueError"
    for (result,) in sqlite3.connect(busy.path / "domain.db").execute(
            "SELECT result_json FROM requests WHERE status = 'done'"):
        assert result not in text


def test_the_html_is_self_contained_escaped_and_carries_the_head(busy, tmp_path):
    r = _export(busy, tmp_path, "report.html")
    assert r.returncode == 0 and "audit head" in r.stdout
    page = (tmp_path / "report.html").read_text()
    head = busy.verify_audit().head
    assert f':{head}</code>' in page and f'content="{busy.audit_entries()[-1].seq}:{head}"' in page
    assert page.startswith("<!DOCTYPE html>") and "Transparency report of the data domain reported" in page
    for external in ("<script", "src=", "href=", "http://", "https://", "@import", "url("):
        assert external not in page, external
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;aggregate&lt;/b&gt;" in page
    assert SECRET_ROW not in page
    es = _export(busy, tmp_path, "informe.html", "--lang", "es")
    assert es.returncode == 0
    assert "Informe de transparencia del dominio de datos reported" in (tmp_path / "informe.html").read_text()


def test_a_tampered_log_is_reported_as_broken_and_the_published_head_catches_a_rewrite(busy, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(busy.path, copy)
    r = _cli(str(copy), "--export", str(tmp_path / "before.json"))
    published = json.loads((tmp_path / "before.json").read_text())["audit"]["head"]
    conn = sqlite3.connect(copy / "domain.db")
    last = conn.execute("SELECT max(seq) FROM audit").fetchone()[0]
    conn.execute("DELETE FROM audit WHERE seq = ?", (last,))  # an insider hides the last entry...
    seq, digest = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'", (f"{seq}:{digest}",))  # ...and the head
    conn.execute("DELETE FROM meta WHERE key = 'merkle_frontier'")  # ...and the Merkle tree's record of its size
    conn.commit()
    conn.close()
    assert _cli(str(copy), "--verify").returncode == 0  # the chain alone looks fine
    checked = _cli(str(copy), "--verify", "--head", published)  # the published report does not
    assert checked.returncode == 1 and "published head" in checked.stdout
    conn = sqlite3.connect(copy / "domain.db")
    conn.execute("UPDATE audit SET payload_json = '{}' WHERE seq = 3")
    conn.commit()
    conn.close()
    r = _cli(str(copy), "--export", str(tmp_path / "after.html"))
    assert r.returncode == 1 and "does NOT verify" in r.stdout
    assert "did NOT verify" in (tmp_path / "after.html").read_text()


def test_an_unknown_report_format_is_refused(busy, tmp_path):
    r = _export(busy, tmp_path, "report.txt")
    assert r.returncode == 2 and "REPORT.html or REPORT.json" in r.stderr
