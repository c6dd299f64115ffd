"""Differencing defence: no exact release may differ from an earlier one by a handful of rows.

Two aggregates that are each safe can still describe one person by subtraction: ``count`` (or
``sum``, a histogram, a GLM's sums) over ``age >= 40`` and over ``age >= 40 and id != 17`` differ by
exactly that row's contribution. This is the differencing attack of Huth et al. (2022) against
DataSHIELD; a binary search over ``where`` thresholds is the same attack spread over many queries
(Denning, Denning & Schwartz, "The tracker", ACM TODS 1979).

The domain therefore remembers, per dataset and across all analysts, the set of rows behind every
exact release: a SHA-256 of the row-id set (the same set again is harmless and stored once), its
size, and the set itself as a Roaring bitmap (Lemire et al., "Roaring bitmaps", 2016; ``pyroaring``).
A new release whose set differs from a remembered one by 1 to ``min_cohort - 1`` rows, in either
direction, is blocked with a reason naming the earlier request. Only remembered sets whose size is
within ``min_cohort`` of the new one can be that close (|S △ T| ≥ ||S| − |T||), so the store is
searched by size and few bitmaps are ever read. The check and the write happen in the transaction
that releases the result, so a kill -9 cannot leave a release unremembered.

Row ids are the frame's index labels, which for a registered dataset are its row positions (the
Parquet file is written without an index); a SQL engine can supply the same ids as a row-number
column.

**What this does not stop.** It compares the new release with each earlier one, pairwise. A tracker
(Denning 1979) combines three or more large queries — q(A ∪ {x}), q(A), q(B) ... — whose pairwise
differences are all large but whose linear combination isolates one row; general linear
reconstruction from many noisy-free aggregates (Dinur & Nissim 2003) is not detected either. fednb
does not audit the span of all released queries (exact auditing is costly and itself leaks through
its refusals: Kenthapadi, Mishra & Nissim 2005). The defence against those is differential privacy:
``privacy.noisy`` in ``policy.toml`` listing every built-in releases all of them with noise under one
budget, and noisy releases are not remembered here (the noise protects them).
"""

from __future__ import annotations

import array
import base64
import hashlib
from collections.abc import Iterable
from typing import Any

import numpy as np
from pyroaring import BitMap

from fednb.domain.store import releases as release_rows
from fednb.domain.store import requests as request_rows
from fednb.locale import N_


def evidence(row_ids: Iterable[int] | np.ndarray) -> dict[str, Any]:
    """The JSON-able record of the rows behind a release, carried from the computation to the release."""
    ids = np.asarray(row_ids if isinstance(row_ids, np.ndarray) else list(row_ids), dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= 2**32):
        raise ValueError("row ids must be row positions (0 <= id < 2**32)")
    bitmap = roaring(ids)
    blob = bitmap.serialize()
    return {"rows": len(bitmap), "sha256": hashlib.sha256(blob).hexdigest(),
            "bitmap": base64.b64encode(blob).decode("ascii")}


def roaring(ids: np.ndarray) -> BitMap:
    """A Roaring bitmap of row ids, built through an ``array`` buffer (ten times faster than from
    a NumPy array, which pyroaring iterates) and run-length compressed where rows are contiguous."""
    buffer = array.array("I")
    buffer.frombytes(np.ascontiguousarray(ids, dtype=np.uint32).tobytes())
    bitmap = BitMap(buffer)
    bitmap.run_optimize()
    return bitmap


def _blob(rows: dict[str, Any]) -> bytes:
    """The serialized bitmap of a record: base64 text (custom code's checker), or an object whose
    ``read()`` returns it checked and ``container_sizes()`` its header's (a built-in worker's file,
    :mod:`fednb.domain.run.evidence_files`)."""
    stored = rows["bitmap"]
    return base64.b64decode(stored) if isinstance(stored, str) else stored.read()


# The portable Roaring format (https://github.com/RoaringBitmap/RoaringFormatSpec) opens with a cookie
# and, per container, its key (the ids' high 16 bits) and its size minus one, as little-endian uint16s.
_COOKIE_RUNS, _COOKIE_NO_RUNS = 12347, 12346


def container_sizes(blob: bytes) -> bytes | None:
    """The (key, size - 1) pairs of a serialized bitmap's containers, as stored (4 bytes a container);
    None for bytes not in that format (such a set is then always compared bitmap to bitmap)."""
    cookie = int.from_bytes(blob[:4], "little")
    if cookie & 0xFFFF == _COOKIE_RUNS:
        count = (cookie >> 16) + 1
        start = 4 + (count + 7) // 8
    elif cookie == _COOKIE_NO_RUNS:
        count, start = int.from_bytes(blob[4:8], "little"), 8
    else:
        return None
    header = blob[start:start + 4 * count]
    return bytes(header) if len(header) == 4 * count else None


