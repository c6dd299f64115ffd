"""Fixtures: a real domain folder (datasets, SQLite store, tokens) and a real Sandbox per module."""

from __future__ import annotations

import os
import sqlite3

import numpy as np
import pandas as pd
import pytest

from fednb.domain.run.sandbox import Sandbox

from .support import DB_SECRET, TOKEN_SECRET, Domain, Runner


@pytest.fixture(scope="session")
def domain(tmp_path_factory) -> Domain:
    root = tmp_path_factory.mktemp("domain")
    datasets = root / "datasets"
    datasets.mkdir()
    rng = np.random.default_rng(7)
    n = 5000
    frame = pd.DataFrame({"g": rng.choice(["a", "b", "c", "d"], n), "x": rng.normal(50, 10, n).round(3),
                          "y": rng.integers(0, 100, n), "z": rng.random(n).round(4)})
    frame.to_csv(datasets / "people.csv", index=False)
    frame.to_parquet(datasets / "people.parquet", index=False)
    frame.head(10).to_csv(datasets / "other.csv", index=False)
    db = root / "domain.db"
    con = sqlite3.connect(db)
    with con:
        con.execute("create table secrets (v text)")
        con.execute("insert into secrets values (?)", (DB_SECRET,))
    con.close()
    tokens = root / "tokens"
    tokens.write_text(TOKEN_SECRET + "\n")
    os.chmod(tokens, 0o600)
    return Domain(root, datasets, datasets / "people.csv", datasets / "people.parquet", datasets / "other.csv",
                  db, tokens, frame)


@pytest.fixture(scope="module")
def sandbox(domain):
    sb = Sandbox(domain.datasets)
    sb.start()
    yield sb
    sb.close()


@pytest.fixture(scope="module")
def run(sandbox, domain) -> Runner:
    return Runner(sandbox, domain)


@pytest.fixture
def unharmed(sandbox, run):
    """After the test: this process is fine, the same zygote still serves jobs correctly."""
    zygote = sandbox.zygote_pid
    threads = len(os.listdir("/proc/self/task"))
    yield
    out = run("def f(df):\n    return float(df['x'].sum())\n")
    assert out.status == "ok", out.message
    assert out.value == pytest.approx(float(run.domain.frame["x"].sum()))
    assert sandbox.zygote_pid == zygote, "the zygote was restarted: a job harmed it"
    assert len(os.listdir("/proc/self/task")) == threads
