"""The one persistence layer: one layout on SQLite and PostgreSQL, migrations that upgrade an old
domain folder in place, and an add-dataset that a kill -9 never leaves half done."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import fednb
from fednb.cli import main as cli
from fednb.demo import data
from fednb.domain import Domain
from fednb.domain.domain import new_token
from fednb.domain.process import DomainProcess
from fednb.domain.store import database, migrate, schema
from fednb.errors import FednbError
from tests.conftest import make_domain

FIXTURE = Path(__file__).parent / "fixtures" / "domain_before_migrations.tar.gz"
LEGACY_TOKEN = "fednb_" + "a" * 43  # alice's token in the fixture


def _unpack_legacy(tmp_path: Path) -> Path:
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "clinic"


def _schema_differences(url: str) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(migrate.sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            found = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    finally:
        engine.dispose()
    return [d for d in found if not _same_in_sqlite(d)]


def _same_in_sqlite(change) -> bool:
    """Differences in name only: SQLite's REAL is SQLAlchemy's Float, and its reflection calls a TEXT
    primary key nullable; server defaults are compared loosely."""
    if not isinstance(change, list):
        return False
    kind, _, table, column, _, *rest = change[0]
    if kind == "modify_default":
        return True
    if kind == "modify_nullable":
        return schema.metadata.tables[table].c[column].primary_key
    if kind == "modify_type":
        return {type(t).__name__ for t in rest[:2]} <= {"REAL", "Float", "FLOAT"}
    return False


def test_a_folder_made_before_migrations_is_upgraded_in_place_and_served(tmp_path):
    folder = _unpack_legacy(tmp_path)
    assert database.Store.of_folder(folder).revision() == "legacy"
    d = Domain(folder)
    assert d.store.revision() == database.KNOWN_REVISIONS[-1] == migrate.head_revision()
    assert d.verify_audit().ok and d.verify_audit().entries == 9  # every old audit row, chain intact
    assert [r.status for r in d.requests()] == ["denied", "done"]
    assert _schema_differences(d.store.url) == []
    d.close()
    with DomainProcess(folder) as server:  # what an analyst sees of the upgraded domain
        fed = fednb.connect([server.url], token=LEGACY_TOKEN)
        assert fed.dataset("patients").count().value == 60
        assert sorted(fed.requests()["status"]) == ["denied", "done", "done"]  # the two old ones and this count
        fed.close()
    again = Domain(folder)  # opening an up-to-date store runs no migration and changes nothing
    assert again.verify_audit().entries >= 9 and again.verify_audit().ok
    again.close()


def test_the_tables_in_schema_py_are_what_the_migrations_make(tmp_path, store_url):
    d = make_domain(tmp_path, "fresh", data.hospital("hospital-b"), store=store_url)
    assert _schema_differences(d.store.url) == []
    d.close()


def test_a_store_from_a_newer_fednb_is_refused_with_a_reason(tmp_path):
    d = make_domain(tmp_path, "future", data.hospital("hospital-b"))
    with d.store.transaction() as tx:
        tx.execute("UPDATE alembic_version SET version_num = '9999'")
    d.close()
    with pytest.raises(FednbError, match="made by a newer fednb"):
        Domain(tmp_path / "future")
    served = subprocess.run([sys.executable, "-m", "fednb", "domain", "serve", str(tmp_path / "future"), "--port", "0"],
                            capture_output=True, text=True, timeout=120)
    assert served.returncode != 0 and "newer fednb" in served.stderr and "Traceback" not in served.stderr


def test_init_on_postgresql_keeps_the_url_private_and_refuses_a_used_database(tmp_path, postgres_database):
    result = CliRunner().invoke(cli, ["domain", "init", str(tmp_path / "pg"), "--name", "pg",
                                      "--store", postgres_database])
    assert result.exit_code == 0, result.output
    kept = tmp_path / "pg" / "store.url"
    assert kept.read_text().strip() == postgres_database
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert not (tmp_path / "pg" / "domain.db").exists()
    again = CliRunner().invoke(cli, ["domain", "init", str(tmp_path / "pg2"), "--name", "pg2",
                                     "--store", postgres_database])
    assert again.exit_code != 0 and "already holds a domain's store" in again.output
    wrong = CliRunner().invoke(cli, ["domain", "init", str(tmp_path / "pg3"), "--name", "pg3",
                                     "--store", "mysql://root@localhost/x"])
    assert wrong.exit_code != 0 and "is not a store fednb can use" in wrong.output


def test_several_workers_need_postgresql(tmp_path):
    make_domain(tmp_path, "lite", data.hospital("hospital-b")).close()
    served = subprocess.run([sys.executable, "-m", "fednb", "domain", "serve", str(tmp_path / "lite"),
                             "--port", "0", "--workers", "2"], capture_output=True, text=True, timeout=120)
    assert served.returncode != 0 and "--workers needs the domain's store on PostgreSQL" in served.stderr
    assert "Traceback" not in served.stderr


# -- add-dataset and kill -9 ---------------------------------------------------------------------------
KILL_AT = {
    # while the new files are staged, before the row and its audit entry commit
    "staging": "datasets.put_pending = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)",
    # after the commit, before the files move into place
    "committed": "catalog.install = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)",
    # the old files removed, the new ones not yet renamed into place
    "moving": textwrap.dedent("""\
        real_rename = Path.rename
        def rename(self, target):
            if Path(target).parent == Path(sys.argv[1]).resolve() / "datasets":
                os.kill(os.getpid(), signal.SIGKILL)
            return real_rename(self, target)
        Path.rename = rename"""),
}
ADD = """\
import os, signal, sys
from pathlib import Path
from fednb.domain.data import catalog
from fednb.domain.domain import Domain
from fednb.domain.store import datasets
domain = Domain(sys.argv[1])  # opening finishes what an earlier kill interrupted
{kill}
domain.add_dataset(sys.argv[2], sys.argv[3], "replaced")
"""


@pytest.mark.parametrize("point", list(KILL_AT))
def test_a_kill_during_add_dataset_leaves_all_or_nothing(tmp_path, store_url, point):
    token = new_token()
    d = make_domain(tmp_path, "adding", data.hospital("hospital-a"), token=token, store=store_url)
    old_rows = d.row_count("patients")
    d.close()
    new = tmp_path / "new.csv"
    data.hospital("hospital-a").head(300).to_csv(new, index=False)
    for name in ("patients", "extra"):  # replacing a dataset, and adding a new one
        code = ADD.format(kill=KILL_AT[point])
        done = subprocess.run([sys.executable, "-c", code, str(d.path), str(new), name], capture_output=True,
                              timeout=120, cwd=Path(__file__).parent.parent)
        assert done.returncode == -9, done.stderr.decode()[-2000:]
    committed = point != "staging"
    opened = Domain(d.path)  # the open after the crash finishes or clears what the kill interrupted
    audited = [e.object_id for e in opened.audit_entries() if e.action == "dataset"]
    assert audited == ["patients"] + (["patients", "extra"] if committed else [])
    assert opened.row_count("patients") == (300 if committed else old_rows)
    assert [x.name for x in opened.datasets()] == (["extra", "patients"] if committed else ["patients"])
    assert len(pd.read_parquet(opened.data_path("patients"))) == opened.row_count("patients")
    assert sorted(os.listdir(d.path / "datasets")) == (["extra", "patients"] if committed else ["patients"])
    assert not (d.path / ".adding").exists() or not os.listdir(d.path / ".adding")
    assert opened.verify_audit().ok
    opened.close()
    with DomainProcess(d.path) as server:
        fed = fednb.connect([server.url], token=token)
        assert fed.dataset("patients").count().value == (300 if committed else old_rows)
        fed.close()
