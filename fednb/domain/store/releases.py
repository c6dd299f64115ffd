"""What the release stage remembers: the row sets behind earlier releases (the differencing
defence), which secure-aggregation inputs were unmasked already, and the peer domains the owner pinned."""

from __future__ import annotations

import time
from typing import Any


# -- released row sets ---------------------------------------------------------------------------------
def near_in_size(conn: Any, dataset: str, low: int, high: int, other_than_sha256: str) -> list[tuple]:
    """(id, request_id, cell, container_sizes) of earlier row sets with low < rows < high, oldest
    first; their bitmaps are read one at a time, only where needed (:func:`bitmap_of`)."""
    return conn.execute("SELECT id, request_id, cell, container_sizes FROM released_rows WHERE dataset = ?"
                        " AND rows > ? AND rows < ? AND rows_sha256 != ? ORDER BY id",
                        (dataset, low, high, other_than_sha256)).fetchall()


def bitmap_of(conn: Any, row_set_id: int) -> bytes:
    return bytes(conn.execute("SELECT bitmap FROM released_rows WHERE id = ?", (row_set_id,)).fetchone()[0])


def row_set_known(conn: Any, dataset: str, rows_sha256: str, cell: bool) -> bool:
    return conn.execute("SELECT 1 FROM released_rows WHERE dataset = ? AND rows_sha256 = ? AND cell = ? LIMIT 1",
                        (dataset, rows_sha256, int(cell))).fetchone() is not None


def add_row_set(tx: Any, dataset: str, request_id: str, job_id: int | None, rows: int, rows_sha256: str, cell: bool,
                bitmap: bytes, container_sizes: bytes | None = None) -> None:
    tx.execute("INSERT INTO released_rows (dataset, request_id, job_id, rows, rows_sha256, cell, bitmap,"
               " container_sizes, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (dataset, request_id, job_id, rows, rows_sha256, int(cell), bitmap, container_sizes, time.time()))


# -- secure aggregation -----------------------------------------------------------------------------------
def unmasked_in(conn: Any, request_id: str, round_: int) -> str | None:
    """The session that unmasked this input (round -1: a built-in's one job), if any."""
    row = conn.execute("SELECT session FROM secagg_unmasked WHERE request_id = ? AND round = ?",
                       (request_id, round_)).fetchone()
    return None if row is None else row[0]


def mark_unmasked(tx: Any, request_id: str, round_: int, session: str) -> None:
    tx.execute("INSERT INTO secagg_unmasked (request_id, round, session) VALUES (?, ?, ?)", (request_id, round_, session))


def pinned_peers(conn: Any) -> list[Any]:
    return conn.execute("SELECT public_key, name, url, fingerprint FROM pinned_peers ORDER BY name").fetchall()


def replace_pinned_peers(tx: Any, peers: list[tuple[str, str, str, str]]) -> set[str]:
    """Pin exactly ``peers`` (public key hex, name, url, fingerprint); returns the fingerprints pinned before."""
    before = {r[0] for r in tx.execute("SELECT fingerprint FROM pinned_peers")}
    tx.execute("DELETE FROM pinned_peers")
    now = time.time()
    for public_key, name, url, fingerprint in peers:
        tx.execute("INSERT INTO pinned_peers (public_key, name, url, fingerprint, pinned_at) VALUES (?, ?, ?, ?, ?)",
                   (public_key, name, url, fingerprint, now))
    return before
