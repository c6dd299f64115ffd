"""The requests table's statements: an analyst's request from submission to its final state.

The review rules (what is a duplicate, what a prior approval covers, the pending limit) live in
:mod:`fednb.domain.review.requests`; here is only how each question is asked of the store.
"""

from __future__ import annotations

import time
from typing import Any

COLUMNS = ("id", "analyst", "dataset", "kind", "name", "code", "args_json", "code_hash", "description",
           "limits_json", "status", "reason", "decided_by", "created_at", "decided_at", "idempotency_key")


def one(conn: Any, request_id: str) -> Any | None:
    return conn.execute("SELECT * FROM requests WHERE id = ?", (request_id,)).fetchone()


def by_idempotency_key(conn: Any, analyst: str, key: str) -> Any | None:
    return conn.execute("SELECT * FROM requests WHERE analyst = ? AND idempotency_key = ?", (analyst, key)).fetchone()


def pending_same_code(conn: Any, analyst: str, dataset: str, code_hash: str) -> Any | None:
    return conn.execute("SELECT * FROM requests WHERE analyst = ? AND dataset = ? AND code_hash = ?"
                        " AND status = 'pending'", (analyst, dataset, code_hash)).fetchone()


def earliest_approved_by(conn: Any, analyst: str, dataset: str, code_hash: str, deciders: tuple[str, ...]) -> str | None:
    """The first request with this code that one of ``deciders`` approved (and that was not denied)."""
    marks = ", ".join("?" * len(deciders))
    row = conn.execute(f"SELECT id FROM requests WHERE analyst = ? AND dataset = ? AND code_hash = ?"
                       f" AND decided_by IN ({marks}) AND status NOT IN ('pending', 'denied')"
                       " ORDER BY created_at LIMIT 1", (analyst, dataset, code_hash, *deciders)).fetchone()
    return None if row is None else row[0]


def pending_count(conn: Any, analyst: str) -> int:
    (n,) = conn.execute("SELECT count(*) FROM requests WHERE analyst = ? AND status = 'pending'", (analyst,)).fetchone()
    return int(n)


def insert(tx: Any, **values: Any) -> None:
    tx.execute(f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
               tuple(values[c] for c in COLUMNS))


def ids_starting_with(conn: Any, prefix: str, limit: int = 2) -> list[str]:
    return [r[0] for r in conn.execute("SELECT id FROM requests WHERE id LIKE ? || '%' LIMIT ?", (prefix, limit))]


def page(conn: Any, *, analyst: str | None, status: str | None, limit: int, offset: int) -> list[Any]:
    """Pending first, newest first within a status."""
    sql = "SELECT * FROM requests WHERE 1 = 1"
    params: list[Any] = []
    if analyst is not None:
        sql += " AND analyst = ?"
        params.append(analyst)
    if status is not None:
        sql += " AND status = ?"
        params.append(status)
    sql += " ORDER BY status != 'pending', created_at DESC, id LIMIT ? OFFSET ?"
    params += [limit, offset]
    return conn.execute(sql, tuple(params)).fetchall()


def decide(tx: Any, request_id: str, *, approve: bool, reason: str | None) -> None:
    now = time.time()
    if approve:
        tx.execute("UPDATE requests SET status = 'approved', reason = ?, decided_by = 'owner', decided_at = ?"
                   " WHERE id = ?", (reason, now, request_id))
    else:
        tx.execute("UPDATE requests SET status = 'denied', reason = ?, decided_by = 'owner', decided_at = ?,"
                   " finished_at = ? WHERE id = ?", (reason, now, now, request_id))


def mark_running(tx: Any, request_id: str) -> None:
    tx.execute("UPDATE requests SET status = 'running' WHERE id = ? AND status = 'approved'", (request_id,))


def finish(tx: Any, request_id: str, *, status: str, result_json: str | None = None,
           disclosure_json: str | None = None, reason: str | None = None) -> None:
    tx.execute("UPDATE requests SET status = ?, result_json = ?, disclosure_json = ?, reason = ?, finished_at = ?"
               " WHERE id = ?", (status, result_json, disclosure_json, reason, time.time(), request_id))


def finish_rounds(tx: Any, request_id: str) -> None:
    """A request that ran in rounds is done when its analyst says so; its rounds keep their results."""
    tx.execute("UPDATE requests SET status = 'done', finished_at = ? WHERE id = ?", (time.time(), request_id))


def still_open(conn: Any, ids: list[str]) -> set[str]:
    """Which of ``ids`` are approved or running."""
    if not ids:
        return set()
    marks = ", ".join("?" * len(ids))
    return {r[0] for r in conn.execute(
        f"SELECT id FROM requests WHERE status IN ('approved', 'running') AND id IN ({marks})", tuple(ids))}


def everything_for_report(conn: Any) -> list[Any]:
    return conn.execute("SELECT id, analyst, dataset, kind, name, code_hash, description, status, decided_by,"
                        " created_at FROM requests").fetchall()
