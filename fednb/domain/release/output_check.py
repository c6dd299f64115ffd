"""Output checking of custom code: what a released object carries, measured by information.

A Python value count says nothing about disclosure: one string can hold a whole CSV, dict keys and
index labels can be rows, one float can pack several values in its digits, and ten plain numbers
from 100 rows can be ten patients' ages. So custom code is checked by what can be verified:

- **Numbers** are released only as ``fednb.table``/``fednb.stat`` values
  (:mod:`fednb.results`). For each, the function hands back the row positions and per-row values;
  this process verifies them against its own copy of the data (rows exist and are distinct; values
  and labels of dataset columns match), computes every count, sum and mean itself, and applies the
  rules of the outputs checked in trusted research environments (ACRO/SACRO, Smith et al. 2023;
  Hundepool et al., *Statistical Disclosure Control*, 2012): ``min_cohort`` on the rows behind each
  stat and each table, ``min_cell_count`` on each cell with secondary suppression
  (:func:`disclosure.suppress`), (n,k)-dominance and p% on sums and means
  (:mod:`magnitude`), and no two released row sets that differ by fewer than ``min_cohort`` rows
  (their difference would isolate those rows, Denning 1979). Sums and means are rounded to
  ``significant_digits``: digits beyond that are refused by rounding, not by judging intent.
  Any other number is one the domain cannot judge (nothing says which rows it comes from): the
  result is blocked unless the owner's policy lists the dataset in ``unchecked_output``.
- **Text** (strings, dict keys, index and column labels, labels of computed groups) counts by its
  length, except labels drawn from the dataset's schema (column names, category levels held by at
  least ``min_cell_count`` rows). A result with more than ``max_free_text`` characters of other text
  is blocked: CSV or JSON in a string, rows as keys or as labels.

Reasons never quote the refused value: they name the rule and what to change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fednb import results
from fednb.codec import TAG
from fednb.domain.release import disclosure, magnitude
from fednb.domain.release.disclosure import Blocked
from fednb.domain.review.policy import DisclosureSection
from fednb.locale import N_

MAX_SHAPES = 1000  # row sets compared pairwise in one result
# The parts each encoded type may have (fednb.codec); anything else is refused as malformed.
_PARTS = {"float": {"value"}, "dict": {"items"}, "ndarray": {"dtype", "shape", "data"},
          "dataframe": {"columns", "index", "index_names", "data"},
          "series": {"name", "index", "index_names", "data"}}
MAX_METRICS = 16


def round_significant(x: float, digits: int) -> float:
    """``x`` to ``digits`` significant digits (the precision the release may carry)."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))


def _numpy_dtype(name: Any) -> bool:
    """``name`` is numpy's own spelling of a dtype (not text chosen by the code)."""
    if not isinstance(name, str) or len(name) > 20:
        return False
    try:
        return str(np.dtype(name)) == name
    except (TypeError, ValueError):
        return False


def schema_labels(frame: Any, min_cell_count: int) -> set[str]:
    """Column names and the category levels held by at least ``min_cell_count`` rows."""
    import pandas as pd

    labels = {str(c) for c in frame.columns}
    for col in frame.columns:
        s = frame[col]
        if pd.api.types.is_numeric_dtype(s.dtype) and s.dtype != bool:
            continue
        counts = s.astype(str).value_counts()
        labels.update(str(v) for v in counts.index[counts >= min_cell_count])
    return labels


@dataclass
class _RowSet:
    owner: int  # the stat or table it belongs to: sets of one table are compared with other objects only
    rows: np.ndarray
    cell: bool = False  # a shown cell of a table (compared with other cells at min_cell_count)


