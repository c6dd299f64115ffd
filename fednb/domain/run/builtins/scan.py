"""The rows a built-in's filter selects, inside the engine: aggregates and row ids come out, rows never.

A built-in asks for sums and counts in SQL and streams only the ids of the rows behind its result
(and behind each of its cells) in pieces, to build the Roaring bitmaps the differencing defence
remembers (:mod:`fednb.domain.release.differencing`), so memory stays bounded whatever the table's
length.

The evidence is the costly part of a built-in over tens of millions of rows, so it is built the
cheapest way that gives the same bitmap: a selection that is one run of rows (often every row) from
its count, first and last id, with no id streamed; other ids as Arrow arrays straight into NumPy; a
table's cells by a radix sort of each piece on narrow cell numbers, or, for a crosstab over a
Parquet file, as intersections with the rows of each level, read once per column and kept
(:func:`kept_codes`). Measured and not used: DuckDB
finding the runs itself (``rid - row_number()`` islands) costs twice the streaming of the ids, and
``bitstring_agg`` per cell and container three times the streaming of ids and cell numbers.
"""

from __future__ import annotations

import array
import base64
import hashlib
import json
import os
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Any

import numpy as np
import pandas as pd
from pyroaring import BitMap

from fednb.domain.data.engines import sql
from fednb.domain.data.engines.base import ROW_ID, Engine
from fednb.domain.data.engines.duckdb import ParquetEngine
from fednb.domain.review.policy import DisclosureSection


def bitmap(ids: np.ndarray) -> BitMap:
    """Row ids as a Roaring bitmap (through an ``array`` buffer, as :func:`differencing.roaring`)."""
    buffer = array.array("I")
    buffer.frombytes(np.ascontiguousarray(ids, dtype=np.uint32).tobytes())
    return BitMap(buffer)


# Set in a worker that hands its row sets to the server in a file (fednb.domain.run.evidence_files):
# a record then keeps its serialized bitmap as bytes (``blob``), not as base64 text (``bitmap``), so
# tens of megabytes of bitmaps are neither encoded nor decoded again on their way to the file.
RAW_BITMAPS: ContextVar[bool] = ContextVar("fednb_raw_bitmaps", default=False)


def evidence(rows: BitMap) -> dict[str, Any]:
    """The same record as :func:`fednb.domain.release.differencing.evidence`, from a built bitmap."""
    rows = BitMap(rows)
    rows.run_optimize()
    blob = rows.serialize()
    record: dict[str, Any] = {"rows": len(rows), "sha256": hashlib.sha256(blob).hexdigest()}
    if RAW_BITMAPS.get():
        record["blob"] = blob
    else:
        record["bitmap"] = base64.b64encode(blob).decode("ascii")
    return record


# The first and last selected row id: with count(*) in the same query they tell whether the
# selection is one run of consecutive rows (see :meth:`Scan.rows`).
SPAN = f"min({ROW_ID}), max({ROW_ID})"


class Cells:
    """Counts and row sets of the cells of a table, filled one piece of rows at a time."""

    def __init__(self, size: int):
        self.counts = np.zeros(size, dtype=np.int64)
        self.rows = [BitMap() for _ in range(size)]

    def add(self, ids: np.ndarray, cells: np.ndarray) -> None:
        """Sort a piece's ids by cell (a radix sort on cell numbers as narrow as the table allows:
        linear in the piece) and add each cell's run of ids to its bitmap at once."""
        size = self.counts.size
        narrow = np.uint8 if size <= 1 << 8 else np.uint16 if size <= 1 << 16 else np.int64
        cells = np.asarray(cells).astype(narrow, copy=False)
        counts = np.bincount(cells, minlength=size)[:size]
        self.counts += counts
        order = np.argsort(cells, kind="stable")
        ids = np.asarray(ids)[order]
        stops = np.cumsum(counts)
        for cell in np.flatnonzero(counts):
            self.rows[cell] |= bitmap(ids[stops[cell] - counts[cell]:stops[cell]])

    def all_rows(self) -> BitMap:
        return BitMap.union(*self.rows) if self.rows else BitMap()

    def evidence(self, hidden: np.ndarray, *, free: bool = False) -> list[dict]:
        """Each shown non-empty cell's rows, then the hidden cells' rows together (as ``cell_evidence``).
        ``free``: the table's last use; each cell's bitmap is dropped once serialized, so a table of
        fifty million rows does not hold its bitmaps and their serialized copies at once."""
        shown = [c for c in range(self.counts.size) if self.counts[c] > 0 and not hidden[c]]
        hidden_rows = BitMap.union(*(self.rows[c] for c in np.flatnonzero(hidden))) if hidden.any() else BitMap()
        sets = []
        for c in shown:
            sets.append(evidence(self.rows[c]))
            if free:
                self.rows[c] = BitMap()
        if (self.counts[hidden] > 0).any():
            sets.append(evidence(hidden_rows))
        return sets


# Row sets kept per engine (a weak key: dropped with the engine, which the worker reopens when its
# file changes), least recently used first, up to this many bytes of bitmaps per engine.
KEPT_BYTES = 128 << 20
_kept: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _bytes(rows: BitMap) -> int:
    stats = rows.get_statistics()
    return 64 + sum(stats[f"n_bytes_{kind}_containers"] for kind in ("array", "run", "bitset"))


