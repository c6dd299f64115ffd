"""The differencing check passes over a remembered row set without reading its bitmap only when the
sizes of their Roaring containers prove the two sets far apart; every set that may be close is
still compared exactly, also those remembered before their container sizes were kept."""

from __future__ import annotations

import numpy as np
import pytest
from pyroaring import BitMap

from fednb.demo import data
from fednb.domain import Domain
from fednb.domain.release import differencing
from fednb.domain.store import releases as release_rows
from tests.conftest import make_domain


def _set(ids) -> dict:
    return differencing.evidence(np.asarray(sorted(ids), dtype=np.int64))


def test_container_sizes_never_overstate_how_far_apart_two_sets_are():
    rng = np.random.default_rng(1)
    for _ in range(300):
        universe = int(rng.choice([1000, 70_000, 400_000]))
        a = set(rng.choice(universe, int(rng.integers(0, universe // 2)), replace=False).tolist())
        b = set(a)
        for _step in range(int(rng.integers(0, 40))):
            x = int(rng.integers(0, universe))
            (b.discard if x in b and rng.random() < 0.5 else b.add)(x)
        blobs = [BitMap.deserialize(BitMap(s).serialize()).serialize() for s in (a, b)]
        for s, blob in zip((a, b), blobs):
            header = np.frombuffer(differencing.container_sizes(blob), dtype="<u2").reshape(-1, 2)
            assert int(header[:, 1].astype(int).sum()) + len(header) == len(s)
        sizes = [differencing._sizes_by_key(differencing.container_sizes(blob)) for blob in blobs]
        assert differencing.apart_at_least(*sizes) <= len(a ^ b)
    run = BitMap(range(100_000))
    run.run_optimize()  # the header of a bitmap with run containers is read too
    assert differencing._sizes_by_key(differencing.container_sizes(run.serialize())).sum() == 100_000
    assert differencing.container_sizes(b"junk") is None


@pytest.fixture
def store(tmp_path, store_url):
    d = make_domain(tmp_path, "sizes", data.hospital("hospital-a"), store=store_url)
    yield d
    d.close()


def _count_reads(monkeypatch) -> list:
    reads = []
    real = release_rows.bitmap_of
    monkeypatch.setattr(release_rows, "bitmap_of", lambda tx, i: reads.append(i) or real(tx, i))
    return reads


def test_far_sets_of_the_same_size_are_passed_over_and_one_row_apart_is_caught(store, monkeypatch):
    rng = np.random.default_rng(2)
    earlier = set(rng.choice(400_000, 100_000, replace=False).tolist())
    others = set(rng.choice(400_000, 100_000, replace=False).tolist())  # the same size, scattered otherwise
    with store.store.transaction() as tx:
        differencing.remember(tx, "patients", "req-earlier", None, _set(earlier), cell=False)
    reads = _count_reads(monkeypatch)
    with store.store.transaction() as tx:
        assert differencing.closest(tx, "patients", _set(others), cell=False, min_cohort=10, min_cell=5) is None
        assert reads == []  # told apart by the containers' sizes alone
        # a set one row apart whose containers have the same sizes: compared bitmap to bitmap
        inside = sorted(x for x in earlier if 65_536 <= x < 131_072)
        moved = set(earlier) - {inside[0]} | {next(x for x in range(65_536, 131_072) if x not in earlier)}
        assert differencing.closest(tx, "patients", _set(moved), cell=False, min_cohort=10, min_cell=5) \
            == ("req-earlier", 10)
        assert len(reads) == 1
        fewer = set(earlier) - set(inside[:3])  # sizes differ in one container by three: still closer than 10
        assert differencing.closest(tx, "patients", _set(fewer), cell=False, min_cohort=10, min_cell=5) \
            == ("req-earlier", 10)
        assert len(reads) == 2


def test_a_store_from_before_keeps_its_sets_and_still_compares_them(store, monkeypatch):
    evens = range(0, 200_000, 2)
    with store.store.transaction() as tx:
        differencing.remember(tx, "patients", "req-old", None, _set(evens), cell=True)
        tx.execute("ALTER TABLE released_rows DROP COLUMN container_sizes")
        tx.execute("UPDATE alembic_version SET version_num = '0003'")
    folder = store.path
    store.close()
    again = Domain(folder)  # migrates to 0004: the old set has no container sizes
    try:
        with again.store.transaction() as tx:
            (sizes,) = tx.execute("SELECT container_sizes FROM released_rows").fetchone()
            assert sizes is None
        reads = _count_reads(monkeypatch)
        with again.store.transaction() as tx:
            odds = range(1, 200_001, 2)
            assert differencing.closest(tx, "patients", _set(odds), cell=True, min_cohort=10, min_cell=5) is None
            near = set(evens) - {4} | {5}
            assert differencing.closest(tx, "patients", _set(near), cell=True, min_cohort=10, min_cell=5) \
                == ("req-old", 5)
        assert len(reads) == 2  # both compared exactly: nothing to tell them apart by
    finally:
        again.close()