@dataclass
class OutputChecker:
    """One result's check. ``frame`` is the domain's own copy of the dataset."""

    rules: DisclosureSection
    frame: Any
    unchecked_allowed: bool = False
    free_text: int = 0
    unjudged: int = 0
    report: dict[str, Any] = field(default_factory=lambda: {"checked": [], "suppressed_cells": 0})
    _labels: set[str] | None = None
    _sets: list[_RowSet] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    # -- the walk -----------------------------------------------------------------------------
    def check(self, value: Any) -> tuple[Any, dict[str, Any]]:
        """The releasable form of an encoded result and what was checked; raises :class:`Blocked`."""
        released = self._walk(value)
        if self.unchecked_allowed:
            self.report["unchecked"] = True
            return released, self.report
        if self.unjudged:
            raise Blocked(
                N_("the result holds {count} number(s) the domain cannot check: nothing says which rows "
                   "they come from. Return counts, sums and means as fednb.table(...) or fednb.stat(...), which "
                   "the domain verifies row by row (this dataset's policy does not allow unchecked output)").format(
                    count=self.unjudged))
        if self.free_text > self.rules.max_free_text:
            raise Blocked(
                N_("the result carries {count} characters of free text (strings, keys or labels that are "
                   "not the dataset's column names or category levels); at most {limit} may "
                   "leave, since text can hold rows (CSV or JSON in a string, rows as keys or labels). Return "
                   "fednb.table(...) or fednb.stat(...) values under short names").format(
                    count=self.free_text, limit=self.rules.max_free_text))
        self._differencing()
        return released, self.report

    def evidence(self) -> dict[str, Any]:
        """The row sets behind what :meth:`check` released, for the differencing memory across
        requests (:func:`fednb.domain.release.differencing.settle`), as built-ins leave theirs."""
        from fednb.domain.release import differencing

        return {"sets": [differencing.evidence(s.rows) for s in self._sets if not s.cell],
                "cells": [differencing.evidence(s.rows) for s in self._sets if s.cell]}

    def check_text(self, value: Any) -> int:
        """Only the free text of a result whose numbers are judged elsewhere (a built-in's): raises
        :class:`Blocked` over ``max_free_text``, returns the count. Numbers are not counted."""
        self._walk(value)
        if self.free_text > self.rules.max_free_text:
            raise Blocked(N_("the result carries {count} characters of text that are not the dataset's "
                             "column names or category levels; at most {limit} may leave").format(
                count=self.free_text, limit=self.rules.max_free_text))
        return self.free_text

    def _walk(self, obj: Any) -> Any:
        """Count what ``obj`` carries and rebuild it from known parts only: the encoded value comes
        from the sandbox child, where the analyst's code could have written any JSON."""
        if isinstance(obj, list):
            self.free_text += len(obj)  # each element: a list's length and layout carry information too
            return [self._walk(v) for v in obj]
        if isinstance(obj, str):
            self._text(obj)
            return obj
        if obj is None:
            self.free_text += 1
            return None
        if not isinstance(obj, dict):  # bool, int, float
            self.unjudged += 1
            return obj
        tag = obj.get(TAG)
        if tag is None:
            self.free_text += len(obj)
            for key in obj:
                self._text(key)
            return {k: self._walk(v) for k, v in obj.items()}
        if tag in ("table", "stat"):
            return self._shape(obj)
        if tag not in _PARTS or not set(obj) <= _PARTS[tag] | {TAG}:
            raise Blocked(N_("the result is malformed (an encoded value with unknown parts); return numbers, text, "
                             "lists, dicts, pandas objects, fednb.table or fednb.stat"))
        if tag == "float":
            if obj.get("value") not in ("nan", "inf", "-inf"):
                raise Blocked(N_("the result is malformed (an encoded float that is not nan or infinite)"))
            self.unjudged += 1
            return {TAG: "float", "value": obj["value"]}
        if tag == "ndarray" and not _numpy_dtype(obj.get("dtype")):
            raise Blocked(N_("the result is malformed (an array with an unknown dtype)"))
        if tag == "dict":
            items = obj.get("items")
            if not isinstance(items, list) or not all(isinstance(i, list) and len(i) == 2 for i in items):
                raise Blocked(N_("the result is malformed (an encoded dict without its items)"))
            self.free_text += len(items)
            return {TAG: "dict", "items": [[self._walk(k), self._walk(v)] for k, v in items]}
        out = {TAG: tag}
        for part in sorted(_PARTS[tag] & set(obj)):
            out[part] = obj[part] if part in ("dtype", "shape") else self._walk(obj[part])
        if "shape" in out and not (isinstance(out["shape"], list) and all(
                isinstance(d, int) and not isinstance(d, bool) and 0 <= d for d in out["shape"])):
            raise Blocked(N_("the result is malformed (an array with an unknown shape)"))
        return out

    def _text(self, text: str) -> None:
        """Free text counts by its length; a schema label is free the first time it appears only
        (a list of 1,000 "F"/"M" is a column of the dataset, not a label)."""
        if self._labels is None:
            self._labels = schema_labels(self.frame, self.rules.min_cell_count)
        if text in self._labels and text not in self._seen:
            self._seen.add(text)
            return
        self.free_text += len(text)

    # -- fednb.table / fednb.stat ---------------------------------------------------------------
    def _rows(self, shape: dict) -> np.ndarray:
        rows = shape.get("rows")
        try:
            ids = np.asarray(rows) if isinstance(rows, list) and rows else np.zeros(0, dtype=np.int64)
        except (TypeError, ValueError):
            ids = None
        if not isinstance(rows, list) or ids is None or ids.ndim != 1 or ids.dtype.kind != "i":
            raise Blocked(N_("a fednb.table/stat value came back without its rows; build it with fednb.table or "
                             "fednb.stat on the frame the function was given"))
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.frame)):
            raise Blocked(N_("a fednb.table/stat value names rows this dataset does not have; keep the index of the "
                             "frame the function was given (do not reset it)"))
        if np.unique(ids).size != ids.size:
            raise Blocked(N_("a fednb.table/stat value counts the same row more than once; each row may "
                             "contribute once"))
        return ids

    def _values(self, shape: dict, ids: np.ndarray) -> np.ndarray | None:
        """The per-row values, verified against the dataset when they claim to be one of its columns."""
        if shape.get("agg") not in results.AGGREGATES:
            raise Blocked(N_("a fednb.table/stat value has an unknown aggregate"))
        if shape["agg"] == "count":
            return None
        raw = shape.get("values")
        if not isinstance(raw, list) or len(raw) != ids.size or \
                not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
            raise Blocked(N_("a fednb.table/stat sum or mean came back without one finite number per row"))
        values = np.asarray(raw, dtype=float)
        column = shape.get("value")
        if isinstance(column, str) and column in self.frame.columns:
            try:
                own = self.frame[column].iloc[ids].astype(float).to_numpy()
            except (TypeError, ValueError):
                own = None  # not a numeric column: no value of it can match
            if own is None or not np.allclose(own, values, rtol=1e-9, atol=1e-12, equal_nan=False):
                raise Blocked(N_("the values handed back as column {column!r} are not the dataset's at those rows: "
                                 "a column the function computes needs a name of its own, and the frame must keep "
                                 "the index it was given (merges and reset_index lose it)").format(column=column))
            self.report["checked"].append(f"{column}: verified against the dataset")
        else:
            self.report["checked"].append(f"{column or 'a value'}: computed by the function (not verifiable)")
            if column is not None:
                self._text(str(column))
        return values

    def _remember(self, owner: int, rows: np.ndarray, cell: bool = False) -> None:
        """Keep a released row set, to compare later ones against (differencing)."""
        self._sets.append(_RowSet(owner, rows, cell))

    def _round(self, x: float) -> float:
        return round_significant(x, self.rules.significant_digits)

    def _stat(self, shape: dict, owner: int) -> float | int:
        ids = self._rows(shape)
        values = self._values(shape, ids)
        disclosure.check_cohort(ids.size, self.rules, N_("the rows behind a fednb.stat value"))
        self._sets.append(_RowSet(owner, ids))
        if values is None:
            return int(ids.size)
        why = self._magnitude(values)
        if why:
            raise Blocked(N_("a fednb.stat {aggregate} cannot be released: {reason}").format(
                aggregate=shape["agg"], reason=why))
        return round_significant(results.aggregate(values.tolist(), shape["agg"]), self.rules.significant_digits)

    def _shape(self, shape: dict) -> Any:
        owner = len(self._sets) + 1
        if len(self._sets) > MAX_SHAPES:
            raise Blocked(N_("the result holds more than {limit} checked values; return fewer").format(limit=MAX_SHAPES))
        if shape[TAG] == "stat":
            return self._stat(shape, owner)
        from fednb.domain.release.output_tables import judge_table

        return judge_table(self, shape, owner)

    def _magnitude(self, values: np.ndarray) -> str | None:
        """Dominance and p% on sums and means; 0/1 values are counts and take the cell rule instead."""
        if np.isin(values, (0.0, 1.0)).all():
            return None
        r = self.rules
        return magnitude.sensitive(values, n=r.safe_nk_n, k=r.safe_nk_k, p=r.safe_pratio_p)

    def _differencing(self) -> None:
        """No two released row sets (of different values) differ by 1 .. min_cohort - 1 rows."""
        from scipy import sparse

        sets = self._sets
        if len(sets) < 2:
            return
        lengths = np.array([s.rows.size for s in sets], dtype=np.int64)
        cols = np.concatenate([s.rows for s in sets])
        owners = np.repeat(np.arange(len(sets)), lengths)
        m = sparse.csr_matrix((np.ones(cols.size, dtype=np.int64), (owners, cols)), shape=(len(sets), len(self.frame)))
        common = (m @ m.T).toarray()
        diff = lengths[:, None] + lengths[None, :] - 2 * common
        owner = np.array([s.owner for s in sets])
        close = (diff > 0) & (diff < self.rules.min_cohort) & (owner[:, None] != owner[None, :])
        if close.any():
            raise Blocked(
                N_("two values in this result come from row sets that differ by fewer than {min_cohort} "
                   "rows (the domain's minimum cohort), so subtracting one from the other would reveal those rows; "
                   "use groups or selections that differ by more rows").format(min_cohort=self.rules.min_cohort))


