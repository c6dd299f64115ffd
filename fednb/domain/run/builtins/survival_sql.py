"""Kaplan–Meier and log-rank tables from the dataset's engine, out of core.

The tables are counts of events and censorings per interval of the analyst's grid and per group
(:mod:`fednb.domain.run.builtins.survival`). Here the engine selects the rows, checks the event
column's values and codes each row's group over the public levels (levels as ``?`` parameters),
and streams duration, event and group in pieces (:meth:`Scan.stream`); each piece's counts are
added up with the same NumPy binning as the in-memory path (:func:`survival.counted`), so memory
stays one piece whatever the table's length and the released numbers are the same integers.

Where the columns are not what the table needs (a missing or non-numeric column, a grouping column
without public levels or with levels of another type), the in-memory path runs and reports it as it
always did. Cox regression's sums are computed in the engine by :mod:`.cox_sql`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fednb.domain.data.engines import sql
from fednb.domain.release import disclosure
from fednb.domain.run.builtins import survival
from fednb.domain.run.builtins.design_sql import FINITE, same_kind
from fednb.domain.run.builtins.registry import Context, register, used_columns
from fednb.domain.run.builtins.scan import Scan
from fednb.errors import InvalidInput
from fednb.locale import N_


def _readable(a: survival.KaplanMeierArgs, scan: Scan, public: list | None) -> bool:
    """Whether the engine path can answer: the columns exist, with the kinds the table needs."""
    columns = scan.schema.columns
    names = [a.duration, a.event, *([a.by] if a.by is not None else [])]
    if any(n not in columns for n in names) or not sql.is_numeric(columns[a.event]):
        return False
    if a.by is not None and (public is None or len(public) > survival.MAX_GROUPS
                             or not same_kind(columns[a.by], list(public))):
        return False
    return True


def survival_table_in_engine(a: survival.KaplanMeierArgs, scan: Scan, ctx: Context) -> dict[str, Any]:
    public = ctx.levels.get(a.by) if a.by is not None else None
    if not _readable(a, scan, public):
        return survival.survival_table(a, scan.frame(used_columns(a, scan.schema.columns)), ctx)
    schema = scan.schema
    if schema.columns[a.duration].upper() == "BOOLEAN" or not sql.is_numeric(schema.columns[a.duration]):
        raise survival.duration_error(a.duration)
    event = schema.numeric(a.event)
    if schema.columns[a.event].upper() != "BOOLEAN":
        odd = scan.one(f"count(*) FILTER (WHERE {event} <> 0 AND {event} <> 1)", extra=schema.present(a.event))[0]
        if int(odd):
            raise survival.event_error(a.event)
    t = schema.numeric(a.duration)
    present = [schema.present(a.duration), schema.present(a.event), f"abs({t}) <= {FINITE}"]
    codes, params = "0", []
    if a.by is not None:
        present.append(schema.present(a.by))
        ident = schema.column(a.by)
        whens = " ".join(f"WHEN {ident} = ? THEN {i}" for i in range(len(public)))
        codes, params = (f"CASE {whens} ELSE {len(public)} END" if public else "0"), list(public)
    size = 1 if a.by is None else len(public) + 1
    grid = np.asarray(a.time_grid, dtype=float)
    rows = np.zeros(size, dtype=np.int64)
    events = np.zeros((size, len(grid)), dtype=np.int64)
    censored = np.zeros((size, len(grid)), dtype=np.int64)
    lowest = np.inf
    for piece in scan.stream(f"{t} AS t, {event} AS e, {codes} AS g", params, extra=" AND ".join(present)):
        durations, ended = piece["t"].to_numpy(dtype=float), piece["e"].to_numpy(dtype=float) > 0
        group = piece["g"].to_numpy(dtype=np.int64)
        lowest = min(lowest, float(durations.min())) if durations.size else lowest
        for g in np.unique(group):
            mask = group == g
            rows[g] += int(mask.sum())
            got_events, got_censored = survival.counted(durations[mask], ended[mask], grid)
            events[g] += got_events
            censored[g] += got_censored
    disclosure.check_cohort(int(rows.sum()), ctx.rules, N_("the rows with a duration and an event"))
    if lowest < 0:
        raise InvalidInput(N_("the duration column {duration!r} has negative values").format(duration=a.duration))
    levels = ["all"] if a.by is None else [*public, "(other)"]
    # "(other)", the rows of no public level, is shown only when it has rows (as in memory)
    counted = [(level, int(rows[g]), events[g], censored[g]) for g, level in enumerate(levels)
               if a.by is None or g < len(public) or rows[g] > 0]
    return survival.release_groups(a, ctx, counted)


register("kaplan_meier", survival.KaplanMeierArgs, survival_table_in_engine, sql=True)
register("logrank", survival.LogrankArgs, survival_table_in_engine, sql=True)
