"""Submitting from a notebook: which function a cell submits, ``%%fednb submit`` in a real kernel,
and what JupyterLab's submit dialog asks the kernel."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbclient import NotebookClient

from fednb.errors import InvalidInput
from fednb.i18n import set_language
from fednb.jupyter.cell import function_source

WIDGET = "application/vnd.jupyter.widget-view+json"


def test_a_cell_submits_its_function_without_decorators_and_with_its_helpers():
    cell = ('%%fednb submit patients\n"""Rates by group."""\n@fednb.function\ndef rate(df):\n'
            '    return helper(df)\n\ndef helper(df):\n    return df.readmitted.mean()\n')
    source, name = function_source(cell, "rate")
    assert name == "rate" and "@fednb" not in source and "%%fednb" not in source
    assert source.startswith("def rate(df):") and "def helper(df):" in source
    assert function_source("def only(df):\n    return 1\n") == ("def only(df):\n    return 1\n", "only")


@pytest.mark.parametrize("cell, message", [
    ("x = 1\ndef f(df):\n    return 1\n", "line 1: a cell to submit holds only function definitions"),
    ("import numpy\ndef f(df):\n    return 1\n", "imports go inside the function"),
    ("def f(df):\n    return 1\ndef g(df):\n    return 2\n", "the cell defines f, g; say which one with --name"),
    ("# nothing\n", "the cell defines no function to submit"),
    ("def f(df:\n", "the cell does not parse"),
])
def test_cells_that_cannot_be_submitted_say_why(cell, message):
    set_language("en")
    try:
        with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
            function_source(cell)
    finally:
        set_language(None)


def _run(cells: list[str], env_home: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    client = NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": env_home}})
    client.execute(env={"FEDNB_HOME": env_home, "LANG": "C.UTF-8"})
    return nb


def test_magic_submits_the_cell_and_shows_its_tracker(fresh_domain, tmp_path):
    setup = (f"%load_ext fednb\nimport fednb\nfed = fednb.connect([{fresh_domain.url!r}], "
             f"token={fresh_domain.token!r})")
    magic = ('%%fednb submit patients --description "mean age, by hand" --as req\n'
             "def mean_age(df):\n    return df.age.mean()\n")
    nb = _run([setup, magic, "print(req.status, mean_age.__name__)",
               "%%fednb submit patients\nprint('not a function')\n",
               "%%fednb submit\ndef f(df):\n    return 1\n",
               "%%fednb submit patients --fed nope\ndef f(df):\n    return 1\n"], str(tmp_path))
    shown = next(o["data"] for o in nb.cells[1].outputs if WIDGET in o.get("data", {}))
    # the live widget, and the request's own text and HTML for saved notebooks and exports
    assert shown["text/plain"].startswith("<FederatedRequest function:mean_age on 'patients'>")
    assert "<table" in shown["text/html"]
    assert "{'hospital-t': 'pending'} mean_age" in nb.cells[2].outputs[0]["text"]
    owner = fresh_domain.domain()
    pending = owner.requests(status="pending")
    assert [(r.name, r.description, r.kind) for r in pending] == [("mean_age", "mean age, by hand", "function")]
    assert owner.request(pending[0].id).code == "def mean_age(df):\n    return df.age.mean()\n"
    owner.close()
    # mistakes are one line each on stderr (IPython's UsageError), never a traceback
    errors = ["".join(o.get("text", "") for o in nb.cells[i].outputs) for i in (3, 4, 5)]
    assert errors[0].startswith("UsageError: fednb: line 1: a cell to submit holds only function definitions")
    assert "usage: %%fednb submit DATASET" in errors[1]
    assert "no variable 'nope' in the notebook" in errors[2]
    assert all("Traceback" not in e and e.count("\n") == 1 for e in errors), errors


def test_the_submit_dialog_and_the_ui_submission_through_the_kernel(fresh_domain, tmp_path, monkeypatch):
    """No connect in the kernel: the dialog and the submission use the default profile."""
    from fednb.client import profile

    home = tmp_path / "home"
    monkeypatch.setenv("FEDNB_HOME", str(home))
    profile.save("default", [{"url": fresh_domain.url, "token": fresh_domain.token}])
    source = "def count_smokers(df):\n    return int(df.smoker.sum())\n"
    payload = json.dumps({"source": source, "dataset": "patients", "description": "from the dialog", "name": ""})
    nb = _run([
        "from fednb.jupyter.magic import ui_options, submit_from_ui\n"
        f"ui_options({source!r})",
        f"submit_from_ui({payload!r})",
        "submit_from_ui(" + repr(json.dumps({"source": source, "dataset": "nowhere"})) + ")",
    ], str(home))
    options = nb.cells[0].outputs[0]["data"]["application/json"]
    assert options == {"datasets": [{"name": "patients", "domains": ["hospital-t"]}],
                       "functions": ["count_smokers"], "error": None}
    assert any(WIDGET in o.get("data", {}) for o in nb.cells[1].outputs)
    assert "fednb:" in nb.cells[2].outputs[0]["text"] and "nowhere" in nb.cells[2].outputs[0]["text"]
    owner = fresh_domain.domain()
    assert [r.description for r in owner.requests(status="pending")] == ["from the dialog"]
    owner.close()
