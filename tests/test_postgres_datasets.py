"""Datasets whose rows stay in the owner's PostgreSQL database (a real server: tests/postgres_server.py).

The domain reaches the table with a read-only role; built-ins are translated to PostgreSQL and run
there. What a hostile analyst or a failing database can do is tried against the real server.
"""

from __future__ import annotations

import hashlib
import json
import socket
import stat

import duckdb
import httpx
import numpy as np
import pandas as pd
import psycopg
import pytest
from click.testing import CliRunner

from fednb.demo import data
from fednb.domain import Domain
from fednb.domain.data import sources
from fednb.domain.data.engines.base import EngineError
from fednb.domain.data.engines.postgres import PostgresEngine
from fednb.domain.review.policy import DisclosureSection
from fednb.domain.run import builtins
from fednb.errors import InvalidInput
from tests.api_support import assert_clean_error, auth
from tests.pg_tables import read_only_role, write_table
from tests.test_engine import CALLS, LEVELS, awkward

PASSWORD = "reader-secret-pw"


def patients_frame() -> pd.DataFrame:
    """A hospital's patients with some bmi missing (so missingness is listed like a file's)."""
    df = data.hospital("hospital-a")
    df.loc[df.index % 37 == 0, "bmi"] = np.nan
    return df


@pytest.fixture
def owner_db(postgres_database):
    """The owner's database: ``patients`` (the dataset), ``salaries`` (not shared), and a role that
    may only read ``patients``."""
    frame = patients_frame()
    write_table(postgres_database, "patients", frame)
    write_table(postgres_database, "salaries", pd.DataFrame({"name": ["boss"], "salary": [999_999.0]}))
    role = "r_" + hashlib.sha256(postgres_database.encode()).hexdigest()[:12]
    reader = read_only_role(postgres_database, role, ["patients"])
    return {"admin": postgres_database, "reader": reader, "role": role, "frame": frame}


def file_twin(tmp_path, frame: pd.DataFrame) -> Domain:
    d = Domain.init(tmp_path / "dom", "dom")
    csv = tmp_path / "patients.csv"
    frame.to_csv(csv, index=False)
    d.add_dataset(csv, "filecopy")
    return d


def test_listing_of_a_postgres_table_equals_the_listing_of_its_file_copy(tmp_path, owner_db):
    d = file_twin(tmp_path, owner_db["frame"])
    remote = sources.add_to_domain(d, owner_db["reader"], "patients", "patients", "kept in PostgreSQL")
    local = d.dataset("filecopy")
    assert [c.model_dump() for c in remote.columns] == [c.model_dump() for c in local.columns]
    assert remote.rows == local.rows
    assert any(c.missing for c in remote.columns) and any(c.levels for c in remote.columns)
    assert d.row_count("patients") == len(owner_db["frame"])
    assert len(pd.read_parquet(d.mock_path("patients"))) > 0
    assert json.loads((d.path / "datasets" / "patients" / "source.json").read_text()) == {
        "engine": "postgresql", "table": "patients"}
    assert not (d.path / "datasets" / "patients" / "data.parquet").exists()


def test_the_credentials_stay_in_a_private_file_and_out_of_the_audit_log_and_listing(tmp_path, owner_db):
    d = file_twin(tmp_path, owner_db["frame"])
    sources.add_to_domain(d, owner_db["reader"], "patients", "patients")
    folder = d.path / "datasets" / "patients"
    secret = folder / sources.SECRET_FILE
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert secret.read_text().strip() == owner_db["reader"]
    public = [p for p in folder.iterdir() if p.name != sources.SECRET_FILE]
    audit = json.dumps([dict(r) for r in d.store.query("SELECT * FROM audit")])
    listing = json.dumps([m.model_dump() for m in d.datasets()])
    for text in [audit, listing, *(p.read_bytes().decode("latin-1") for p in public)]:
        assert PASSWORD not in text and owner_db["role"] not in text
    assert "postgresql" in audit  # the audit row says where the rows stay


def test_credentials_that_could_write_are_refused_and_nothing_is_registered(tmp_path, owner_db):
    d = file_twin(tmp_path, owner_db["frame"])
    with pytest.raises(InvalidInput, match="read-only role") as refused:
        sources.add_to_domain(d, owner_db["admin"], "patients", "patients")
    assert "postgres@" not in str(refused.value)
    assert not (d.path / "datasets" / "patients").exists()
    assert [m.name for m in d.datasets()] == ["filecopy"]


