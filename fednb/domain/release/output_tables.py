"""The domain's check of one ``fednb.table``: counts, sums and means by group, computed here.

Cells are judged like the tables of trusted research environments (ACRO/SACRO, Smith et al.
2023): a count cell needs ``min_cell_count`` rows, a cell of sums or means ``min_cohort`` rows
(it releases a value, like a built-in ``mean``) and must pass the dominance and p% rules. Hidden
cells are dropped from the released table, after secondary suppression that treats every row and
column total as known (an analyst can always ask the built-in ``count`` for it; Hundepool et al.,
*Statistical Disclosure Control*, 2012, ch. 4.3). A table where most groups would be hidden is
refused: its grouping is finer than the data (one value per row spread over many small groups).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from fednb import codec, results
from fednb.domain.release import disclosure
from fednb.domain.release.disclosure import Blocked
from fednb.locale import N_

if TYPE_CHECKING:
    from fednb.domain.release.output_check import OutputChecker


def _layout(shape: dict, ids: np.ndarray) -> tuple[list[str], list[list], np.ndarray]:
    by, groups, codes = shape.get("by"), shape.get("groups"), shape.get("codes")
    if not (isinstance(by, list) and by and all(isinstance(b, str) for b in by)
            and isinstance(groups, list) and all(isinstance(g, list) and len(g) == len(by) for g in groups)
            and isinstance(codes, list) and len(codes) == ids.size
            and all(isinstance(c, int) and 0 <= c < len(groups) for c in codes)):
        raise Blocked("a fednb.table came back malformed; build it with fednb.table(frame, by=..., ...)")
    for g in groups:
        if not all(v is None or isinstance(v, (bool, int, float, str)) for v in g):
            raise Blocked("a fednb.table's group labels must be plain values (text, numbers, true/false)")
    return by, groups, np.asarray(codes, dtype=np.int64)


def _verify_labels(checker: OutputChecker, by: list[str], groups: list[list], codes: np.ndarray,
                   ids: np.ndarray) -> None:
    """Labels of dataset columns must be the dataset's own; labels the function computed are free text."""
    for j, column in enumerate(by):
        if column in checker.frame.columns:
            if not _labels_match(checker.frame[column].iloc[ids].to_numpy(), codes, [g[j] for g in groups]):
                raise Blocked(f"the groups handed back for column {column!r} are not the dataset's; a column the "
                              "function computes must have a name of its own")
        else:
            checker._text(column)
            for g in groups:
                checker._text(str(g[j]))


def _labels_match(actual: np.ndarray, codes: np.ndarray, labels: list) -> bool:
    """Every row of group g holds exactly the value ``labels[g]`` (one pass, then one check per group)."""
    import pandas as pd

    found, uniques = pd.factorize(actual, use_na_sentinel=False)
    width = max(len(uniques), 1)
    pairs = np.unique(codes * width + found)
    if pairs.size != np.unique(codes).size:  # some group mixes rows of different values
        return False
    return all(_same(results._plain(uniques[p % width]), labels[p // width]) for p in pairs.tolist())


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return type(a) is type(b) and a == b or (isinstance(a, (int, float)) and isinstance(b, (int, float))
                                             and not isinstance(a, bool) and not isinstance(b, bool) and a == b)


def _grid(groups: list[list], used: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Groups laid out as a 2-D table (first column × the rest) for secondary suppression."""
    rows_, cols_ = {}, {}
    place = []
    for g in groups:
        r = rows_.setdefault(repr(g[0]), len(rows_))
        c = cols_.setdefault(repr(g[1:]), len(cols_))
        place.append((r, c))
    grid = np.zeros((len(rows_), len(cols_)))
    for (r, c), n in zip(place, used, strict=True):
        grid[r, c] = n
    return grid, place


def judge_table(checker: OutputChecker, shape: dict, owner: int) -> Any:
    """The released (encoded) DataFrame of one table; raises :class:`Blocked`."""
    rules = checker.rules
    ids = checker._rows(shape)
    values = checker._values(shape, ids)
    by, groups, codes = _layout(shape, ids)
    disclosure.check_cohort(ids.size, rules, N_("the rows behind a fednb.table"))
    _verify_labels(checker, by, groups, codes, ids)
    counts = np.bincount(codes, minlength=len(groups))
    k = rules.min_cell_count if values is None else max(rules.min_cell_count, rules.min_cohort)
    primary = counts < k
    members = [np.flatnonzero(codes == g) for g in range(len(groups))]
    if values is not None:
        for g in np.flatnonzero(~primary):
            primary[g] = checker._magnitude(values[members[g]]) is not None
    grid, place = _grid(groups, np.where(primary, 0.5, counts).astype(float))
    hidden_grid = disclosure.suppress(grid, k, margins=(len(by) > 1, True))
    hidden = np.array([hidden_grid[r, c] for r, c in place], dtype=bool) | primary
    if hidden.all() or (len(groups) > 2 and hidden.sum() * 2 > len(groups)):
        raise Blocked(f"{int(hidden.sum())} of the {len(groups)} groups of a fednb.table have fewer than {k} rows "
                      "or are dominated by one or two rows; the grouping is finer than the data allows. Use "
                      "wider groups")
    cells, shown_rows = [], []
    for g in np.flatnonzero(~hidden):
        agg = None if values is None else checker._round(results.aggregate(values[members[g]].tolist(), shape["agg"]))
        cells.append((groups[g], int(counts[g]), agg))
        rows = ids[members[g]]
        shown_rows.append(rows)
        checker._remember(owner, rows, cell=True)
    checker._remember(owner, np.concatenate(shown_rows))
    checker.report["suppressed_cells"] += int(hidden.sum())
    return codec.encode(results.frame_of(by, shape["agg"], cells))
