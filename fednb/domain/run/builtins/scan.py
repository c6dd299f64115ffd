"""The rows a built-in's filter selects, inside the engine: aggregates and row ids come out, rows never.

A built-in asks for sums and counts in SQL and streams only the ids of the rows behind its result
(and behind each of its cells) in pieces, to build the Roaring bitmaps the differencing defence
remembers (:mod:`fednb.domain.release.differencing`), so memory stays bounded whatever the table's
length.
"""

from __future__ import annotations

import array
import base64
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pyroaring import BitMap

from fednb.domain.data.engines import sql
from fednb.domain.data.engines.base import ROW_ID, Engine
from fednb.domain.review.policy import DisclosureSection


def bitmap(ids: np.ndarray) -> BitMap:
    """Row ids as a Roaring bitmap (through an ``array`` buffer, as :func:`differencing.roaring`)."""
    buffer = array.array("I")
    buffer.frombytes(np.ascontiguousarray(ids, dtype=np.uint32).tobytes())
    return BitMap(buffer)


def evidence(rows: BitMap) -> dict[str, Any]:
    """The same record as :func:`fednb.domain.release.differencing.evidence`, from a built bitmap."""
    rows = BitMap(rows)
    rows.run_optimize()
    blob = rows.serialize()
    return {"rows": len(rows), "sha256": hashlib.sha256(blob).hexdigest(),
            "bitmap": base64.b64encode(blob).decode("ascii")}


class Cells:
    """Counts and row sets of the cells of a table, filled one piece of rows at a time."""

    def __init__(self, size: int):
        self.counts = np.zeros(size, dtype=np.int64)
        self.rows = [BitMap() for _ in range(size)]

    def add(self, ids: np.ndarray, cells: np.ndarray) -> None:
        self.counts += np.bincount(cells, minlength=self.counts.size)[: self.counts.size]
        order = np.argsort(cells, kind="stable")
        ids, cells = ids[order], cells[order]
        bounds = np.flatnonzero(np.diff(cells)) + 1
        for start, stop in zip([0, *bounds], [*bounds, cells.size]):
            if stop > start:
                self.rows[int(cells[start])] |= bitmap(ids[start:stop])

    def all_rows(self) -> BitMap:
        return BitMap.union(*self.rows) if self.rows else BitMap()

    def evidence(self, hidden: np.ndarray) -> list[dict]:
        """Each shown non-empty cell's rows, then the hidden cells' rows together (as ``cell_evidence``)."""
        sets = [evidence(self.rows[c]) for c in range(self.counts.size) if self.counts[c] > 0 and not hidden[c]]
        if (self.counts[hidden] > 0).any():
            sets.append(evidence(BitMap.union(*(self.rows[c] for c in np.flatnonzero(hidden)))))
        return sets


class Scan:
    """A built-in's ``where``, compiled once, over one engine."""

    def __init__(self, engine: Engine, conditions: Sequence[Any], levels: dict[str, list] | None = None):
        self.engine = engine
        self.schema = sql.Schema(engine.columns(), levels or {})
        self.test, self.params = sql.where(self.schema, conditions)

    def _where(self, extra: str | None) -> str:
        return self.test if extra is None else f"({self.test}) AND {extra}"

    def one(self, select: str, params: Sequence[Any] = (), extra: str | None = None) -> tuple:
        """One row of aggregates over the selected rows (``params`` fill ``select``'s ``?``)."""
        frame = self.engine.query(f"SELECT {select} FROM data WHERE {self._where(extra)}",
                                  [*params, *self.params])
        return tuple(frame.iloc[0])

    def stream(self, select: str, params: Sequence[Any] = (), extra: str | None = None) -> Iterator[pd.DataFrame]:
        """The row id and ``select`` of every selected row, in pieces."""
        yield from self.engine.batches(f"SELECT {ROW_ID}, {select} FROM data WHERE {self._where(extra)}",
                                       [*params, *self.params])

    def frame(self, columns: Sequence[str]) -> pd.DataFrame:
        """The selected rows of ``columns`` as pandas, indexed by row id (for the built-ins that fit
        models in NumPy: only their columns, only the filtered rows)."""
        text, params = sql.select_rows(self.schema, columns, [])
        text = text.replace("WHERE true", f"WHERE {self.test}", 1)
        pieces = list(self.engine.batches(text, [*params, *self.params]))
        frame = pd.concat(pieces) if len(pieces) > 1 else pieces[0]
        frame.index = pd.Index(frame.pop(ROW_ID).to_numpy(dtype=np.int64))
        return frame

    def rows(self, extra: str | None = None) -> BitMap:
        """The ids of the selected rows (that also meet ``extra``). A selection that is one run of
        consecutive rows (every row, often) is known from its count and ends without streaming."""
        count, first, last = self.one(f"count(*), min({ROW_ID}), max({ROW_ID})", extra=extra)
        if int(count) == 0:
            return BitMap()
        if int(last) - int(first) + 1 == int(count):
            whole = BitMap()
            whole.add_range(int(first), int(last) + 1)
            return whole
        out = BitMap()
        for piece in self.engine.batches(f"SELECT {ROW_ID} FROM data WHERE {self._where(extra)}", self.params):
            out |= bitmap(piece[ROW_ID].to_numpy())
        return out


def magnitude_reason(n: int, total: float, tops: Sequence[float], rules: DisclosureSection) -> str | None:
    """:func:`fednb.domain.release.magnitude.sensitive` from what SQL returns instead of every value:
    the count ``n``, the total of the absolute values and the largest ones, largest first (the
    (n, k)-dominance and p% rules read nothing else; ``tests/test_engine.py`` checks they agree)."""
    nk, k, p = rules.safe_nk_n, rules.safe_nk_k, rules.safe_pratio_p
    tops = sorted((float(t) for t in tops), reverse=True)
    if total > 0 and (sum(tops[:nk]) if n > nk else total) > k * total:
        return f"its {nk} largest contributions make up more than {k:.0%} of it (dominance rule)"
    first = tops[0] if tops else 0.0
    second = tops[1] if len(tops) > 1 else 0.0
    if first > 0 and total - first - second < p * first:
        return f"the rest of it is less than {p:.0%} of its largest contribution (p% rule)"
    return None
