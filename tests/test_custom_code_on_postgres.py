"""Custom code on a dataset whose rows stay in the owner's PostgreSQL, through a served domain's HTTP
API and a real PostgreSQL server (tests/postgres_server.py).

The domain reads the declared columns itself, through the dataset's engine (read-only, under the
statement timeout), and hands them to the sandboxed job as a private Parquet file; the job never
holds the connection. What is tried: the same function gives the same result on the Parquet copy and
on the table; a job looking for the database's credentials (environment, the secret file, its own
memory) or a way to it (TCP port, UNIX socket, psycopg with the password) finds none; a table grown
past the owner's cap is refused without being read whole (a row-level-security tripwire in the
owner's database fails any query that scans past the cap's first row beyond it).
"""

from __future__ import annotations

import hashlib
import uuid

import httpx
import psycopg
import pytest

from fednb.demo import data
from fednb.domain import Domain
from fednb.domain.data import sources
from fednb.domain.run.job_data import JOB_DATA
from tests.api_support import auth
from tests.conftest import owners_approving, start_live
from tests.pg_tables import read_only_role, write_table
from tests.postgres_server import create_database
from tests.test_declared_columns import PAGES_HOLDING

PASSWORD = "reader-secret-pw"  # tests/pg_tables.py gives every read-only role this one
CAP = 1000
FAST = {"wall_seconds = 120": "wall_seconds = 60",
        "show_error_text = false": "show_error_text = true",  # the reasons name the exception
        "max_rows_loaded = 0": f"max_rows_loaded = {CAP}"}

# Any query that scans the table ``growing`` past row CAP + 1 fails in the owner's database (once
# armed): the row-level-security policy evaluates it on every row the domain's role scans.
TRIPWIRE = """
CREATE TABLE tripwire (max_rows bigint);
INSERT INTO tripwire VALUES (NULL);
CREATE FUNCTION tripped(n bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF n > (SELECT max_rows FROM tripwire) THEN RAISE EXCEPTION 'scanned past the cap'; END IF;
  RETURN true;
END $$;
ALTER TABLE growing ENABLE ROW LEVEL SECURITY;
CREATE POLICY reads ON growing FOR SELECT USING (tripped(seq));
"""


@pytest.fixture(scope="module")
def target(tmp_path_factory, postgres_admin_url, alice_token):
    root = tmp_path_factory.mktemp("custom-pg")
    frame = data.hospital("hospital-a")
    cohort = frame.head(600).reset_index(drop=True)
    admin = create_database(postgres_admin_url, "custom_code_on_postgres")
    write_table(admin, "cohort", cohort)
    write_table(admin, "growing", cohort.assign(seq=range(1, len(cohort) + 1)))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(TRIPWIRE)
    role = "r_" + hashlib.sha256(admin.encode()).hexdigest()[:12]
    reader = read_only_role(admin, role, ["cohort", "growing", "tripwire"])
    live = start_live(root, "custom-pg", frame, alice_token, policy_edits=FAST)
    live.server.stop()
    cohort.to_parquet(root / "cohort.parquet", index=False)
    d = Domain(live.path)
    d.add_dataset(root / "cohort.parquet", "cohort", "600 patients, as a file")
    sources.add_to_domain(d, reader, "cohort", "registry", "the same 600 patients, kept in PostgreSQL")
    sources.add_to_domain(d, reader, "growing", "growing", "a table that grows after it is registered")
    sources.add_to_domain(d, reader, "cohort", "twin", "the same table again, with no release yet")
    d.close()
    with psycopg.connect(admin, autocommit=True) as conn:
        socket_dir = conn.execute("SHOW unix_socket_directories").fetchone()[0]
        port = conn.execute("SHOW port").fetchone()[0]
    live.server.restart()
    with httpx.Client(base_url=live.url, timeout=90) as client:
        yield {"live": live, "client": client, "cohort": cohort, "admin": admin, "port": int(port),
               "unix_socket": f"{socket_dir}/.s.PGSQL.{port}", "reader": reader}
    live.server.stop()


def _run(target, source: str, dataset: str, columns: list[str] | None, args: dict | None = None) -> dict:
    client, live = target["client"], target["live"]
    submitted = client.post("/v1/requests", headers=auth(live.token), json={
        "dataset": dataset, "kind": "function", "name": "job", "code": source, "args": args or {},
        "limits": {} if columns is None else {"columns": columns}, "idempotency_key": uuid.uuid4().hex})
    assert submitted.status_code == 201, submitted.text
    rid = submitted.json()["id"]
    approved = client.post(f"/v1/requests/{rid}/approve", headers=auth(live.owner_token), json={"reason": "pg suite"})
    assert approved.status_code == 200, approved.text
    return client.get(f"/v1/requests/{rid}?wait=60", headers=auth(live.token)).json()


