"""Persistence of one domain: a single SQLite file in WAL mode.

Every state change (a request accepted, approved, run, released...) and its audit row are written in
one ``BEGIN IMMEDIATE`` transaction with ``synchronous=FULL``: a kill -9 (or a power cut) at any
point leaves either the whole change or none of it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS analysts (
    name       TEXT PRIMARY KEY,
    role       TEXT NOT NULL CHECK (role IN ('analyst', 'owner')),
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    hash       TEXT PRIMARY KEY,            -- SHA-256 of the token; the token itself is never stored
    analyst    TEXT NOT NULL REFERENCES analysts(name),
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS datasets (
    name       TEXT PRIMARY KEY,
    file       TEXT NOT NULL,               -- relative to the domain folder
    format     TEXT NOT NULL CHECK (format IN ('csv', 'parquet', 'postgresql', 'spark')),
    meta_json  TEXT NOT NULL,               -- fednb.models.Dataset as the analyst sees it
    rows       INTEGER NOT NULL,            -- exact row count: private, for disclosure checks
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    id              TEXT PRIMARY KEY,
    analyst         TEXT NOT NULL,
    dataset         TEXT NOT NULL,
    kind            TEXT NOT NULL,
    name            TEXT NOT NULL,
    code            TEXT,
    args_json       TEXT NOT NULL,
    code_hash       TEXT NOT NULL,
    description     TEXT NOT NULL,
    limits_json     TEXT NOT NULL,
    status          TEXT NOT NULL,
    reason          TEXT,
    decided_by      TEXT,
    created_at      REAL NOT NULL,
    decided_at      REAL,
    finished_at     REAL,
    result_json     TEXT,
    disclosure_json TEXT,
    idempotency_key TEXT,
    UNIQUE (analyst, idempotency_key)
);
CREATE INDEX IF NOT EXISTS requests_by_status ON requests (status, created_at);
CREATE INDEX IF NOT EXISTS requests_by_analyst ON requests (analyst, created_at);
CREATE INDEX IF NOT EXISTS requests_by_hash ON requests (analyst, dataset, code_hash, status);
CREATE TABLE IF NOT EXISTS jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id  TEXT NOT NULL REFERENCES requests(id),
    round       INTEGER,                    -- training rounds: 1, 2, ...; NULL for one-off jobs
    lane        TEXT NOT NULL CHECK (lane IN ('builtin', 'sandbox')),
    status      TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'blocked')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    inputs_json TEXT,                       -- dynamic inputs (e.g. a training round's number and config)
    input_blob  BLOB,                       -- a training round's global weights (safetensors)
    result_json TEXT,
    result_blob BLOB,                       -- safetensors bytes; never pickle
    reason      TEXT,
    created_at  REAL NOT NULL,
    started_at  REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (status, lane, id);
CREATE INDEX IF NOT EXISTS jobs_by_request ON jobs (request_id, round);
CREATE TABLE IF NOT EXISTS audit (
    seq          INTEGER PRIMARY KEY,
    time         TEXT NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    object_id    TEXT,
    payload_json TEXT NOT NULL,
    payload_hash TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
);
"""


class Store:
    """One SQLite database, with a connection per thread."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()

    def connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def create(self) -> None:
        self.connect().executescript(SCHEMA)
        with self.transaction() as tx:
            tx.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                       (str(SCHEMA_VERSION),))

    def check(self) -> None:
        """Refuse to open a database this version does not understand."""
        row = self.connect().execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or int(row["value"]) != SCHEMA_VERSION:
            found = None if row is None else row["value"]
            raise RuntimeError(f"{self.path}: schema version {found}, this fednb expects {SCHEMA_VERSION}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``: writers queue here instead of failing mid-way."""
        conn = self.connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        return self.connect().execute(sql, params).fetchall()

    def query_one(self, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
        return self.connect().execute(sql, params).fetchone()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
