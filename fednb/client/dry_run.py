"""A dry run of an analyst function on the mocks that runs what a domain runs, as a domain runs it.

A domain never sees the notebook: it receives the function's source text (the text that is
hashed and approved) and runs it in a fresh namespace holding ``np``, ``pd`` and ``fednb``
(:mod:`fednb.domain.run.sandbox.harnesses.function`), with the keyword arguments as they arrive
over the wire, as JSON. So the dry run does the same: it compiles :attr:`Function.source`, never the
notebook's function object, in that namespace; sends the arguments through JSON; encodes the
result as a release would; and runs the domain's output check with the default rules. A function
that reads a notebook variable fails here, naming the variable, instead of on every domain after
its owners approved it; one that uses ``np`` without importing it works here, as it does there.
What can still differ is the data (the mock is synthetic) and the domain's own policy and limits.
"""

from __future__ import annotations

import builtins
import dis
import json
import linecache
import sys
import types
import warnings
from typing import Any

from fednb import codec, results
from fednb.client.functions import Function, function, named_columns
from fednb.errors import InvalidInput, RequestFailed

CODE_NAME = "<analysis>"  # the file name a domain compiles analyst code under (sandbox harness)
PROVIDED = ("np", "pd", "fednb")  # the names a domain puts in the function's namespace
_warned_without_checks = False


def dry_run(fn: Any, data: Any, **args: Any) -> DryRun:
    """Run ``fn``'s source on each domain's mock, locally, exactly as a domain would; returns {domain: result}.

    Raises :class:`fednb.RequestFailed` (naming the mock's domain) where a domain's run would fail
    before any data matters: the code reads a name it does not define (a notebook variable, a
    helper from another cell) or the arguments cannot travel as JSON. The result goes through the
    wire encoding, so a value that could not be released fails here first (``codec.EncodeError``).
    Numbers a domain could not check (outside ``fednb.table``/``fednb.stat``) raise a warning, and
    where the domain side is installed (``fednb[domain]``), so does what the domain's output check
    (cohorts, cells, dominance, free text, differencing within the result) would block on the mock,
    with the reason a domain would give; a result that passes comes back as the domain would
    release it. The mock is synthetic, so this predicts refusals that come from the code's shape
    (groups too fine, a row dominating, text that holds rows), not those that depend on the real counts.
    A function that declared its columns gets only those, as on a domain; one that did not gets a
    suggestion of the columns its source names (:class:`DryRun`).
    """
    f = function(fn)
    notebook = _surroundings(f, sys._getframe(1).f_globals)
    frames = _declared_columns(f, _mock_frames(data))
    first = next(iter(frames))
    sent = _as_sent(args, first)
    _refuse_undefined_names(f, notebook, first)
    out = DryRun()
    if f.columns is None:
        available = list(next(iter(frames.values())).columns)
        named = named_columns(f.source, available)
        out.suggested_columns = named if named and len(named) < len(available) else None
    for domain, frame in frames.items():
        entry = _compile(f)
        try:
            value = entry(frame, **sent)
        except NameError as exc:
            raise RequestFailed(domain, _undefined_message(f, exc.name or "", notebook, ran=True)) from None
        encoded = codec.encode(value)
        out[domain] = codec.decode(_checked(encoded, frame, domain))
    return out


def _surroundings(f: Function, caller: dict[str, Any]) -> dict[str, Any]:
    """The names the function could see where it was written (the notebook's, enclosing functions'),
    none of which a domain has: used only to say what a missing name was."""
    names = dict(caller)
    fn = getattr(f, "_fn", None)
    if fn is not None:
        names.update(getattr(fn, "__globals__", {}))
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
            try:
                names[name] = cell.cell_contents
            except ValueError:  # a cell not yet filled
                pass
    return names


def _mock_frames(data: Any) -> dict[str, Any]:
    """Each domain's mock rows, indexed by row position as a domain's own rows are."""
    mock = data.mock if hasattr(data, "mock") else data
    if "domain" in getattr(mock, "columns", ()):
        return {name: part.drop(columns="domain").reset_index(drop=True)
                for name, part in mock.groupby("domain", sort=False)}
    return {"mock": mock.reset_index(drop=True)}


class DryRun(dict):
    """``{domain: result}`` of a dry run. When the function declared no columns, ``suggested_columns``
    lists those its source names (a suggestion for ``columns=``, shown under the results in a
    notebook; a warning would read as a refusal the domain would make, and this is none)."""

    suggested_columns: list[str] | None = None

    def hint(self) -> str:
        return "" if not self.suggested_columns else (
            f"# the function gets every column; its source names {self.suggested_columns}: declare them, "
            f"fednb.function(columns={self.suggested_columns!r}) or submit(..., columns=...), so each domain "
            "loads only those, and dry-run again to check that nothing else is read")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython's text view
        printer.pretty(dict(self))
        if self.hint():
            printer.break_()
            printer.text(self.hint())