def test_the_cli_adds_a_table_and_never_prints_the_password(tmp_path, owner_db):
    from fednb.cli import main

    Domain.init(tmp_path / "dom", "dom").close()
    runner = CliRunner()
    done = runner.invoke(main, ["domain", "add-dataset", str(tmp_path / "dom"), "patients",
                                "--sql", owner_db["reader"], "--table", "patients"])
    assert done.exit_code == 0, done.output
    assert "dataset 'patients'" in done.output and PASSWORD not in done.output
    port = _closed_port()
    down = runner.invoke(main, ["domain", "add-dataset", str(tmp_path / "dom"), "other",
                                "--sql", f"postgresql://reader:{PASSWORD}@127.0.0.1:{port}/db", "--table", "t"])
    assert down.exit_code == 2
    assert "cannot be reached" in down.output and PASSWORD not in down.output and "Traceback" not in down.output
    assert "--table" in runner.invoke(main, ["domain", "add-dataset", str(tmp_path / "dom"), "x",
                                             "--sql", owner_db["reader"]]).output


def test_aggregates_run_in_postgres_and_equal_duckdb_on_the_file(owner_db, tmp_path):
    frame = owner_db["frame"]
    parquet = tmp_path / "patients.parquet"
    frame.to_parquet(parquet)
    sql = ("SELECT sex, count(*) AS n, avg(bmi) AS mean_bmi, var_samp(age) AS var_age, sum(systolic_bp) AS s"
           " FROM data WHERE age >= ? AND smoker = ? GROUP BY sex ORDER BY sex")
    engine = PostgresEngine(owner_db["reader"], "patients")
    try:
        remote = engine.query(sql, (40, True))
        assert engine.row_count() == len(frame)
        assert list(engine.columns()) == list(frame.columns)
    finally:
        engine.close()
    con = duckdb.connect()
    con.execute(f"CREATE VIEW data AS SELECT * FROM read_parquet('{parquet}')")
    local = con.execute(sql, [40, True]).df()
    assert remote["n"].tolist() == local["n"].tolist()
    for column in ("mean_bmi", "var_age", "s"):
        np.testing.assert_allclose(remote[column].astype(float), local[column].astype(float), rtol=1e-9)


