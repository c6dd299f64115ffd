"""The row-set evidence of the differencing defence, built the cheap way, is the evidence built id by id.

A built-in proves which rows stand behind its release by a Roaring bitmap and its SHA-256
(:mod:`fednb.domain.release.differencing`). Inside the engine that bitmap is built from a range when
the selection is one run of rows, from Arrow arrays of ids otherwise, and per cell after a radix sort
of the cell numbers; the sums settle their magnitude rules from the largest value alone when they
can. Each shortcut must give exactly what the slow path gives: the same hash for the same set (or a
remembered release would be missed or stored twice) and the same refusal for a dominated sum. The
last test is the attack through a served domain on a table longer than one Roaring container.
"""

from __future__ import annotations

import httpx
import numpy as np
import pandas as pd
import pytest

from fednb.domain.data.engines.base import ROW_ID
from fednb.domain.data.engines.duckdb import ParquetEngine
from fednb.domain.release import differencing
from fednb.domain.release.disclosure import Blocked
from fednb.domain.review.policy import DisclosureSection
from fednb.domain.run import builtins
from fednb.domain.run.builtins.scan import Cells, Scan, evidence, magnitude_reason, magnitude_settled
from tests.api_support import ask_builtin, auth
from tests.conftest import start_live

ROWS = 200_000  # three Roaring containers of 65,536 rows and a partial fourth


def table() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    ids = np.arange(ROWS)
    return pd.DataFrame({
        "id": ids,
        "block": ids // 1000,  # runs of a thousand rows
        "sparse": rng.integers(0, 500, ROWS),  # about 400 rows per value, scattered
        "dense": rng.integers(0, 3, ROWS),  # a third of the rows, scattered (bitset containers)
        "x": rng.normal(0, 1, ROWS),
        "g": rng.choice(["a", "b", "c"], ROWS),
    })


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    df = table()
    path = tmp_path_factory.mktemp("evidence") / "data.parquet"
    df.to_parquet(path, index=False, row_group_size=30_000)
    eng = ParquetEngine(path, memory_limit="256MB", threads=2)
    yield df, eng
    eng.close()


SELECTIONS = {
    "every row": [],
    "one run inside": [{"column": "id", "op": ">=", "value": 65_000}, {"column": "id", "op": "<", "value": 140_123}],
    "one run across containers": [{"column": "id", "op": ">=", "value": 65_535}],
    "one row": [{"column": "id", "op": "==", "value": 131_072}],
    "nothing": [{"column": "id", "op": "<", "value": 0}],
    "runs with gaps": [{"column": "block", "op": "in", "value": [0, 1, 65, 66, 67, 131, 199]}],
    "all but one row": [{"column": "id", "op": "!=", "value": 65_536}],
    "scattered and sparse": [{"column": "sparse", "op": "==", "value": 17}],
    "scattered and dense": [{"column": "dense", "op": "==", "value": 1}],
}


@pytest.mark.parametrize("name", list(SELECTIONS))
def test_the_rows_of_a_selection_have_the_hash_of_its_ids_however_they_are_built(engine, name):
    df, eng = engine
    where = SELECTIONS[name]
    scan = Scan(eng, [builtins.registry.Condition(**w) for w in where])
    ids = builtins.select(df, [builtins.registry.Condition(**w) for w in where]).index.to_numpy()
    expected = differencing.evidence(ids)
    assert evidence(scan.rows()) == expected  # a range or streamed ids
    cells = Cells(1)  # the same set as one cell, from id arrays
    for piece in scan.arrays(""):
        cells.add(piece[ROW_ID], np.zeros(piece[ROW_ID].size, dtype=np.int64))
    assert evidence(cells.rows[0]) == expected
    ctx = builtins.Context(DisclosureSection(min_cohort=1, min_cell_count=1))
    if ids.size > 1:  # the built-in's own evidence: count, and a mean whose span came with its sums
        builtins.compute("count", {"where": where}, eng, ctx)
        assert ctx.evidence["rows"] == expected
        builtins.compute("mean", {"column": "x", "where": where}, eng, ctx)
        assert ctx.evidence["rows"] == expected


