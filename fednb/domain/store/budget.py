"""The privacy ledger's statements: what an analyst spent on a dataset, one more spend, the totals.

Called inside the store's write transaction that releases a result, so a budget's check and its
debit are one step on both stores (see :mod:`fednb.domain.store.database`).
"""

from __future__ import annotations

import time
from typing import Any


def spent(conn: Any, analyst: str, dataset: str) -> tuple[float, float, int]:
    """(epsilon, delta, releases) spent so far by ``analyst`` on ``dataset``."""
    eps, delta, n = conn.execute(
        "SELECT coalesce(sum(epsilon), 0), coalesce(sum(delta), 0), count(*) FROM privacy_spend"
        " WHERE analyst = ? AND dataset = ?", (analyst, dataset)).fetchone()
    return float(eps), float(delta), int(n)


def record(tx: Any, *, analyst: str, dataset: str, request_id: str, job_id: int | None, epsilon: float,
           delta: float, mechanism: str) -> None:
    tx.execute("INSERT INTO privacy_spend (analyst, dataset, request_id, job_id, epsilon, delta, mechanism, created_at)"
               " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (analyst, dataset, request_id, job_id, epsilon, delta, mechanism, time.time()))


def totals(conn: Any, *, analyst: str | None = None) -> list[dict[str, Any]]:
    """Spent totals per analyst and dataset."""
    sql = ("SELECT analyst, dataset, sum(epsilon) AS epsilon, sum(delta) AS delta, count(*) AS releases"
           " FROM privacy_spend" + (" WHERE analyst = ?" if analyst else "") + " GROUP BY analyst, dataset"
           " ORDER BY analyst, dataset")
    return [{k: r[k] for k in r.keys()} for r in conn.execute(sql, (analyst,) if analyst else ())]
