"""Normal jobs: results, probe counts, analyst errors, concurrency, the isolation report."""

from __future__ import annotations

import threading

import pandas as pd
import pytest

from fednb.codec import decode
from fednb.domain.run.sandbox import JobSpec, Sandbox
from fednb.errors import SandboxError

GROUPBY = '''
import statistics

def mean_by(df, col):
    return df.groupby("g")[col].mean()
'''


def test_isolation_report_is_strong_here(sandbox):
    iso = sandbox.isolation
    # root on Linux with landlock 7: everything the recipe lists must have held.
    assert iso["level"] == "strong", iso["details"]
    assert iso["netns"] and iso["mountns"] and iso["pidns"] and iso["seccomp"] and iso["uid_drop"]
    assert iso["landlock_abi"] >= 6
    assert all(v != "ALLOWED" and v is not None for v in iso["probe"].values()), iso["probe"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_groupby_mean(run, domain, fmt):
    out = run(GROUPBY, entry="mean_by", args={"col": "x"}, fmt=fmt, probe=0.5)
    assert out.status == "ok", out.message
    expected = domain.frame.groupby("g")["x"].mean()
    pd.testing.assert_series_equal(decode(out.value), expected, check_dtype=False, check_index_type=False)
    assert out.probe == {"values": 4, "probe_values": 4, "rows": 5000, "probe_rows": 2500}
    assert 0 < out.start_ms < out.wall_ms
    assert out.cpu_s > 0 and out.max_rss_mb > 10


def test_probe_shows_output_growing_with_rows(run):
    out = run("def f(df):\n    return df['x'].tolist()\n", probe=0.5)
    assert out.status == "ok"
    assert out.probe["values"] == 5000 and out.probe["probe_values"] == 2500


def test_inputs_are_keyword_arguments(run):
    out = run("def f(df, a, b):\n    return a * 10 + b\n", args={"a": 1, "b": 2}, inputs={"b": 5})
    assert (out.status, out.value) == ("ok", 15)


def test_analyst_exception_names_the_line(run):
    out = run("def f(df):\n    x = 1\n    return x / 0\n")
    assert out.status == "error"
    assert out.message == "ZeroDivisionError: division by zero (line 3 of your function)"
    assert out.value is None


def test_syntax_error_and_missing_entry(run):
    out = run("def f(df):\n    return (\n")
    assert out.status == "error" and out.message.startswith("SyntaxError") and "line 2" in out.message
    out = run("def g(df):\n    return 1\n")
    assert out.status == "error" and "no function named 'f'" in out.message


def test_error_message_hides_harness_paths(run):
    out = run("def f(df):\n    return df['no such column']\n")
    assert out.status == "error" and out.message.startswith("KeyError")
    assert "/fednb/" not in out.message and "site-packages" not in out.message and "Traceback" not in out.message


def test_lazy_imports_work_after_the_uid_drop(run):
    # Modules the zygote never imported: read from the interpreter prefix under /root (0700 on the
    # host) and from the venv, as the job's uid, through the landlock allow-list.
    code = ("def f(df):\n    import fractions, statistics, sqlite3, email.mime.text, pyarrow.csv\n"
            "    import numpy.polynomial, pandas.io.formats.xml, zoneinfo\n"
            "    p = numpy.polynomial.Polynomial([1, 2])\n"
            "    return [statistics.median([1, 2, 3]), float(p(2)), str(zoneinfo.ZoneInfo('Europe/Paris'))]\n")
    out = run(code)
    assert (out.status, out.value) == ("ok", [2, 5.0, "Europe/Paris"]), out.message


def test_concurrent_jobs_from_four_threads(run, domain):
    code = "def f(df, k):\n    return float(df['y'].sum()) * k + k\n"
    total = float(domain.frame["y"].sum())
    results: dict[int, object] = {}

    def worker(t: int) -> None:
        for i in range(10):
            k = t * 100 + i
            results[k] = run(code, args={"k": k})

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 40
    for k, out in results.items():
        assert out.status == "ok", out.message
        assert out.value == pytest.approx(total * k + k)


def test_specs_outside_the_datasets_folder_are_refused(sandbox, run, domain):
    spec = run.spec("def f(df):\n    return 1\n")
    for bad in (str(domain.db), str(domain.datasets / ".." / "domain.db"), "datasets/people.csv"):
        with pytest.raises(SandboxError):
            sandbox.run(JobSpec(**{**spec.__dict__, "data_path": bad}))
    with pytest.raises(SandboxError):
        sandbox.run(JobSpec(**{**spec.__dict__, "harness": "nope"}))
    with pytest.raises(SandboxError):
        sandbox.run(JobSpec(**{**spec.__dict__, "data_format": "pickle"}))


def test_sandbox_needs_a_domain_folder(tmp_path):
    with pytest.raises(SandboxError):
        Sandbox(tmp_path / "missing")
