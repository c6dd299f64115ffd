"""The ``datasets`` table: one row per dataset, ``pending`` while its files move into place.

A pending row's ``file`` points into its staging folder (``DIR/.adding/PID-TOKEN/``); once the files
are in ``DIR/datasets/NAME/`` the row is ``ready`` and points there. Only ready datasets are served.
"""

from __future__ import annotations

import time
from typing import Any

STAGING = ".adding"  # DIR/.adding/PID-TOKEN/datasets/NAME: an add-dataset in progress


def exists(conn: Any, name: str) -> bool:
    return conn.execute("SELECT 1 FROM datasets WHERE name = ? AND state = 'ready'", (name,)).fetchone() is not None


def put_pending(tx: Any, name: str, staged_file: str, meta_json: str, rows: int) -> None:
    tx.execute("INSERT INTO datasets (name, file, format, meta_json, rows, created_at, state)"
               " VALUES (?, ?, 'parquet', ?, ?, ?, 'pending')"
               " ON CONFLICT (name) DO UPDATE SET file = excluded.file, format = excluded.format,"
               " meta_json = excluded.meta_json, rows = excluded.rows, created_at = excluded.created_at,"
               " state = 'pending'",
               (name, staged_file, meta_json, rows, time.time()))


def put_ready(tx: Any, name: str, file: str, data_format: str, meta_json: str, rows: int) -> None:
    """A dataset whose rows stay in the owner's database: nothing to move, so ready at once."""
    tx.execute("INSERT INTO datasets (name, file, format, meta_json, rows, created_at, state)"
               " VALUES (?, ?, ?, ?, ?, ?, 'ready')"
               " ON CONFLICT (name) DO UPDATE SET file = excluded.file, format = excluded.format,"
               " meta_json = excluded.meta_json, rows = excluded.rows, created_at = excluded.created_at,"
               " state = 'ready'",
               (name, file, data_format, meta_json, rows, time.time()))


def pending(conn: Any) -> list[tuple[str, str]]:
    """(name, staged file) of every dataset whose files have not been moved into place yet."""
    return [(r["name"], r["file"]) for r in conn.execute("SELECT name, file FROM datasets WHERE state = 'pending'")]


def mark_ready(tx: Any, name: str, file: str) -> None:
    tx.execute("UPDATE datasets SET state = 'ready', file = ? WHERE name = ? AND state = 'pending'", (file, name))


def meta_json(conn: Any, name: str) -> str | None:
    row = conn.execute("SELECT meta_json FROM datasets WHERE name = ? AND state = 'ready'", (name,)).fetchone()
    return None if row is None else row[0]


def all_meta_json(conn: Any) -> list[str]:
    return [r[0] for r in conn.execute("SELECT meta_json FROM datasets WHERE state = 'ready' ORDER BY name")]


def set_meta_json(tx: Any, name: str, value: str) -> None:
    tx.execute("UPDATE datasets SET meta_json = ? WHERE name = ?", (value, name))


def file(conn: Any, name: str) -> str | None:
    row = conn.execute("SELECT file FROM datasets WHERE name = ? AND state = 'ready'", (name,)).fetchone()
    return None if row is None else row[0]


def row_count(conn: Any, name: str) -> int | None:
    row = conn.execute("SELECT rows FROM datasets WHERE name = ? AND state = 'ready'", (name,)).fetchone()
    return None if row is None else int(row[0])
