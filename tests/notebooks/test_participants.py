"""A class of 30 on one teacher's three domains at once: every participant, each with their own
token, gets every answer of the tour's statistics, and the same answers as everyone else."""

from __future__ import annotations

import pandas as pd
import pytest

from fednb.demo import classroom, data

STUDENTS = 30


@pytest.fixture(scope="module")
def class_of_30(workshop):
    folders = {s.path.name: s.path for s in workshop.servers}
    tokens = classroom.invite_class(folders, STUDENTS)
    urls = list(workshop.urls.values())
    classroom.preapprove(urls, tokens, folders)
    return urls, tokens


@pytest.mark.timeout(1800)  # thirty clients on two cores: bounds a hang only
def test_thirty_participants_at_once_all_get_their_results(class_of_30):
    urls, tokens = class_of_30
    seconds, reports = classroom.run_class(urls, tokens)
    assert len(reports) == STUDENTS
    truth = pd.concat([data.hospital(h) for h in data.HOSPITALS], ignore_index=True)
    first = reports[0]["answers"]
    assert first["count"] == len(truth) == 2000
    assert first["mean"] == pytest.approx(truth.age.mean(), rel=1e-12)
    assert first["crosstab"] == pd.crosstab(truth.smoker, truth.readmitted).to_numpy().tolist()
    assert first["function"] == {"hospital-a": 1200, "hospital-b": 800}  # the pre-approved function ran on both
    assert first["yield"] == pytest.approx(data.brine_batches().recovery_yield.mean(), rel=1e-12)
    assert all(r["answers"] == first for r in reports)  # everyone got the same, complete answers
    # how fast is measured in benchmarks/ (classroom), not asserted here: a loaded machine is slower
    lat = classroom.percentiles([r["seconds"] for r in reports])
    print(f"\n{STUDENTS} participants served in {seconds:.2f} s; per participant "
          + ", ".join(f"{k} {v:.2f} s" for k, v in lat.items()))


def test_percentiles_are_nearest_rank():
    assert classroom.percentiles([float(i) for i in range(1, 31)]) == {"p50": 15.0, "p90": 27.0, "p99": 30.0,
                                                                       "max": 30.0}