def test_hostile_sql_cannot_write_or_read_another_table(owner_db):
    """Three walls: the translation refuses anything but one SELECT over ``data``; the transaction
    is read-only; the role may read only the dataset's table. Each is tried on its own."""
    engine = PostgresEngine(owner_db["reader"], "patients")
    try:
        for hostile in ("DROP TABLE data", "SELECT * FROM salaries", "SELECT count(*) FROM data; DELETE FROM data",
                        "SELECT (SELECT max(salary) FROM salaries) FROM data", "INSERT INTO data VALUES (1)",
                        "SELECT * FROM pg_catalog.pg_authid", "SELECT * FROM read_csv('/etc/passwd')"):
            with pytest.raises(EngineError, match="only"):
                engine.query(hostile)
        for bypass, why in (("DELETE FROM patients", "ReadOnlySqlTransaction"),
                            ("CREATE TABLE stolen AS SELECT 1", "ReadOnlySqlTransaction"),
                            ("SELECT set_config('transaction_read_only', 'off', true)", "ActiveSqlTransaction"),
                            ("SELECT * FROM salaries", "InsufficientPrivilege")):
            with pytest.raises(EngineError, match=why):
                engine._run(bypass, ())
        with psycopg.connect(owner_db["reader"], autocommit=True) as direct:  # the role alone, no read-only transaction
            for write in ("DELETE FROM patients", "DROP TABLE patients", "CREATE TABLE stolen (a int)"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    direct.execute(write)
        injected = engine.query("SELECT count(*) AS n FROM data WHERE sex = ?", ("F'; DROP TABLE patients; --",))
        assert int(injected["n"].iloc[0]) == 0
        assert engine.row_count() == len(owner_db["frame"])
    finally:
        engine.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_database_that_is_down_or_slow_gives_a_readable_error_without_credentials(owner_db):
    down = PostgresEngine(f"postgresql://reader:{PASSWORD}@127.0.0.1:{_closed_port()}/db", "patients",
                          connect_seconds=2)
    with pytest.raises(EngineError, match="cannot be reached") as failed:
        down.row_count()
    assert PASSWORD not in str(failed.value) and "127.0.0.1" not in str(failed.value)
    slow = PostgresEngine(owner_db["reader"], "patients", timeout_seconds=0.5)
    try:
        with pytest.raises(EngineError, match="did not answer within 0.5 s"):
            slow.query("SELECT count(*) AS n FROM data a, data b, data c")
        assert slow.row_count() == len(owner_db["frame"])  # the connection is usable again
    finally:
        slow.close()


def test_a_cast_error_does_not_quote_the_owners_rows(owner_db):
    engine = PostgresEngine(owner_db["reader"], "patients")
    try:
        with pytest.raises(EngineError) as failed:
            engine.query("SELECT sum(CAST(sex AS INTEGER)) AS s FROM data")
        assert "InvalidTextRepresentation" in str(failed.value)
        assert '"F"' not in str(failed.value) and '"M"' not in str(failed.value)
    finally:
        engine.close()


# -- the built-ins on a PostgreSQL table equal the same built-ins on the Parquet copy -------------------
PARITY_CALLS = [*CALLS, ("glm", {"formula": "died ~ age + bmi + visits", "family": "binomial"})]


@pytest.fixture
def awkward_twins(postgres_database, tmp_path):
    """The engine tests' awkward table (gaps, a category, dates, SQL in a column name) in PostgreSQL
    and as the domain's Parquet file."""
    from fednb.domain.data.engines.factory import open_engine
    from fednb.domain.review.policy import EngineSection

    df = awkward()
    df["died"] = (df["visits"] % 3 == 0).astype("int64")
    write_table(postgres_database, "awkward", df)
    folder = tmp_path / "datasets" / "awkward"
    folder.mkdir(parents=True)
    df.to_parquet(folder / "data.parquet", index=False)
    local = open_engine(folder, EngineSection(memory_limit="256MB", threads=1))
    remote = PostgresEngine(postgres_database, "awkward")
    yield local, remote
    local.close()
    remote.close()


def test_each_builtin_on_postgres_equals_the_parquet_copy(awkward_twins):
    local, remote = awkward_twins
    where = [{"column": "blood pressure", "op": ">", "value": 110}]
    for name, args in PARITY_CALLS:
        contexts = [builtins.Context(DisclosureSection(), LEVELS) for _ in range(2)]
        expected, got = (builtins.compute(name, {**args, "where": where}, engine, ctx)
                         for engine, ctx in zip((local, remote), contexts))
        assert_same(got, expected, f"{name} {args}")
        # as many rows behind it (the ids differ: PostgreSQL's come from each row's place in the table)
        assert contexts[1].evidence["rows"]["rows"] == contexts[0].evidence["rows"]["rows"], name


def test_the_same_refusals_happen_on_postgres_as_on_the_parquet_copy(awkward_twins):
    from fednb.domain.release.disclosure import Blocked

    local, remote = awkward_twins
    for name, args in (("count", {"where": [{"column": "visits", "op": "==", "value": 8}]}),
                       ("mean", {"column": "bmi", "where": [{"column": "age", "op": ">", "value": 93}]})):
        refusals = []
        for engine in (local, remote):
            with pytest.raises(Blocked) as refused:
                builtins.compute(name, args, engine, builtins.Context(DisclosureSection(min_cohort=100), LEVELS))
            refusals.append(str(refused.value))
        assert refusals[0] == refusals[1]


def assert_same(got: dict, expected: dict, what: str) -> None:
    """Exact for counts and anything not a float; floats to 1e-9 relative."""
    assert got.keys() == expected.keys(), what
    for key in got:
        a, b = got[key], expected[key]
        if isinstance(b, float) or (isinstance(b, list) and b and isinstance(np.asarray(b).flat[0], np.floating | float)):
            np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=1e-9,
                                       err_msg=f"{what}: {key}")
        else:
            assert a == b, f"{what}: {key}"