def _job(body: str, params: str = "df") -> str:
    return f"def job({params}):\n" + "\n".join("    " + line for line in body.splitlines()) + "\n"


PARITY = _job("""return {'cols': list(df.columns), 'age': fednb.stat(df.age), 'bmi': fednb.stat(df.loc[df.smoker, 'bmi']),
        'n': fednb.table(df, 'sex'), 'm': fednb.table(df, 'sex', 'age', 'mean')}""")


@pytest.mark.parametrize("columns", [["sex", "age", "bmi", "smoker"], None], ids=["declared", "all"])
def test_a_function_gives_the_same_result_on_postgres_as_on_the_parquet_copy(target, columns):
    on_file = _run(target, PARITY, "cohort", columns)
    on_postgres = _run(target, PARITY, "registry", columns)
    assert on_file["status"] == "done", on_file.get("reason")
    assert on_postgres["status"] == "done", on_postgres.get("reason")
    assert on_postgres["result"] == on_file["result"]
    assert on_postgres["result"]["cols"] == (columns or list(target["cohort"].columns))
    assert not list((target["live"].path / "datasets" / JOB_DATA).glob("*")), "the job's copy was left behind"


def test_the_frame_holds_only_the_declared_columns_of_the_table(target):
    final = _run(target, _job("return sorted(df.columns)"), "registry", ["age"])
    assert final["status"] == "done", final.get("reason")
    assert final["result"] == ["age"]
    undeclared = _run(target, _job("return fednb.stat(df['bmi'])"), "registry", ["age"])
    assert undeclared["status"] == "failed" and "KeyError: 'bmi'" in undeclared["reason"], undeclared


# Looks for the password in the job's own memory (assembled here from a reversed tail, so no object
# of the job's spec holds it), then plants one copy and looks again: the first scan must find
# nothing, the second must find it (the scan can see).
CREDENTIAL_SCAN = PAGES_HOLDING + """needle = b'reader-' + tail[::-1].encode()
anchors = [df['age'].values.ctypes.data, id(df), id(tail), libc.malloc(100), libc.malloc(5000),
           libc.malloc(70000), libc.malloc(300000)]
before = pages_holding(needle, anchors)
assert not before, f'the password is in the job memory: {before} pages'
assert not any(tail[::-1] in value for value in os.environ.values()), 'the password is in the environment'
planted = bytearray(needle * 600)
anchors.append(ctypes.addressof((ctypes.c_char * len(planted)).from_buffer(planted)))
assert pages_holding(needle, anchors), 'the scan could not find a planted copy'
return fednb.stat(df.age)"""


def test_the_credentials_are_nowhere_in_the_jobs_environment_or_memory(target):
    final = _run(target, _job(CREDENTIAL_SCAN, "df, tail"), "registry", ["age"], {"tail": PASSWORD[7:][::-1]})
    assert final["status"] == "done", final.get("reason")


def test_the_secret_file_cannot_be_opened_by_the_job(target):
    secret = target["live"].path / "datasets" / "registry" / sources.SECRET_FILE
    assert PASSWORD in secret.read_text()  # it is there, on the domain's side
    final = _run(target, _job(f"return open({str(secret)!r}).read()"), "registry", ["age"])
    assert final["status"] == "failed", final
    assert "PermissionError: [Errno 13] Permission denied" in final["reason"], final["reason"]
    assert PASSWORD not in final["reason"]


def test_the_copies_of_running_jobs_are_out_of_reach(target):
    """The folder of the domain's copies (this job's own and any other job's running at once, which may
    hold other columns) cannot be listed or read by analyst code."""
    folder = target["live"].path / "datasets" / JOB_DATA
    body = f"import os\nreturn len(os.listdir({str(folder)!r}))"
    final = _run(target, _job(body), "registry", ["age"])
    assert final["status"] == "failed", final
    assert "PermissionError: [Errno 13] Permission denied" in final["reason"], final["reason"]


@pytest.mark.parametrize("attempt", ["tcp", "unix", "psycopg"])
def test_a_job_cannot_reach_the_database(target, attempt):
    body = {
        "tcp": "import socket\nsocket.create_connection(('127.0.0.1', port), timeout=5)\nreturn 1",
        "unix": "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect(path)\nreturn 1",
        "psycopg": "import psycopg\npsycopg.connect(url, connect_timeout=5).execute('SELECT 1')\nreturn 1",
    }[attempt]
    args = {"port": target["port"], "path": target["unix_socket"], "url": target["reader"]}
    final = _run(target, _job(body, "df, port, path, url"), "registry", ["age"], args)
    assert final["status"] == "failed", final
    assert final["result"] is None
    # the socket API is walled (seccomp): no socket to name the port or the UNIX socket; psycopg's libpq
    # gets no connection either, whatever it was given
    said = "OperationalError" if attempt == "psycopg" else "PermissionError: [Errno 1] Operation not permitted"
    assert said in final["reason"], final["reason"]
    assert PASSWORD not in final["reason"]


