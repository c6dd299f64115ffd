"""Suppression that survives arithmetic: what an analyst can still work out about hidden cells.

Hiding the small cells of a count table, and a complementary cell in every line with one hidden
cell, is not enough: the released total ``n`` still tells the analyst what the hidden cells add up
to, and two hidden cells that add up to 2 hold exactly one person each. The standard audit
(Hundepool et al., *Statistical Disclosure Control*, 2012, §4.3.3 on the "feasibility interval";
Cox, "Suppression methodology and statistical disclosure control", JASA 1980) solves, for each
hidden cell, two linear programmes: the smallest and the largest value the cell can take given
every released number (shown cells, the table's total, its row and column totals when the analyst
can learn them) and the non-negativity of counts. A hidden cell that is not empty is taken to hold
at least one row (an analyst may guess as much, since empty cells are usually shown): that only
narrows the interval, so the audit errs on the safe side. If that interval is narrower than the
policy's ``hidden_cell_interval``, more cells are hidden (the smallest shown non-zero cell of the
same line first) until every interval is wide enough; if no cell is left to hide, the table is refused.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

MAX_AUDITED_CELLS = 100  # two linear programmes each per pass: a table of more small cells is refused


class Unprotectable(Exception):
    """No further cell can be hidden and a hidden cell is still too narrowly bounded."""


def feasible_intervals(table: np.ndarray, hidden: np.ndarray, margins: tuple[bool, bool],
                       smallest_known: int = 1, only: np.ndarray | None = None
                       ) -> dict[tuple[int, int], tuple[float, float]]:
    """{(i, j): (lowest, highest)} value each hidden cell (or each of ``only``) can take given what
    the table releases.

    A row or column total counts as known when ``margins`` says the analyst can learn that kind of
    total and it is at least ``smallest_known``: a smaller total is itself a small count the domain
    never releases (the cell, cohort and differencing rules stop it), and assuming it known would
    make a table with one rare level unprotectable.
    """
    cells = [tuple(c) for c in np.argwhere(hidden)]
    if not cells:
        return {}
    if table.shape[0] == 1:  # one line (a histogram): Σ hidden = S, so each lies in [lb, S - Σ other lbs]
        lows = {c: (1.0 if table[c] > 0 else 0.0) for c in cells}
        total, floor = float(table[hidden].sum()), sum(lows.values())
        return {c: (low, total - floor + low) for c, low in lows.items() if only is None or only[c]}
    index = {c: v for v, c in enumerate(cells)}
    rows: list[np.ndarray] = []
    rhs: list[float] = []

    def line(members: list[tuple[int, int]], total: float) -> None:
        if not members:
            return
        a = np.zeros(len(cells))
        for c in members:
            a[index[c]] = 1.0
        rows.append(a)
        rhs.append(total)

    line(cells, float(table[hidden].sum()))  # the table's total is released as n
    for axis, known in enumerate(margins):
        if not known:
            continue
        for i in range(table.shape[axis]):
            if table.sum(axis=1 - axis)[i] < smallest_known:
                continue
            members = [c for c in cells if c[axis] == i]
            line(members, float(sum(table[c] for c in members)))
    a_eq, b_eq = np.array(rows), np.array(rhs)
    bounds = [(1.0 if table[c] > 0 else 0.0, None) for c in cells]
    out = {}
    for v, c in enumerate(cells):
        if only is not None and not only[c]:
            continue
        objective = np.zeros(len(cells))
        objective[v] = 1.0
        low = linprog(objective, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
        high = linprog(-objective, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
        top = np.inf if high.status == 3 else -high.fun
        out[c] = (float(low.fun), float(top))
    return out


def widen(table: np.ndarray, hidden: np.ndarray, margins: tuple[bool, bool], width: float,
          smallest_known: int = 1, sensitive: np.ndarray | None = None) -> np.ndarray:
    """``hidden`` with more cells hidden until every ``sensitive`` cell's interval is >= ``width``.

    Only the sensitive (primary) cells need protecting; complementary cells are hidden to protect
    them. Each pass hides, for every cell still too narrow, the smallest shown non-zero cell of one of
    its lines (else of the table), so a large table needs few passes.
    """
    table = np.asarray(table, dtype=float)
    hidden = hidden.copy()
    sensitive = hidden & (table > 0) if sensitive is None else sensitive
    if int(sensitive.sum()) > MAX_AUDITED_CELLS:
        raise Unprotectable
    for _ in range(table.size):
        narrow = [c for c, (lo, hi) in feasible_intervals(table, hidden, margins, smallest_known, sensitive).items()
                  if hi - lo < width]
        if not narrow:
            return hidden
        for i, j in narrow:
            shown = ~hidden & (table > 0)
            same_line = np.zeros_like(shown)
            same_line[i, :] = True
            same_line[:, j] = True
            pool = shown & same_line if (shown & same_line).any() else shown
            if not pool.any():
                raise Unprotectable
            smallest = min(np.argwhere(pool), key=lambda c: table[tuple(c)])
            hidden[tuple(smallest)] = True
    raise Unprotectable