@pytest.mark.parametrize("cells", [3, 300, 70_000])
def test_per_cell_rows_equal_each_cells_ids_for_narrow_and_wide_cell_numbers(cells):
    rng = np.random.default_rng(cells)
    ids = np.sort(rng.choice(300_000, 150_000, replace=False))
    codes = rng.integers(0, cells, ids.size)
    built = Cells(cells)
    for start in range(0, ids.size, 40_000):  # in pieces, as the engine streams them
        built.add(ids[start:start + 40_000], codes[start:start + 40_000])
    assert built.counts.tolist() == np.bincount(codes, minlength=cells).tolist()
    for cell in rng.choice(cells, 5):
        assert evidence(built.rows[cell]) == differencing.evidence(ids[codes == cell])


def test_a_histogram_and_a_crosstab_remember_the_sets_the_id_by_id_path_gives(engine):
    df, eng = engine
    ctx = builtins.Context(DisclosureSection(), {"g": ["a", "b", "c"]})
    builtins.compute("histogram", {"column": "block", "bins": [0, 50, 100, 150, 200]}, eng, ctx)
    assert ctx.evidence["rows"] == differencing.evidence(df.index.to_numpy())
    cuts = np.searchsorted([0, 50, 100, 150, 200], df["block"], side="right")
    assert ctx.evidence["cells"] == [differencing.evidence(df.index[cuts == c]) for c in (1, 2, 3, 4)]
    ctx = builtins.Context(DisclosureSection(), {"g": ["a", "b", "c"]})
    builtins.compute("crosstab", {"row": "g", "col": "g"}, eng, ctx)
    diagonal = [differencing.evidence(df.index[df["g"] == level]) for level in "abc"]
    assert ctx.evidence["cells"] == diagonal


def test_a_sum_settled_by_its_largest_value_passes_the_exact_rules():
    """Whenever the largest value alone settles the rules, the rules on all values agree; and
    every dominated sum still reaches the exact rules (it is never settled)."""
    rng = np.random.default_rng(5)
    rules = DisclosureSection()
    settled = 0
    for trial in range(20_000):
        size = int(rng.integers(1, 12))
        scale = rng.choice([1.0, 10.0, 1e3, 1e9])
        values = np.abs(rng.choice([0.0, 1.0, 2.0, 3.0, 0.1], size) * rng.random(size) ** int(trial % 4) * scale)
        if trial % 5 == 0:
            values[0] = values.sum() * rng.choice([0.5, 1.0, 4.0])  # near the dominance and p% edges
        total, tops = float(values.sum()), np.sort(values)[::-1]
        if magnitude_settled(size, total, float(tops[0]), rules):
            settled += 1
            assert magnitude_reason(size, total, tops[: max(rules.safe_nk_n, 2)].tolist(), rules) is None
    assert settled > 1000  # the shortcut is taken, so this test checks something


@pytest.mark.parametrize("values", [[1.0] * 50 + [1e9], [1.0] * 50 + [4e3, 5e3], [-1.0] * 40 + [1000.0]])
def test_a_dominated_mean_is_still_refused(values):
    frame = pd.DataFrame({"v": values})
    with pytest.raises(Blocked, match="dominance rule|p% rule"):
        builtins.compute("mean", {"column": "v"}, frame, builtins.Context(DisclosureSection()))


def test_a_differencing_attack_across_roaring_containers_is_blocked(tmp_path, alice_token):
    """The first release's rows are one run (a range, nothing streamed); the second drops the first
    row of the second container (streamed ids). Their difference is one person: blocked. The same
    set again through a histogram's cells is known, not a new release."""
    live = start_live(tmp_path, "long", table(), alice_token)
    try:
        with httpx.Client(base_url=live.url, headers=auth(alice_token), timeout=120) as client:
            def ask(name: str, **args) -> dict:
                return ask_builtin(client, name, **args)

            first = ask("count")
            assert first["status"] == "done", first
            assert first["result"]["n"] == ROWS
            second = ask("sum", column="x", where=[{"column": "id", "op": "!=", "value": 65_536}])
            assert second["status"] == "blocked", second
            assert "differencing attack" in second["reason"] and first["id"] in second["reason"]
            third = ask("mean", column="x", where=[{"column": "id", "op": ">=", "value": 3}])  # a run, 3 rows short
            assert third["status"] == "blocked", third
            assert "differencing attack" in third["reason"]
            again = ask("histogram", column="block", bins=[0, 100, 200])
            assert again["status"] == "done", again
    finally:
        live.server.stop()