def _sizes_by_key(header: bytes) -> np.ndarray:
    pairs = np.frombuffer(header, dtype="<u2").reshape(-1, 2)
    sizes = np.zeros(1 << 16, dtype=np.int64)
    sizes[pairs[:, 0]] = pairs[:, 1].astype(np.int64) + 1
    return sizes


def apart_at_least(a: np.ndarray, b: np.ndarray) -> int:
    """A lower bound of |S △ T| from the sizes of their containers by key: the containers split the
    ids, and two sets of m and n ids differ by at least |m - n| ids."""
    return int(np.abs(a - b).sum())


def closest(tx: Any, dataset: str, rows: dict[str, Any], *, cell: bool,
            min_cohort: int, min_cell: int) -> tuple[str, int] | None:
    """(request id, the threshold it fails) of a remembered release too few rows away from ``rows``.

    Too few: under ``min_cell`` when both sets are table cells (their difference is one more count
    cell, which the cell rule would allow from ``min_cell`` rows), under ``min_cohort`` otherwise.
    A remembered set whose containers' sizes already differ by the threshold is passed over without
    reading its bitmap (:func:`apart_at_least`); the others are compared exactly.
    """
    if max(min_cohort, min_cell) <= 1:
        return None
    n = int(rows["rows"])
    reach = max(min_cohort, min_cell) if cell else min_cohort  # |S △ T| >= ||S| - |T||
    candidates = release_rows.near_in_size(tx, dataset, n - reach, n + reach, rows["sha256"])
    if not candidates:
        return None
    stored = rows["bitmap"]
    header = container_sizes(base64.b64decode(stored)) if isinstance(stored, str) else stored.container_sizes()
    sizes, new = None if header is None else _sizes_by_key(header), None
    for row_set_id, request_id, old_cell, old_sizes in candidates:
        limit = min_cell if cell and old_cell else min_cohort
        if sizes is not None and old_sizes is not None and \
                apart_at_least(sizes, _sizes_by_key(bytes(old_sizes))) >= limit:
            continue
        if new is None:
            new = BitMap.deserialize(_blob(rows))
        apart = new.symmetric_difference_cardinality(BitMap.deserialize(release_rows.bitmap_of(tx, row_set_id)))
        if 0 < apart < limit:
            return request_id, limit
    return None


def remember(tx: Any, dataset: str, request_id: str, job_id: int | None, rows: dict[str, Any],
             *, cell: bool) -> None:
    """Keep the row set of a release; one copy per distinct set, kind and dataset."""
    if release_rows.row_set_known(tx, dataset, rows["sha256"], cell):
        return
    blob = _blob(rows)
    release_rows.add_row_set(tx, dataset, request_id, job_id, int(rows["rows"]), rows["sha256"], cell, blob,
                             container_sizes(blob))


def settle(tx: Any, request_id: str, job_id: int | None, found: dict[str, Any], *,
           min_cohort: int, min_cell: int) -> str | None:
    """In the releasing transaction: why the release must be blocked, or None after remembering it.

    ``found`` is the built-in's ``Context.evidence``: ``rows``, the rows behind the whole result, and
    ``cells``, the rows behind each shown table cell and behind its hidden cells together (their
    total is known from ``n``); custom code's checked values add ``sets``, the rows behind each
    ``fednb.stat`` and each table's shown total. A release without row evidence (a noisy one) is not
    checked.
    """
    sets = [(found["rows"], False)] if found.get("rows") else []
    sets += [(s, False) for s in found.get("sets") or [] if s["rows"] > 0]
    sets += [(c, True) for c in found.get("cells") or [] if c["rows"] > 0]
    if not sets:
        return None
    dataset = request_rows.one(tx, request_id)["dataset"]
    for rows, cell in sets:
        near = closest(tx, dataset, rows, cell=cell, min_cohort=min_cohort, min_cell=min_cell)
        if near is not None:
            limit = near[1]
            what = N_("one of its cells") if cell else N_("this result")
            # the exact difference is not named: it would itself be a count of a few rows
            return N_("the rows behind {what} differ from those of the earlier release {earlier} by between 1 "
                      "and {below} rows, so subtracting one result from the other would describe those few "
                      "people (a differencing attack). Choose a selection, bins or levels that differ from "
                      "earlier ones by at least {limit} rows").format(what=what, earlier=near[0], below=limit - 1,
                                                                      limit=limit)
    for rows, cell in sets:
        remember(tx, dataset, request_id, job_id, rows, cell=cell)
    return None
