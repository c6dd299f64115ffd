"""The job queue's statements: claim the next job of a lane, find and re-queue interrupted ones.

A claim is one transaction: the oldest queued job of the lane is read and marked running with its
audit row. On PostgreSQL the read also locks the job's row and skips rows another process holds
(``FOR UPDATE OF j SKIP LOCKED``), so several server processes never claim the same job even if a
future path claimed outside the store's writer lock.
"""

from __future__ import annotations

import time
from typing import Any

# The oldest queued job of the lane; on a built-in lane, only of an analyst who has no built-in
# running, so one analyst's slow requests hold at most one built-in lane.
_NEXT = {
    "builtin": "SELECT j.* FROM jobs j JOIN requests r ON r.id = j.request_id WHERE j.status = 'queued'"
               " AND j.lane = ? AND r.analyst NOT IN (SELECT r2.analyst FROM jobs j2 JOIN requests r2"
               " ON r2.id = j2.request_id WHERE j2.status = 'running' AND j2.lane = ?) ORDER BY j.id LIMIT 1",
    "sandbox": "SELECT j.* FROM jobs j WHERE j.status = 'queued' AND j.lane = ? ORDER BY j.id LIMIT 1",
}
_ROW_LOCK = " FOR UPDATE OF j SKIP LOCKED"


def dialect(conn: Any) -> str:
    return getattr(conn, "dialect", "sqlite")


def next_queued(tx: Any, lane: str) -> Any | None:
    sql = _NEXT[lane] + (_ROW_LOCK if dialect(tx) == "postgresql" else "")
    return tx.execute(sql, (lane,) * sql.count("?")).fetchone()


def any_queued(conn: Any, lane: str) -> bool:
    """A plain read (no write lock): is anything waiting in ``lane``?"""
    return conn.execute("SELECT 1 FROM jobs WHERE status = 'queued' AND lane = ? LIMIT 1", (lane,)).fetchone() is not None


def mark_running(tx: Any, job_id: int, request_id: str) -> Any:
    """The job running (one more attempt) and its request too; returns the job's row as it is now."""
    tx.execute("UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ? WHERE id = ?",
               (time.time(), job_id))
    tx.execute("UPDATE requests SET status = 'running' WHERE id = ? AND status = 'approved'", (request_id,))
    return tx.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()


def running(tx: Any) -> list[Any]:
    return tx.execute("SELECT * FROM jobs WHERE status = 'running' ORDER BY id").fetchall()


def requeue(tx: Any, job_id: int, request_id: str) -> None:
    tx.execute("UPDATE jobs SET status = 'queued' WHERE id = ?", (job_id,))
    tx.execute("UPDATE requests SET status = 'approved' WHERE id = ? AND status = 'running'", (request_id,))


def add(tx: Any, request_id: str, lane: str, inputs_json: str | None = None) -> int:
    """A queued job; returns its id."""
    (job_id,) = tx.execute("INSERT INTO jobs (request_id, lane, status, inputs_json, created_at)"
                           " VALUES (?, ?, 'queued', ?, ?) RETURNING id",
                           (request_id, lane, inputs_json, time.time())).fetchone()
    return int(job_id)


def one(conn: Any, job_id: int) -> Any | None:
    return conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()


def of_round(conn: Any, request_id: str, number: int | None) -> Any | None:
    """The newest job of a request's round (``None``: its one-off job)."""
    if number is None:
        return conn.execute("SELECT * FROM jobs WHERE request_id = ? AND round IS NULL ORDER BY id DESC LIMIT 1",
                            (request_id,)).fetchone()
    return conn.execute("SELECT * FROM jobs WHERE request_id = ? AND round = ? ORDER BY id DESC LIMIT 1",
                        (request_id, number)).fetchone()


def first_input(conn: Any, request_id: str) -> bytes | None:
    """The first round's input weights (every round must have the same parameters)."""
    row = conn.execute("SELECT input_blob FROM jobs WHERE request_id = ? ORDER BY id LIMIT 1", (request_id,)).fetchone()
    return None if row is None else row[0]


def drop(tx: Any, job_id: int) -> None:
    tx.execute("DELETE FROM jobs WHERE id = ?", (job_id,))


def set_round(tx: Any, job_id: int, number: int, input_blob: bytes | None) -> None:
    tx.execute("UPDATE jobs SET round = ?, input_blob = ? WHERE id = ?", (number, input_blob, job_id))


def rounds_done(conn: Any, request_id: str) -> int:
    (n,) = conn.execute("SELECT count(*) FROM jobs WHERE request_id = ? AND round IS NOT NULL AND status = 'done'",
                        (request_id,)).fetchone()
    return int(n)


def finish(tx: Any, job_id: int, *, status: str, result_json: str | None, result_blob: bytes | None,
           reason: str | None) -> None:
    tx.execute("UPDATE jobs SET status = ?, result_json = ?, result_blob = ?, reason = ?, finished_at = ? WHERE id = ?",
               (status, result_json, result_blob, reason, time.time(), job_id))
