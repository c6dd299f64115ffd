"""Bring a domain's database to the layout this fednb expects, with Alembic.

Run when a domain is created and whenever one is opened whose recorded revision is not the newest
(an older fednb made it): the migrations of ``store/migrations/versions`` run in order, in one
transaction, so a domain is never left between two layouts. On PostgreSQL an advisory lock lets
only one process migrate while the others wait; on SQLite the database file's write lock does it.
"""

from __future__ import annotations

from pathlib import Path

from fednb.errors import FednbError

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 0x66656E62  # "fenb": the advisory lock key the migrating process holds (PostgreSQL)


def _alembic():
    try:
        from alembic import command
        from alembic.config import Config
        from alembic.script import ScriptDirectory
        from sqlalchemy import create_engine, text
    except ImportError:
        raise FednbError("serving or creating a domain needs its store's libraries: pip install 'fednb[domain]'") from None
    return command, Config, ScriptDirectory, create_engine, text


def head_revision() -> str:
    _, Config, ScriptDirectory, _, _ = _alembic()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def sqlalchemy_url(url: str) -> str:
    """The store's URL as SQLAlchemy names the driver (psycopg 3 for PostgreSQL)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def upgrade(url: str) -> None:
    """Run every migration the database at ``url`` has not had yet."""
    command, Config, _, create_engine, text = _alembic()
    engine = create_engine(sqlalchemy_url(url), poolclass=_null_pool())
    if engine.dialect.name == "sqlite":
        _transactional_sqlite(engine)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()


def _transactional_sqlite(engine) -> None:
    """Python's sqlite3 runs DDL outside any transaction; SQLAlchemy's documented recipe makes the
    whole migration one ``BEGIN IMMEDIATE`` transaction (and sets WAL, which must be set outside one)."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA busy_timeout=30000")

    @event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _null_pool():
    from sqlalchemy.pool import NullPool

    return NullPool
