"""``fednb.dry_run`` runs what a domain runs: the function's source in a fresh namespace with ``np``,
``pd`` and ``fednb``, arguments through JSON, the result through the wire encoding and the output
check. What fails on a real domain fails in the dry run (naming the notebook variable it needed),
and on the same rows the dry run returns exactly what the domain releases."""

from __future__ import annotations

import importlib.util
import textwrap

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient

import fednb
from fednb import codec
from fednb.client.dry_run import unresolved_globals
from fednb.demo import data
from fednb.errors import InvalidInput, RequestFailed
from tests.api_support import run_approved
from tests.conftest import start_live

threshold = 60  # a notebook variable the functions below forget to take as an argument


@pytest.fixture(scope="module")
def domain(tmp_path_factory, alice_token):
    live = start_live(tmp_path_factory.mktemp("dry"), "hospital-d", data.hospital("hospital-a"), alice_token)
    fed = fednb.connect([live.url], token=alice_token)
    yield live, fed.dataset("patients")
    fed.close()
    live.server.stop()


def on_the_domain(domain, fn, args: dict | None = None):
    """Submit ``fn``, approve it as the owner, wait; the domain's part of the request."""
    return run_approved(domain, fn, args)


def test_a_notebook_variable_fails_the_dry_run_by_name_as_it_fails_on_the_domain(domain):
    @fednb.function
    def older_patients(df):
        return {"n": fednb.stat(df[df.age > threshold], "count")}

    assert older_patients(data.hospital("hospital-a")) is not None  # in the notebook it runs
    with pytest.raises(RequestFailed, match=r"reads 'threshold'.*'threshold' is a variable of your notebook.*"
                                            r"pass it as an argument, fednb.dry_run\(older_patients, data, threshold="):
        fednb.dry_run(older_patients, domain[1])
    part = on_the_domain(domain, older_patients)  # what the owner's approval would have led to
    assert part.status == "failed" and "NameError" in part.state.get("reason", ""), part.state


def test_the_trap_is_caught_on_a_path_the_mock_never_takes():
    @fednb.function
    def rare_branch(df):
        if len(df) > 10**9:  # never on a mock; perhaps on a domain's real rows
            return {"n": fednb.stat(df[df.age > threshold], "count")}
        return {"n": fednb.stat(df, "count")}

    with pytest.raises(RequestFailed, match="would raise NameError: it reads 'threshold'"):
        fednb.dry_run(rare_branch, data.hospital("hospital-a").head(200))


def test_a_helper_from_another_cell_is_named_as_a_function_to_move_inside():
    def share_of(df):
        return df.readmitted.mean()

    @fednb.function
    def rate(df):
        return {"rate": share_of(df)}

    with pytest.raises(RequestFailed, match="'share_of' is a function of your notebook.*define share_of inside rate"):
        fednb.dry_run(rate, data.hospital("hospital-a").head(200))


def test_arguments_travel_as_json_as_they_do_to_a_domain():
    source = ("def f(df, cols, cut):\n    assert isinstance(cols, list), type(cols)\n"
              "    return {'n': fednb.stat(df[df[cols[0]] > cut], 'count')}\n")
    out = fednb.dry_run(fednb.function(source), data.hospital("hospital-a").head(300), cols=("age",), cut=50)
    assert out["mock"]["n"] == int((data.hospital("hospital-a").head(300).age > 50).sum())
    with pytest.raises(InvalidInput, match="cannot be sent to a domain.*travel as JSON"):
        fednb.dry_run(fednb.function(source), data.hospital("hospital-a"), cols={"age"}, cut=50)


def _module_without_numpy(tmp_path) -> object:
    """A function defined where ``np`` was never imported, as in a notebook that did not import it."""
    path = tmp_path / "cells.py"
    path.write_text(textwrap.dedent("""
        import fednb

        def log_bmi(df):
            return {"log_bmi": fednb.stat(np.log(df.bmi).rename("log_bmi")), "n": fednb.stat(df, "count")}
    """))
    spec = importlib.util.spec_from_file_location("cells", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_np_without_an_import_runs_in_the_dry_run_as_on_the_domain(domain, tmp_path):
    live, _ = domain
    fn = _module_without_numpy(tmp_path).log_bmi
    with pytest.raises(NameError):
        fn(live.frame)  # the notebook's own function object has no np ...
    dry = fednb.dry_run(fn, live.frame)["mock"]  # ... but the submitted source gets it, as on a domain
    part = on_the_domain(domain, fednb.function(fn))
    assert part.status == "done", part.state
    released = codec.decode(part.state["result"])
    assert dry == released  # on the same rows: exactly what the domain released, rounding included
    assert released["log_bmi"] == pytest.approx(np.log(live.frame.bmi).mean(), rel=1e-3)
    assert released["n"] == len(live.frame)


def test_names_the_code_defines_or_a_domain_provides_are_not_flagged():
    source = textwrap.dedent("""
        def f(df, k=3):
            import math
            global seen
            seen = 1
            rows = [math.sqrt(v) for v in df.bmi if v > k]
            class Summary:
                size = len(rows)
                double = size * 2
            return fednb.stat(pd.Series(np.asarray(rows)), "mean"), Summary.double, seen, f
    """)
    assert unresolved_globals(source) == []
    assert unresolved_globals(source.replace("v > k", "v > cutoff")) == ["cutoff"]
    assert unresolved_globals("def f(df, t=limit):\n    return t\n") == ["limit"]  # defaults are read when defined


def test_the_trap_and_the_fix_in_a_real_notebook_kernel(tmp_path):
    cells = [
        "import fednb\nfrom fednb.demo import data\nmock = data.hospital('hospital-a').head(300)\nthreshold = 60",
        "@fednb.function\ndef older(df):\n    return {'n': fednb.stat(df[df.age > threshold], 'count')}",
        "fednb.dry_run(older, mock)",
        "@fednb.function\ndef older(df, threshold):\n    return {'n': fednb.stat(df[df.age > threshold], 'count')}",
        "print(fednb.dry_run(older, mock, threshold=threshold)['mock']['n'])",
        "@fednb.function\ndef logged(df):\n    return {'m': fednb.stat(np.log(df.bmi).rename('log_bmi'))}",  # np never imported here
        "print(round(fednb.dry_run(logged, mock)['mock']['m'], 2))",
    ]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute(
        env={"FEDNB_HOME": str(tmp_path), "LANG": "C.UTF-8"})
    trap = [o for o in nb.cells[2].outputs if o.output_type == "error"]
    assert trap and trap[0].ename == "RequestFailed", nb.cells[2].outputs
    assert "'threshold' is a variable of your notebook" in trap[0].evalue
    mock = data.hospital("hospital-a").head(300)
    assert nb.cells[4].outputs[0].text.strip() == str(int((mock.age > 60).sum()))
    expected = round(float(pd.Series(np.log(mock.bmi)).mean()), 2)
    assert float(nb.cells[6].outputs[0].text.strip()) == pytest.approx(expected, abs=0.011)
