"""The row sets behind a built-in's result reach the server in a file of the domain, not in the reply.

Through a served domain: a crosstab over several Roaring containers is released, its file is gone
afterwards, and a crosstab one of whose cells differs by one row from an earlier one is still
blocked. A server that starts removes the files of server processes killed mid-job. Against the
server's side of the channel with a real worker process that misbehaves: a truncated, altered or
malformed file, or a reply that misdescribes it, fails the job with a clear reason and leaves no
file; a file altered after the reply is caught when the releasing transaction reads it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap

import httpx
import numpy as np
import pandas as pd
import pytest
from pyroaring import BitMap

from fednb.domain import Domain
from fednb.domain.process import DomainProcess
from fednb.domain.release import differencing
from fednb.domain.run import evidence_files
from fednb.domain.run.workers import Worker, WorkerLimits
from tests.api_support import ask_builtin, auth
from tests.conftest import start_live

ROWS = 150_000  # three Roaring containers: the cells are streamed ids, bitset and array containers


def table() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    g = rng.choice(["a", "b", "c"], ROWS)
    h = rng.choice(["u", "v"], ROWS)
    h2 = h.copy()
    h2[70_001] = "v" if h[70_001] == "u" else "u"  # one row moves from one cell to another
    return pd.DataFrame({"id": np.arange(ROWS), "g": g, "h": h, "h2": h2, "x": rng.normal(0, 1, ROWS)})


def test_a_crosstab_one_cell_apart_is_blocked_and_no_row_set_file_stays(tmp_path, alice_token):
    live = start_live(tmp_path, "files", table(), alice_token)
    try:
        with httpx.Client(base_url=live.url, headers=auth(alice_token), timeout=120) as client:
            first = ask_builtin(client, "crosstab", row="g", col="h")
            assert first["status"] == "done", first
            assert sum(sum(row) for row in first["result"]["counts"]) == ROWS
            # the same rows in total, but cell (g, h) of row 70,001 lost it and its neighbour gained it
            moved = ask_builtin(client, "crosstab", row="g", col="h2")
            assert moved["status"] == "blocked", moved
            assert "one of its cells" in moved["reason"] and first["id"] in moved["reason"]
            dropped = ask_builtin(client, "crosstab", row="g", col="h", where=[{"column": "id", "op": "!=", "value": 70_001}])
            assert dropped["status"] == "blocked" and "differencing attack" in dropped["reason"], dropped
            far = ask_builtin(client, "crosstab", row="g", col="h", where=[{"column": "id", "op": ">=", "value": 1000}])
            assert far["status"] == "done", far
        assert list((live.path / evidence_files.FOLDER).iterdir()) == []
        domain = Domain(live.path)
        sizes = [r[0] for r in domain.store.connect().execute("SELECT rows FROM released_rows WHERE cell = 1")]
        domain.close()
        assert len(sizes) == 12 and sum(sizes) == ROWS + ROWS - 1000
    finally:
        live.server.stop()


def test_a_starting_server_removes_the_row_sets_of_processes_that_are_gone(tmp_path, alice_token):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = start_live(tmp_path, "swept", table().head(100), alice_token)
    live.server.stop()
    folder = live.path / evidence_files.FOLDER
    folder.mkdir(exist_ok=True)
    stale = [folder / f"{dead.pid}-12345-7.bin", folder / f"{dead.pid}-0-4.bin",
             folder / "1-12345-3.bin", folder / "not-ours.tmp"]  # pid 1 runs, but started at another time
    for path in stale:
        path.write_bytes(b"rows of a killed job")
    ours = evidence_files.path_for(live.path, 9)  # this process runs: its file stays
    ours.write_bytes(b"in use")
    with DomainProcess(live.path):
        assert sorted(folder.iterdir()) == [ours]


# -- the server's side of the channel, with a worker process that misbehaves --------------------------
BLOB = BitMap(range(0, 200_000, 3)).serialize()
SHA = hashlib.sha256(BLOB).hexdigest()
GOOD = {"rows": len(range(0, 200_000, 3)), "sha256": SHA, "offset": 0, "size": len(BLOB)}

FAKE_WORKER = textwrap.dedent("""
    import json, sys
    plan = json.loads(sys.argv[1])
    print(json.dumps({"status": "ready"}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        with open(job["evidence_file"], "wb") as f:
            f.write(bytes.fromhex(plan["file"]))
        print(json.dumps({"status": "ok", "result": {"n": 1}, "evidence": plan["evidence"]}), flush=True)
""")


def _fake_worker(file: bytes, evidence: dict) -> Worker:
    plan = json.dumps({"file": file.hex(), "evidence": evidence})

    def spawn(memory_mb: int, ahead: list) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", FAKE_WORKER, plan], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)

    return Worker(WorkerLimits(wall_seconds=30), spawn)


def test_row_sets_the_worker_wrote_are_read_one_at_a_time_and_checked(tmp_path):
    path = tmp_path / "job.bin"
    worker = _fake_worker(b"x" * 5 + BLOB, {"rows": {**GOOD, "offset": 5}, "cells": [{**GOOD, "offset": 5}]})
    try:
        reply = worker.run({"evidence_file": str(path)})
    finally:
        worker.close()
    assert reply.status == "ok", reply.reason
    assert reply.evidence["rows"]["bitmap"].read() == BLOB
    assert reply.evidence["rows"]["bitmap"].container_sizes() == differencing.container_sizes(BLOB)
    assert differencing._blob(reply.evidence["cells"][0]) == BLOB
    path.write_bytes(b"x" * 5 + BLOB[:-1] + bytes([BLOB[-1] ^ 1]))  # altered after the reply
    with pytest.raises(evidence_files.UnreadableEvidence, match="SHA-256"):
        reply.evidence["rows"]["bitmap"].read()


GARBAGE = b"not a bitmap at all" * 3
BROKEN = {
    "truncated": (BLOB[:-10], {"rows": GOOD}, "cut short"),
    "altered": (BLOB[:-1] + bytes([BLOB[-1] ^ 1]), {"rows": GOOD}, "SHA-256"),
    "no bitmap": (GARBAGE, {"rows": {**GOOD, "size": len(GARBAGE),
                                     "sha256": hashlib.sha256(GARBAGE).hexdigest()}}, "not Roaring"),
    "wrong size": (BLOB, {"rows": {**GOOD, "rows": GOOD["rows"] - 1}}, "sizes"),
    "past the end": (BLOB, {"cells": [{**GOOD, "offset": 1}]}, "cut short"),
    "negative offset": (BLOB, {"cells": [{**GOOD, "offset": -1}]}, "described"),
    "inline bitmap": (BLOB, {"rows": {**GOOD, "bitmap": "AAAA"}}, "described"),
    "no hash": (BLOB, {"rows": {k: v for k, v in GOOD.items() if k != "sha256"}}, "described"),
    "not a record": (BLOB, {"cells": ["zzz"]}, "described"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_worker_whose_row_sets_are_wrong_fails_the_job_clearly_and_leaves_no_file(tmp_path, case):
    file, evidence, reason = BROKEN[case]
    path = tmp_path / "job.bin"
    worker = _fake_worker(file, evidence)
    try:
        reply = worker.run({"evidence_file": str(path)})
        if reply.status == "ok":  # the shape was right: the bytes are checked when the release reads them
            with pytest.raises(evidence_files.UnreadableEvidence, match=reason):
                for record in [reply.evidence.get("rows"), *reply.evidence.get("cells", [])]:
                    if record:
                        record["bitmap"].read()
        else:
            assert reply.status == "error" and reason in reply.reason and "row sets" in reply.reason
            assert not path.exists()
        assert worker.run({"evidence_file": str(path)}).status in ("ok", "error")  # the server goes on
    finally:
        worker.close()


# -- a crosstab's cells from the rows kept per level: the same sets as streaming every row's cell ------
def _messy() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 140_000
    frame = pd.DataFrame({"id": np.arange(n), "g": rng.choice(["a", "b", "c", "rare"], n, p=[.4, .3, .29, .01]),
                          "h": rng.choice(["u", "v"], n), "x": rng.normal(0, 1, n),
                          "f": rng.choice([1.0, 2.0, np.nan], n)})
    frame.loc[rng.choice(n, 500, replace=False), "g"] = None
    return frame


@pytest.fixture(scope="module")
def messy_engine(tmp_path_factory):
    from fednb.domain.data.engines.duckdb import ParquetEngine

    path = tmp_path_factory.mktemp("messy") / "data.parquet"
    _messy().to_parquet(path, index=False, row_group_size=25_000)
    engine = ParquetEngine(path, memory_limit="256MB", threads=2)
    yield engine
    engine.close()


KEPT_CASES = {
    "every row": ("g", "h", []),
    "scattered rows": ("g", "h", [{"column": "x", "op": ">", "value": 0.5}]),
    "a run of rows": ("h", "g", [{"column": "id", "op": ">=", "value": 65_535}]),
    "one level": ("g", "h", [{"column": "g", "op": "==", "value": "b"}]),
    "NaN and missing": ("f", "g", [{"column": "id", "op": "<", "value": 100_000}]),
    "crossed with itself": ("g", "g", []),
    "no public level": ("h", "x2", []),
}


@pytest.mark.parametrize("case", sorted(KEPT_CASES))
def test_kept_level_rows_give_the_cells_and_row_sets_of_streaming(messy_engine, case, monkeypatch):
    from fednb.domain.review.policy import DisclosureSection
    from fednb.domain.run import builtins
    from fednb.domain.run.builtins import scan as scan_module
    from fednb.domain.run.builtins import stats

    row, col, where = KEPT_CASES[case]
    levels = {"g": ["a", "b", "c"], "h": ["u", "v"], "f": [1.0, 2.0], "x2": []}
    if col == "x2":  # a categorical column whose levels are all hidden: every row is '(other)'
        col, levels["h"] = "h", []

    def crosstab() -> tuple[dict, dict]:
        ctx = builtins.Context(DisclosureSection(), levels)
        return builtins.compute("crosstab", {"row": row, "col": col, "where": where}, messy_engine, ctx), ctx.evidence

    calls = []
    real = scan_module.kept_codes
    monkeypatch.setattr(stats, "kept_codes", lambda *a: calls.append(1) or real(*a))
    kept_cold, kept_warm = crosstab(), crosstab()
    assert len(calls) == 2 and scan_module._kept.get(messy_engine)  # the kept path was taken, then reused
    monkeypatch.setattr(stats, "kept_codes", lambda *a: None)
    streamed = crosstab()
    assert kept_cold == kept_warm == streamed
    assert streamed[1]["cells"] and streamed[0]["n"] > 0


def test_a_worker_killed_after_writing_its_row_sets_leaves_no_file(tmp_path):
    path = tmp_path / "job.bin"
    dying = FAKE_WORKER.replace('print(json.dumps({"status": "ok"', 'os.kill(os.getpid(), 9); print(json.dumps({"status": "ok"')
    dying = dying.replace("import json, sys", "import json, os, sys")
    assert "os.kill" in dying

    def spawn(memory_mb: int, ahead: list) -> subprocess.Popen:
        plan = json.dumps({"file": BLOB.hex(), "evidence": {"rows": GOOD}})
        return subprocess.Popen([sys.executable, "-c", dying, plan], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    worker = Worker(WorkerLimits(wall_seconds=30), spawn)
    try:
        reply = worker.run({"evidence_file": str(path)})
    finally:
        worker.close()
    assert reply.status == "killed" and reply.evidence == {}
    assert not path.exists()


def test_kept_level_rows_are_not_reused_for_a_file_replaced_under_its_engine(tmp_path):
    from fednb.domain.data.engines.duckdb import ParquetEngine
    from fednb.domain.review.policy import DisclosureSection
    from fednb.domain.run import builtins

    path = tmp_path / "data.parquet"
    frame = _messy()
    frame.to_parquet(path, index=False)
    engine = ParquetEngine(path, memory_limit="256MB", threads=2)
    try:
        def crosstab() -> dict:
            ctx = builtins.Context(DisclosureSection(), {"g": ["a", "b", "c"], "h": ["u", "v"]})
            return builtins.compute("crosstab", {"row": "g", "col": "h"}, engine, ctx)

        before = crosstab()
        frame.assign(h=frame["h"].where(frame["id"] % 5 != 0, "u")).to_parquet(path, index=False)
        after = crosstab()
        assert after["counts"] != before["counts"]
        assert after == builtins.compute("crosstab", {"row": "g", "col": "h"},
                                         ParquetEngine(path, memory_limit="256MB", threads=2),
                                         builtins.Context(DisclosureSection(), {"g": ["a", "b", "c"], "h": ["u", "v"]}))
    finally:
        engine.close()