def _declared_columns(f: Function, frames: dict[str, Any]) -> dict[str, Any]:
    """The mocks as a domain gives them: only the declared columns, in their order."""
    if f.columns is None:
        return frames
    for domain, frame in frames.items():
        missing = [c for c in f.columns if c not in frame.columns]
        if missing:
            import difflib

            close = difflib.get_close_matches(missing[0], list(frame.columns), n=1, cutoff=0.75)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RequestFailed(domain, f"dry run on the mock: columns names {missing[0]!r}, which the dataset does "
                                        f"not have{hint}")
    return {domain: frame[list(f.columns)] for domain, frame in frames.items()}


def _as_sent(args: dict[str, Any], domain: str) -> dict[str, Any]:
    """The keyword arguments as a domain receives them: through JSON (tuples arrive as lists)."""
    for name, value in args.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"the argument {name}={value!r:.60} cannot be sent to a domain ({exc}); arguments "
                               "travel as JSON: numbers, strings, booleans, None, lists and dicts of them") from None
    return json.loads(json.dumps(args))


def _compile(f: Function):
    """The function defined by ``f.source`` in a domain's namespace: ``np``, ``pd``, ``fednb`` and builtins."""
    import numpy as np
    import pandas as pd

    import fednb

    lines = f.source.splitlines(keepends=True)
    linecache.cache[CODE_NAME] = (len(f.source), None, lines, CODE_NAME)  # tracebacks show the submitted lines
    namespace = {"__name__": "analysis", "__builtins__": builtins, "np": np, "pd": pd, "fednb": fednb}
    exec(compile(f.source, CODE_NAME, "exec"), namespace)
    return namespace[f.name]


def _refuse_undefined_names(f: Function, notebook: dict[str, Any], domain: str) -> None:
    """Fail as a domain would on a global name the source neither defines nor is given, read on any path."""
    missing = unresolved_globals(f.source)
    if missing:
        raise RequestFailed(domain, _undefined_message(f, missing[0], notebook, ran=False, others=missing[1:]))


def unresolved_globals(source: str) -> list[str]:
    """Names the code reads from its module namespace that neither it nor a domain defines there."""
    module = compile(source, CODE_NAME, "exec")
    defined = set(PROVIDED) | set(dir(builtins)) | {"__name__", "__builtins__"}
    read: dict[str, None] = {}

    def visit(code: types.CodeType, in_module: bool) -> None:
        local = {i.argval for i in dis.get_instructions(code) if i.opname in ("STORE_NAME", "IMPORT_NAME")}
        for i in dis.get_instructions(code):
            if i.opname in ("STORE_GLOBAL", "DELETE_GLOBAL") or (in_module and i.opname == "STORE_NAME"):
                defined.add(i.argval)
            elif i.opname == "LOAD_GLOBAL" or (i.opname == "LOAD_NAME" and i.argval not in local):
                read[i.argval] = None
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                visit(const, False)

    visit(module, True)
    return [name for name in read if name not in defined]


def _undefined_message(f: Function, name: str, notebook: dict[str, Any], *, ran: bool,
                       others: list[str] | tuple[str, ...] = ()) -> str:
    what = "raised NameError" if ran else "would raise NameError"
    text = f"dry run on the mock: {f.name} {what}: it reads {name!r}, which its source does not define"
    if others:
        text += f" (nor {', '.join(repr(o) for o in others)})"
    if name in notebook:
        kind = "function" if callable(notebook[name]) else "variable"
        text += (f". {name!r} is a {kind} of your notebook, and a domain runs only the function's source "
                 f"(with np, pd and fednb), never the notebook's names: ")
        text += (f"define {name} inside {f.name}" if kind == "function" else
                 f"pass it as an argument, fednb.dry_run({f.name}, data, {name}=...) and "
                 f"submit(..., args={{{name!r}: ...}}), or set it inside {f.name}")
    else:
        text += "; a domain provides only np, pd, fednb and Python's builtins: import or define it inside the function"
    return text


def _checked(encoded: Any, frame: Any, domain: str) -> Any:
    """``encoded`` as a domain with the default rules would release it; warns where it would block."""
    loose = results.unchecked_numbers(encoded)
    if loose:
        warnings.warn(f"{domain}: the result holds {loose} number(s) outside fednb.table/fednb.stat; a domain "
                      "blocks it unless its policy allows unchecked output", stacklevel=3)
        return encoded
    try:
        from fednb.domain.release.disclosure import Blocked
        from fednb.domain.release.output_check import OutputChecker
        from fednb.domain.review.policy import DisclosureSection
    except ImportError:  # an analyst's install without the domain side
        _warn_without_checks()
        return encoded
    try:
        released, _ = OutputChecker(DisclosureSection(), frame).check(encoded)
    except Blocked as exc:
        warnings.warn(f"{domain}: on the mock, a domain with the default rules would block this: {exc}", stacklevel=3)
        return encoded
    return released


def _warn_without_checks() -> None:
    global _warned_without_checks
    if not _warned_without_checks:
        _warned_without_checks = True
        warnings.warn("the dry run ran the code and the wire encoding, but not the domain's output check, which "
                      "comes with the domain side: pip install 'fednb[domain]' to see what a domain would block",
                      stacklevel=4)
