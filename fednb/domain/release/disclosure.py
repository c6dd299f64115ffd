"""Disclosure control: what may leave the domain.

Rules, named like DataSHIELD's filters so an owner can read them in ``policy.toml``:
- ``min_cohort`` (nfilter.subset): no aggregate from fewer rows;
- ``min_cell_count`` (nfilter.tab): table cells with 0 < count < k are suppressed, then enough
  complementary cells that no suppressed cell can be recovered from row or column totals
  (secondary suppression, Hundepool et al., *Statistical Disclosure Control*, 2012, ch. 4.3);
- ``hidden_cell_interval``: after that, every hidden cell's feasible interval given the released
  total and margins, found by linear programming (:mod:`.intervals`), is at least this wide, or more
  cells are hidden (:func:`protect`);
- ``safe_nk_n``, ``safe_nk_k``, ``safe_pratio_p``: dominance and p% rules on sums and means
  (:mod:`.magnitude`, :func:`check_magnitude`);
- custom code's output is checked row by row elsewhere (:mod:`.output_check`).
A refusal raises :class:`Blocked`; the request then ends as ``blocked`` with the reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fednb.domain.review.policy import DisclosureSection
from fednb.lazy_import import lazy_import
from fednb.locale import N_

intervals = lazy_import("fednb.domain.release.intervals")  # scipy's LP solver, loaded when a table needs it
magnitude = lazy_import("fednb.domain.release.magnitude")  # pandas, loaded when values are checked


class Blocked(Exception):
    """The result may not be released; ``str(exc)`` is the reason shown to the analyst."""


def check_cohort(n: int, rules: DisclosureSection, what: str = N_("the selected rows")) -> None:
    if n < rules.min_cohort:
        raise Blocked(
            N_("{what} number fewer than {min_cohort} (the domain's minimum cohort); "
              "widen the selection").format(what=what, min_cohort=rules.min_cohort)
        )


def suppress(table: np.ndarray, k: int, *, margins: tuple[bool, bool] = (True, True)) -> np.ndarray:
    """Boolean mask of cells to hide in a 2-D count table.

    ``margins`` says which totals the analyst can learn (row totals, column totals); for each such
    line with exactly one hidden cell, the smallest other cell is hidden too, until stable.
    Raises :class:`Blocked` when a lone small cell cannot be protected (a line of one cell).
    """
    table = np.asarray(table)
    hidden = (table > 0) & (table < k)
    changed = True
    while changed:
        changed = False
        for axis, known in enumerate(margins):
            if not known:
                continue
            lines = hidden if axis == 0 else hidden.T
            values = table if axis == 0 else table.T
            for i in range(lines.shape[0]):
                if lines[i].sum() != 1:
                    continue
                candidates = np.flatnonzero(~lines[i])
                if candidates.size == 0:
                    raise Blocked(N_("a cell under {k} rows cannot be hidden in this table; use wider groups").format(k=k))
                # Prefer the smallest non-zero cell: it hides the most and costs the least.
                order = sorted(candidates, key=lambda j: (values[i, j] == 0, values[i, j]))
                j = order[0]
                if axis == 0:
                    hidden[i, j] = True
                else:
                    hidden[j, i] = True
                changed = True
    return hidden


def protect(table: np.ndarray, rules: DisclosureSection, *, margins: tuple[bool, bool] = (True, True)) -> np.ndarray:
    """Cells to hide in a count table: primary and secondary suppression, then the interval audit."""
    table = np.asarray(table)
    hidden = suppress(table, rules.min_cell_count, margins=margins)
    small = (table > 0) & (table < rules.min_cell_count)
    try:
        return intervals.widen(table, hidden, margins, rules.hidden_cell_interval, rules.min_cell_count, small)
    except intervals.Unprotectable:
        raise Blocked(N_("the table's small cells cannot be hidden well enough: from its total and its row and "
                        "column totals (which other queries can give), a hidden cell would be known to within "
                        "fewer than {interval} rows (or it has more than "
                        "{cells} small cells to audit); use wider bins or fewer levels").format(
            interval=rules.hidden_cell_interval, cells=intervals.MAX_AUDITED_CELLS)) from None


def check_magnitude(values: np.ndarray, rules: DisclosureSection, what: str) -> None:
    """Refuse a sum or mean that one or two rows dominate ((n,k)-dominance, p% rule)."""
    reason = magnitude.sensitive(values, n=rules.safe_nk_n, k=rules.safe_nk_k, p=rules.safe_pratio_p)
    if reason is not None:
        raise Blocked(N_("{what} cannot be released: {reason}, so it would reveal one row's value; "
                        "widen the selection or use a column no row dominates").format(what=what, reason=reason))


def check_size(size: int, rules: DisclosureSection) -> None:
    """The same output cap for built-ins as for custom code (a crosstab of two wide columns can be big)."""
    if size > rules.max_output_bytes:
        raise Blocked(N_("the result is larger than the domain's limit of {limit:,} bytes "
                        "({size:,}); ask for fewer bins, levels or columns").format(
            limit=rules.max_output_bytes, size=size))


def describe_suppression(mask: np.ndarray) -> dict[str, Any]:
    return {"suppressed_cells": int(mask.sum())}


def dropped_rows(dropped: int, rules: DisclosureSection) -> dict[str, Any]:
    """The rows left out for a missing model value, as released: exact when 0 or at least the minimum
    cell count, otherwise only "fewer than k" (a count of 1..k-1 rows would describe those people)."""
    k = rules.min_cell_count
    if dropped == 0 or dropped >= k:
        return {"dropped": int(dropped)}
    return {"dropped": None, "dropped_below": k}
