"""The audit log's statements: its rows, its recorded head, the public log's key and Merkle frontier
(kept in ``meta``), receipts and published tree heads.

Appends run inside the store's serialized write transaction, so the next ``seq`` read here is the
one the appender writes: the hash chain has one total order on both databases.
"""

from __future__ import annotations

from typing import Any

ROW = "seq, time, actor, action, object_id, payload_json, payload_hash, prev_hash, hash"
PUBLIC_ROW = "seq, time, actor, action, object_id, payload_hash, prev_hash, hash"


def last(conn: Any) -> tuple[int, str] | None:
    """(seq, hash) of the newest row."""
    row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    return None if row is None else (int(row[0]), row[1])


def insert(tx: Any, values: tuple) -> None:
    tx.execute(f"INSERT INTO audit ({ROW}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values)


def rows(conn: Any, *, since: int = 0, limit: int | None = None):
    sql = f"SELECT {ROW} FROM audit WHERE seq > ? ORDER BY seq"
    params: tuple = (since,)
    if limit is not None:
        sql += " LIMIT ?"
        params += (limit,)
    return conn.execute(sql, params)


def row(conn: Any, seq: int) -> Any | None:
    return conn.execute(f"SELECT {ROW} FROM audit WHERE seq = ?", (seq,)).fetchone()


def public_rows(conn: Any):
    """Every row without its payload (the public log's leaves are made of these)."""
    return conn.execute(f"SELECT {PUBLIC_ROW} FROM audit ORDER BY seq")


def count_for(conn: Any, object_id: str, action: str) -> int:
    (n,) = conn.execute("SELECT count(*) FROM audit WHERE object_id = ? AND action = ?", (object_id, action)).fetchone()
    return int(n)


def get_meta(conn: Any, key: str) -> str | None:
    found = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if found is None else found[0]


def set_meta(tx: Any, key: str, value: str) -> None:
    tx.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
               (key, value))


def add_meta_once(tx: Any, key: str, value: str) -> str:
    """Set ``key`` unless it is set; returns the value it has now."""
    tx.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING", (key, value))
    return get_meta(tx, key)


def add_receipt(tx: Any, seq: int, request_id: str, receipt_json: str) -> None:
    tx.execute("INSERT INTO receipts (seq, request_id, receipt_json) VALUES (?, ?, ?)", (seq, request_id, receipt_json))


def latest_receipt(conn: Any, request_id: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT receipt_json FROM receipts WHERE request_id = ? ORDER BY seq DESC LIMIT 1", (request_id,))]


def all_receipts(conn: Any) -> list[str]:
    return [r[0] for r in conn.execute("SELECT receipt_json FROM receipts ORDER BY seq")]


def published_heads(conn: Any) -> list[str]:
    return [r[0] for r in conn.execute("SELECT sth_json FROM published_heads ORDER BY tree_size")]


def add_published_head(tx: Any, tree_size: int, root_hash: str, sth_json: str) -> None:
    tx.execute("INSERT INTO published_heads (tree_size, root_hash, sth_json) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
               (tree_size, root_hash, sth_json))