# -- through a real domain's HTTP API ------------------------------------------------------------------
@pytest.fixture
def served(tmp_path, owner_db, alice_token):
    """A served domain with the file copy (``patients``) and the PostgreSQL table (``registry``)."""
    from fednb.domain.process import DomainProcess
    from tests.conftest import make_domain

    d = make_domain(tmp_path, "hospital-pg", owner_db["frame"], token=alice_token)
    sources.add_to_domain(d, owner_db["reader"], "patients", "registry", "the same rows, kept in PostgreSQL")
    d.close()
    server = DomainProcess(tmp_path / "hospital-pg")
    server.start()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield server, client, tmp_path / "hospital-pg"
    server.stop()


def ask(client, token: str, dataset: str, name: str, args: dict):
    return client.post("/v1/requests?wait=30", headers=auth(token),
                       json={"dataset": dataset, "kind": "builtin", "name": name, "args": args})


def test_builtins_over_http_on_postgres_equal_the_file_copy(served, alice_token):
    _, client, _ = served
    for name, args in (("count", {}), ("mean", {"column": "bmi", "where": [{"column": "sex", "op": "==", "value": "F"}]}),
                       ("variance", {"column": "age"}), ("crosstab", {"row": "sex", "col": "smoker"}),
                       ("histogram", {"column": "age", "bins": [30, 50, 70]})):  # GLM: in rounds, above
        results = [ask(client, alice_token, dataset, name, args).json() for dataset in ("patients", "registry")]
        assert [r.get("status") for r in results] == ["done", "done"], (name, results)
        assert_same(results[1]["result"], results[0]["result"], name)
    blocked = [ask(client, alice_token, dataset, "count", {"where": [{"column": "age", "op": ">", "value": 94}]}).json()
               for dataset in ("patients", "registry")]
    assert [b["status"] for b in blocked] == ["blocked", "blocked"] and blocked[0]["reason"] == blocked[1]["reason"]


@pytest.mark.parametrize("where", [
    [{"column": "sex", "op": "==", "value": "F'; DROP TABLE patients; --"}],
    [{"column": "sex", "op": "in", "value": ["x') OR 1=1; DELETE FROM patients; --"]}],
    [{"column": 'sex" = sex; DROP TABLE patients; --', "op": "==", "value": 1}],
    [{"column": "(SELECT max(salary) FROM salaries)", "op": ">", "value": 0}],
])
def test_a_hostile_filter_over_http_cannot_write_or_read_another_table(served, owner_db, alice_token, where):
    _, client, _ = served
    r = ask(client, alice_token, "registry", "count", {"where": where})
    if r.status_code >= 400:
        assert_clean_error(r, 400)
        assert "no column" in r.json()["error"]
    else:
        assert r.json()["status"] in ("done", "blocked"), r.text
        assert (r.json().get("result") or {}).get("n", 0) == 0
    with psycopg.connect(owner_db["admin"]) as admin:
        assert admin.execute("SELECT count(*) FROM patients").fetchone()[0] == len(owner_db["frame"])
        assert admin.execute("SELECT count(*) FROM salaries").fetchone()[0] == 1


def test_a_database_that_goes_down_fails_the_request_readably_and_keeps_it(served, alice_token):
    """The analyst reads which domain failed and why (no traceback, no credentials); the request and
    its failure stay in the domain's store and audit log."""
    import fednb

    _, client, folder = served
    secret = folder / "datasets" / "registry" / sources.SECRET_FILE
    secret.write_text(f"postgresql://reader:{PASSWORD}@127.0.0.1:{_closed_port()}/gone\n")  # the database is gone
    federation = fednb.connect([served[0].url], token=alice_token)
    try:
        with pytest.raises(fednb.errors.NotEnoughDomains) as failed:
            federation.dataset("registry").count(timeout=60)
    finally:
        federation.close()
    message = str(failed.value)
    assert "hospital-pg" in message and "PostgreSQL database cannot be reached" in message
    for leak in (PASSWORD, "Traceback", "127.0.0.1:"):
        assert leak not in message
    d = Domain(folder)
    try:
        kept = d.store.query("SELECT r.status, r.reason FROM requests r WHERE r.dataset = 'registry'")
        assert [(k["status"], "cannot be reached" in (k["reason"] or "")) for k in kept] == [("failed", True)]
        audit = json.dumps([dict(r) for r in d.store.query("SELECT * FROM audit WHERE object_id IN "
                                                             "(SELECT id FROM requests)")])
        assert "cannot be reached" in audit and PASSWORD not in audit
    finally:
        d.close()
