"""``%%fednb submit``: send the function a cell defines for review, and follow it under the cell.

::

    %load_ext fednb

    %%fednb submit patients --description "readmission rate by smoking and diabetes"
    def readmission_by_risk(df):
        return fednb.table(df, by=["smoker", "diabetes"], value="readmitted", agg="mean")

Options: ``--fed VARIABLE`` (default: the last ``fednb.connect`` result, else the default profile),
``--name FUNCTION`` (when the cell defines several), ``--as VARIABLE`` (keep the request).
JupyterLab's "Submit to federation…" calls :func:`submit_from_ui`, which does the same.
"""

from __future__ import annotations

import argparse
import json
import shlex
from typing import Any

from fednb.errors import FednbError, InvalidInput
from fednb.i18n import t
from fednb.jupyter.cell import declared_columns, function_source, strip_magic


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # never sys.exit in a kernel
        raise InvalidInput(f"{message}; {t('magic.usage')}")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="%%fednb", add_help=False)
    p.add_argument("action", choices=["submit"])
    p.add_argument("dataset")
    p.add_argument("--description", "-d", default="")
    p.add_argument("--fed", default=None)
    p.add_argument("--name", default=None)
    p.add_argument("--as", dest="target", default=None)
    return p


def federation(user_ns: dict, variable: str | None = None):
    """The federation to submit over: ``variable``'s, else the last connected, else the default profile's."""
    from fednb.client import federation as fmod
    from fednb.client import profile

    if variable:
        if variable not in user_ns:
            raise InvalidInput(t("magic.no_var", var=variable))
        fed = user_ns[variable]
        if not isinstance(fed, fmod.Federation):
            raise InvalidInput(t("magic.not_fed", var=variable))
        return fed
    if fmod.last_connected is not None:
        return fmod.last_connected
    if profile.load_all().get(profile.DEFAULT, {}).get("domains"):
        return fmod.connect(profile=profile.DEFAULT)
    raise InvalidInput(t("magic.no_fed"))


def submit(cell: str, dataset: str, *, description: str = "", user_ns: dict | None = None, fed: str | None = None,
           name: str | None = None, target: str | None = None):
    """Submit the cell's function on ``dataset``; display and return the request."""
    from IPython.display import display

    from fednb.client.functions import function

    user_ns = user_ns if user_ns is not None else {}
    source, entry = function_source(cell, name)
    federated = federation(user_ns, fed)
    columns = declared_columns(cell, entry)
    request = federated.dataset(dataset).submit(function(source, name=entry, columns=columns), description=description)
    exec(compile(source, f"<fednb cell {entry}>", "exec"), user_ns)  # defined here too, for dry runs
    if target:
        user_ns[target] = request
    display(request)
    return request


def _shell_ns() -> dict:
    from IPython import get_ipython

    shell = get_ipython()
    return shell.user_ns if shell is not None else {}


def fednb_magic(line: str, cell: str) -> None:
    from IPython.core.error import UsageError

    try:
        args = _parser().parse_args(shlex.split(line))
        submit(cell, args.dataset, description=args.description, user_ns=_shell_ns(), fed=args.fed,
               name=args.name, target=args.target)
    except (FednbError, ValueError) as exc:
        raise UsageError(t("magic.error", message=exc)) from None


def submit_from_ui(payload: str) -> None:
    """What JupyterLab's "Submit to federation…" runs in the kernel, its output under the cell.
    ``payload``: JSON {"source", "dataset", "description", "name"}."""
    data = json.loads(payload)
    try:
        submit(data["source"], data["dataset"], description=data.get("description", ""), user_ns=_shell_ns(),
               name=data.get("name") or None)
    except (FednbError, ValueError) as exc:
        import sys

        print(t("magic.error", message=exc), file=sys.stderr)


class _Json:
    """Shown to JupyterLab as application/json (through ``user_expressions``)."""

    def __init__(self, data: Any):
        self.data = data

    def _repr_json_(self) -> Any:
        return self.data

    def __repr__(self) -> str:
        return json.dumps(self.data)


def ui_options(source: str) -> _Json:
    """For the submit dialog: the datasets of the federation a submission would use, and the
    functions the cell defines (or why there are none)."""
    import warnings

    out: dict[str, Any] = {"datasets": [], "functions": [], "error": None}
    try:
        import ast

        tree = ast.parse(strip_magic(source))
        out["functions"] = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    except SyntaxError as exc:
        out["error"] = t("magic.syntax", msg=exc.msg, line=exc.lineno)
        return _Json(out)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fed = federation(_shell_ns())
            catalog = fed.catalog()
    except (FednbError, ValueError) as exc:
        out["error"] = str(exc)
        return _Json(out)
    names: dict[str, list[str]] = {}
    for domain, listing in catalog.items():
        for ds in listing:
            names.setdefault(ds["name"], []).append(domain)
    out["datasets"] = [{"name": n, "domains": d} for n, d in sorted(names.items())]
    return _Json(out)


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magic_function(fednb_magic, magic_kind="cell", magic_name="fednb")