def check_metrics(metrics: Any, rules: DisclosureSection, what: str = "the training metrics") -> dict[str, float]:
    """Training metrics and evaluation results: a few named numbers, rounded; nothing row-shaped.

    They are computed by analyst code on rows the domain cannot trace, so the checker bounds the
    channel instead: at most :data:`MAX_METRICS` names of at most ``max_free_text`` characters in all, each a finite
    number rounded to ``significant_digits``; lists, strings and nested values are refused.
    """
    if metrics is None:
        return {}
    if isinstance(metrics, (int, float)) and not isinstance(metrics, bool):
        metrics = {"value": metrics}
    if not isinstance(metrics, dict) or any(TAG == k for k in metrics):
        raise Blocked(f"{what} must be a dict of named numbers (e.g. {{\"loss\": 0.31}})")
    if len(metrics) > MAX_METRICS:
        raise Blocked(f"{what} hold {len(metrics)} names; at most {MAX_METRICS} may leave per round")
    if sum(len(str(name)) for name in metrics) > rules.max_free_text:
        raise Blocked(f"{what}' names carry more than {rules.max_free_text} characters of text; names can hold "
                      "rows, so keep a few short ones (\"loss\", \"accuracy\")")
    out = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise Blocked(f"{what}: {name!r} is not one finite number; lists, text and nested values cannot "
                          "leave with a round")
        out[name] = round_significant(float(value), rules.significant_digits)
    return out