def kept_codes(scan: Scan, codes: Sequence[tuple[str, Sequence[Any], int]]) -> list[list[BitMap]] | None:
    """For each ``(SQL giving each row a code in 0..size-1, its parameters, size)``, the ids of every
    row of the table (no filter) that has each code; those not yet kept are read in one pass. None
    where the table may change under the engine (a database or Spark: only a dataset's own Parquet
    file is fixed while its engine is open), and there the caller reads its rows itself.

    Why: a categorical column's levels are the same for every request, so a crosstab's cells are
    the intersections of its selection with the rows of each pair of levels (Roaring AND, a few
    microseconds per container), not a sort of every selected row's cell. Exactly the same sets."""
    if not isinstance(scan.engine, ParquetEngine):
        return None
    kept = _kept.setdefault(scan.engine, OrderedDict())
    stat = os.stat(scan.engine.path)  # a file replaced under an open engine is read afresh
    keys = [(stat.st_mtime_ns, stat.st_size, stat.st_ino, text, json.dumps(list(params), default=str), size)
            for text, params, size in codes]
    missing = [i for i, key in enumerate(keys) if key not in kept]
    if missing:
        select = ", ".join(f"{codes[i][0]} AS c{i}" for i in missing)
        params = [p for i in missing for p in codes[i][1]]
        built = {i: Cells(codes[i][2]) for i in missing}
        for piece in Scan(scan.engine, [], scan.schema.levels).arrays(select, params):
            for i in missing:
                built[i].add(piece[ROW_ID], piece[f"c{i}"])
        for i in missing:
            kept[keys[i]] = (built[i].rows, sum(_bytes(r) for r in built[i].rows))
    out = []
    for key in keys:
        kept.move_to_end(key)
        out.append(kept[key][0])
    while len(kept) > len(keys) and sum(size for _, size in kept.values()) > KEPT_BYTES:
        kept.popitem(last=False)
    return out


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

    def arrays(self, select: str, params: Sequence[Any] = (), extra: str | None = None) -> Iterator[dict[str, np.ndarray]]:
        """As :meth:`stream` (``select`` may be empty: row ids alone), each piece as NumPy arrays by
        column name: from an engine that streams Arrow, without a pandas frame or a copy per piece."""
        text = f"SELECT {ROW_ID}{', ' + select if select else ''} FROM data WHERE {self._where(extra)}"
        arrow = getattr(self.engine, "arrow_batches", None)
        if arrow is None:
            for piece in self.engine.batches(text, [*params, *self.params]):
                yield {name: piece[name].to_numpy() for name in piece.columns}
            return
        for batch in arrow(text, [*params, *self.params]):
            yield {name: column.to_numpy(zero_copy_only=False) for name, column in zip(batch.schema.names, batch.columns)}

    def frame(self, columns: Sequence[str]) -> pd.DataFrame:
        """The selected rows of ``columns`` as pandas, indexed by row id (for the built-ins that fit
        models in NumPy: only their columns, only the filtered rows)."""
        text, params = sql.select_rows(self.schema, columns, [])
        text = text.replace("WHERE true", f"WHERE {self.test}", 1)
        pieces = list(self.engine.batches(text, [*params, *self.params]))
        frame = pd.concat(pieces) if len(pieces) > 1 else pieces[0]
        frame.index = pd.Index(frame.pop(ROW_ID).to_numpy(dtype=np.int64))
        return frame

    def rows(self, extra: str | None = None, span: Sequence[Any] | None = None) -> BitMap:
        """The ids of the selected rows (that also meet ``extra``). A selection that is one run of
        consecutive rows (every row, often) is known from its count and ends without streaming;
        ``span`` is that (count, first id, last id) when a query already read it (:data:`SPAN`)."""
        count, first, last = span if span is not None else self.one(f"count(*), {SPAN}", extra=extra)
        if int(count) == 0:
            return BitMap()
        if int(last) - int(first) + 1 == int(count):
            whole = BitMap()
            whole.add_range(int(first), int(last) + 1)
            return whole
        out = BitMap()
        for piece in self.arrays("", extra=extra):
            out |= bitmap(piece[ROW_ID])
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


def magnitude_settled(n: int, total: float, largest: float, rules: DisclosureSection) -> bool:
    """Whether :func:`magnitude_reason` is None whatever the other largest values are, knowing only
    the largest: the ``nk`` largest sum to at most ``nk`` times it (dominance rule) and the second is
    at most the first (p% rule). Most sums settle here, so the top-``nk`` aggregate, slower than a
    sum, runs only for the rest. Both bounds are computed as the rules compute their sides (rounding
    is monotone), so a sum settled here passes the exact rules too (``tests/test_evidence_ranges.py``)."""
    nk, k, p = rules.safe_nk_n, rules.safe_nk_k, rules.safe_pratio_p
    if n <= nk or total <= 0:
        return False
    dominance_safe = not sum([largest] * nk) > k * total
    pratio_safe = largest <= 0 or not total - largest - largest < p * largest
    return dominance_safe and pratio_safe
