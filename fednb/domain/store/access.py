"""Who may call the domain: analysts and owners, and the SHA-256 of each of their tokens."""

from __future__ import annotations

import time
from typing import Any


def role_of(conn: Any, name: str) -> str | None:
    row = conn.execute("SELECT role FROM analysts WHERE name = ?", (name,)).fetchone()
    return None if row is None else row[0]


def add_person(tx: Any, name: str, role: str) -> None:
    tx.execute("INSERT INTO analysts (name, role, created_at) VALUES (?, ?, ?)", (name, role, time.time()))


def token_known(conn: Any, token_hash: str) -> bool:
    return conn.execute("SELECT 1 FROM tokens WHERE hash = ?", (token_hash,)).fetchone() is not None


def add_token(tx: Any, token_hash: str, name: str) -> None:
    tx.execute("INSERT INTO tokens (hash, analyst, created_at) VALUES (?, ?, ?)", (token_hash, name, time.time()))


def revoke_tokens(tx: Any, name: str) -> int:
    """Revoke every active token of ``name``; returns how many there were."""
    return tx.execute("UPDATE tokens SET revoked_at = ? WHERE analyst = ? AND revoked_at IS NULL",
                      (time.time(), name)).rowcount


def holder(conn: Any, token_hash: str) -> tuple[str, str] | None:
    """(name, role) of an unrevoked token's holder."""
    row = conn.execute("SELECT a.name, a.role FROM tokens t JOIN analysts a ON a.name = t.analyst"
                       " WHERE t.hash = ? AND t.revoked_at IS NULL", (token_hash,)).fetchone()
    return None if row is None else (row[0], row[1])


def token_revoked(conn: Any, token_hash: str) -> bool | None:
    """True if revoked, False if valid, None if unknown."""
    row = conn.execute("SELECT revoked_at FROM tokens WHERE hash = ?", (token_hash,)).fetchone()
    return None if row is None else row[0] is not None


def names(conn: Any) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM analysts")]
