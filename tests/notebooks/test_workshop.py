"""The teacher's tools: a class invited at once (the same token on every domain), a class's identical
requests approved at once, and ``fednb workshop serve`` creating, serving and re-serving the domains."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import fednb
from fednb.demo import data
from fednb.domain import Domain
from fednb.domain.domain import new_token
from tests.conftest import make_domain


def _fednb(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fednb", *args], capture_output=True, text=True, timeout=120,
                          env=env)


def _read(file: Path) -> dict[str, str]:
    with file.open(newline="") as f:
        return {row["name"]: row["token"] for row in csv.DictReader(f)}


def test_invite_bulk_writes_one_token_per_student_and_reuses_them_on_other_domains(tmp_path):
    for name in ("a", "b"):
        make_domain(tmp_path, name, data.hospital("hospital-a").head(50)).close()
    tokens = tmp_path / "tokens.csv"
    made = _fednb("domain", "invite-bulk", str(tmp_path / "a"), "--count", "30", "--prefix", "student",
                  "--csv", str(tokens))
    assert made.returncode == 0, made.stderr
    students = _read(tokens)
    assert list(students) == [f"student{i:02d}" for i in range(1, 31)]
    assert len(set(students.values())) == 30 and all(t.startswith("fednb_") for t in students.values())
    assert tokens.stat().st_mode & 0o777 == 0o600

    reused = _fednb("domain", "invite-bulk", str(tmp_path / "b"), "--token-file", str(tokens))
    assert reused.returncode == 0, reused.stderr
    for folder in ("a", "b"):
        d = Domain(tmp_path / folder)
        assert all(d.authenticate(t) == (name, "analyst") for name, t in students.items())
        assert sum(e.action == "invite" for e in d.audit_entries()) == 30
        d.close()

    again = _fednb("domain", "invite-bulk", str(tmp_path / "b"), "--token-file", str(tokens))
    assert again.returncode == 2 and "already registered" in again.stderr
    overwrite = _fednb("domain", "invite-bulk", str(tmp_path / "a"), "--count", "2", "--csv", str(tokens))
    assert overwrite.returncode == 2 and "exists" in overwrite.stderr
    assert _read(tokens) == students  # the class's tokens are never overwritten


def test_invite_bulk_is_all_or_nothing(tmp_path):
    d = make_domain(tmp_path, "a", data.hospital("hospital-a").head(50))
    d.invite("olga", role="owner")
    with pytest.raises(fednb.FednbError, match="already invited as owner"):
        d.invite_many({"s1": None, "olga": None, "s2": None})
    assert d.authenticate(d.invite("s1")) == ("s1", "analyst")  # nothing of the failed batch remained
    assert {e.object_id for e in d.audit_entries() if e.action == "invite"} == {"olga", "s1"}
    token = new_token()
    with pytest.raises(fednb.FednbError, match="two people"):
        d.invite_many({"x": token, "y": token})
    bad = tmp_path / "bad.csv"
    bad.write_text("student,secret\ns1,fednb_x\n")
    out = _fednb("domain", "invite-bulk", str(tmp_path / "a"), "--token-file", str(bad))
    assert out.returncode == 2 and "name,token" in out.stderr
    neither = _fednb("domain", "invite-bulk", str(tmp_path / "a"))
    assert neither.returncode == 2 and "--token-file" in neither.stderr
    d.close()


def test_same_code_decides_for_the_whole_class_and_nothing_else(workshop):
    """Three students send one function, two others another: one review covers each group."""
    folder = workshop.root / "hospital-a"
    d = Domain(folder)
    tokens = d.invite_many({f"pupil{i}": None for i in range(5)})
    d.close()
    good = fednb.function("def mean_age(df):\n    return fednb.stat(df.age)\n")
    rows = fednb.function("def some_rows(df):\n    return df.head(3)\n")
    ids = []
    for i, token in enumerate(tokens.values()):
        with fednb.connect([workshop.urls["hospital-a"]], token=token) as fed:
            ids.append(fed.dataset("patients").submit(good if i < 3 else rows).parts[0].id)
    approved = _fednb("domain", "approve", str(folder), ids[0], "--same-code", "--reason", "class exercise")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.count("approved ") == 3 and all(f"pupil{i}" in approved.stdout for i in range(3))
    d = Domain(folder)
    assert [d.request(i).status for i in ids[3:]] == ["pending", "pending"]
    denied = _fednb("domain", "deny", str(folder), ids[4], "--same-code", "--reason", "rows of patients")
    assert denied.returncode == 0, denied.stderr
    assert denied.stdout.count("denied ") == 2
    states = [d.request(i) for i in ids]
    assert all(s.status in ("approved", "running", "done") and s.decided_by == "owner" for s in states[:3])
    assert [(s.status, s.reason) for s in states[3:]] == [("denied", "rows of patients")] * 2
    approvals = [e for e in d.audit_entries() if e.action == "approve" and e.object_id in ids]
    assert len(approvals) == 3 and all(e.payload["reason"] == "class exercise" for e in approvals)
    d.close()


def test_workshop_serve_creates_serves_and_serves_again_with_the_same_token(tmp_path):
    env = {**os.environ, "FEDNB_HOME": str(tmp_path / "home")}
    root = tmp_path / "class"

    def serve() -> tuple[subprocess.Popen, dict]:
        proc = subprocess.Popen([sys.executable, "-m", "fednb", "workshop", "serve", str(root), "--port", "0"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("ready:"):
                break
        assert any(line.startswith("ready: 3 domains") for line in lines), (lines, proc.stderr.read())
        # the process that serves for the whole session (Binder's start) made the data apart: it holds
        # neither pandas nor numpy (about 100 MB of a 2 GB session)
        mapped = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "/pandas/" not in mapped and "/numpy/" not in mapped
        return proc, json.loads((tmp_path / "home" / "profiles.json").read_text())["workshop"]

    proc, first = serve()
    try:
        assert [Path(o["path"]).name for o in first["owner"]] == ["hospital-a", "hospital-b", "ylb-uyuni"]
        with fednb.connect([d["url"] for d in first["domains"]], token=first["domains"][0]["token"]) as fed:
            assert set(fed.datasets.dataset) == {"patients", "brine_batches"}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    for d in first["domains"]:  # SIGTERM stopped every server
        with pytest.raises(httpx.ConnectError):
            httpx.get(d["url"] + "/v1/info", timeout=5)

    proc, second = serve()  # the same folder again: kept, and the saved token still works
    try:
        assert second["domains"][0]["token"] == first["domains"][0]["token"]
        with fednb.connect([d["url"] for d in second["domains"]], token=second["domains"][0]["token"]) as fed:
            assert fed.dataset("patients").count().value == 2000
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    refused = _fednb("workshop", "serve", str(busy), "--port", "0", env=env)
    assert refused.returncode == 2 and "not empty" in refused.stderr and "Traceback" not in refused.stderr
