"""Declared columns at the sandbox's own level: the function and training harnesses hold only those
columns, in the declared order; the forked reader leaves no process behind and no descriptor open."""

from __future__ import annotations

import dataclasses

import pytest

from .support import descendants

COLUMNS_AND_FDS = """
def f(df):
    import os

    def is_open(fd):
        try:
            os.fstat(fd)
            return True
        except OSError:
            return False

    return {"columns": list(df.columns), "sum": float(df["x"].sum()), "fds": [fd for fd in range(256) if is_open(fd)]}
"""


def _declared(run, code: str, columns: list[str] | None, **kw):
    return dataclasses.replace(run.spec(code, fmt="parquet", **kw), columns=columns)


def test_the_function_gets_the_declared_columns_in_their_order(sandbox, run, domain):
    out = sandbox.run(_declared(run, COLUMNS_AND_FDS, ["x", "g"]))
    assert out.status == "ok", out.message
    assert out.value["columns"] == ["x", "g"]
    assert out.value["sum"] == pytest.approx(float(domain.frame["x"].sum()))
    every = sandbox.run(_declared(run, COLUMNS_AND_FDS, None))
    assert every.value["columns"] == list(domain.frame.columns)
    assert out.value["fds"] == every.value["fds"]  # the reader's memfd is closed before analyst code
    assert descendants(sandbox.zygote_pid) == set()  # the reader was reaped with the job


def test_a_column_the_file_lacks_stops_the_job_before_analyst_code(sandbox, run):
    out = sandbox.run(_declared(run, "def f(df):\n    return 1\n", ["x", "nope"]))
    assert out.status != "ok" and out.value is None
    assert "nope" in out.message, out.message
    assert descendants(sandbox.zygote_pid) == set()


TRAINING = """
class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Linear(1, 1)

def train(model, df, **config):
    assert list(df.columns) == ["z", "x"], list(df.columns)
    return {"columns": len(df.columns)}
"""


def test_a_training_worker_gets_the_declared_columns(sandbox, run):
    pytest.importorskip("torch")
    from safetensors.torch import save

    from fednb.domain.run.sandbox import Limits

    spec = dataclasses.replace(run.spec(TRAINING, entry="train", args={"model": "Tiny"}, fmt="parquet"),
                               harness="training", columns=["z", "x"],
                               limits=Limits(cpu_seconds=30, wall_seconds=60, memory_mb=2048))
    import torch

    blob = save({"w.weight": torch.zeros(1, 1), "w.bias": torch.zeros(1)})
    with sandbox.session(spec) as session:
        out = session.call({"round": 1}, blob)
        assert out.status == "ok", out.message
        assert out.value["metrics"] == {"columns": 2}