def test_a_table_grown_past_the_cap_is_refused_without_being_read_whole(target):
    with psycopg.connect(target["admin"], autocommit=True) as conn:
        conn.execute("INSERT INTO growing SELECT age, sex, bmi, smoker, systolic_bp, diabetes, readmitted,"
                     " followup_days, died, seq + 600 FROM growing")  # 1,200 rows now, registered with 600
        conn.execute("INSERT INTO growing SELECT age, sex, bmi, smoker, systolic_bp, diabetes, readmitted,"
                     " followup_days, died, seq + 1200 FROM growing WHERE seq <= 600")  # 1,800
        conn.execute("UPDATE tripwire SET max_rows = %s", (CAP + 1,))  # armed: a scan past row CAP + 1 fails
    try:
        final = _run(target, _job("return fednb.stat(df.age)"), "growing", ["age"])
    finally:
        with psycopg.connect(target["admin"], autocommit=True) as conn:
            conn.execute("UPDATE tripwire SET max_rows = NULL")
    assert final["status"] == "failed", final
    assert f"more rows than this domain lets custom code load ({CAP:,}" in final["reason"], final["reason"]
    assert final["result"] is None
    # the tripwire holds: a query reading the whole table as the domain's role fails
    with psycopg.connect(target["admin"], autocommit=True) as conn:
        conn.execute("UPDATE tripwire SET max_rows = %s", (CAP + 1,))
    try:
        with psycopg.connect(target["reader"]) as conn, pytest.raises(psycopg.errors.RaiseException):
            conn.execute("SELECT count(*) FROM growing").fetchone()
    finally:
        with psycopg.connect(target["admin"], autocommit=True) as conn:
            conn.execute("UPDATE tripwire SET max_rows = NULL")


def test_training_rounds_read_the_declared_columns_of_the_table(target):
    """A training worker loads its rows once, from the domain's private copy, which is gone after the
    first round; later rounds reuse the worker."""
    pytest.importorskip("torch")
    import fednb
    import fednb.learn as fl
    from tests.test_learning import RiskNet, features, train

    fed = fednb.connect([target["live"].url], token=target["live"].token)
    try:
        with owners_approving([target["live"]]):
            _, history = fl.Trainer(RiskNet(), train, data=fed.dataset("registry"), rounds=2, min_domains=1,
                                    helpers=[features], columns=["age", "bmi", "smoker", "diabetes", "readmitted"],
                                    progress=False).fit()
    finally:
        fed.close()
    assert set(history["status"]) == {"ok"}, history
    assert list(history[history.domain != "global"]["n"]) == [600, 600]
    assert not list((target["live"].path / "datasets" / JOB_DATA).glob("*")), "the worker's copy was left behind"


def test_custom_code_and_built_ins_are_compared_on_the_same_row_ids(target):
    """The table's rows have the store's ids (from ``ctid``), not 0..n-1: a function releasing the sum
    over every row but the first, after a built-in released it over every row, is a differencing
    attack the domain must see across the two kinds."""
    client, live = target["client"], target["live"]
    total = client.post("/v1/requests?wait=30", headers=auth(live.token),
                        json={"dataset": "twin", "kind": "builtin", "name": "count"}).json()
    assert total["status"] == "done", total
    same = _run(target, _job("return fednb.stat(df.age, 'sum')"), "twin", ["age"])
    assert same["status"] == "done", same.get("reason")  # the same rows again: nothing new is learnt
    all_but_one = _run(target, _job("return fednb.stat(df.age.iloc[1:], 'sum')"), "twin", ["age"])
    assert all_but_one["status"] == "blocked", all_but_one
    assert "differencing" in all_but_one["reason"] and total["id"] in all_but_one["reason"], all_but_one["reason"]


def test_a_read_that_outlasts_the_jobs_wall_clock_limit_is_refused(target, tmp_path, monkeypatch):
    """Each fetch has PostgreSQL's statement timeout, but a long table is fetched in many pieces: the
    read as a whole stops at the job's wall-clock limit (the clock is moved on here, not waited for)."""
    from fednb.domain.data.engines.postgres import PostgresEngine
    from fednb.domain.review.policy import load_policy, render_template
    from fednb.domain.run import job_data

    path = tmp_path / "policy.toml"
    path.write_text(render_template("d").replace("wall_seconds = 120", "wall_seconds = 5"))
    clock = iter([0.0, 6.0])
    monkeypatch.setattr(job_data, "monotonic", lambda: next(clock))
    engine = PostgresEngine(target["reader"], "cohort")
    try:
        with pytest.raises(job_data.RowsNotLoaded, match=r"took longer than a job may run \(5 s\); nothing ran"):
            job_data.read_columns(engine, ["age"], load_policy(path))
    finally:
        engine.close()
