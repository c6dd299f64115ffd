"""Analyst functions: the source text that is sent for review (never a pickle); dry runs on mocks are
:mod:`fednb.client.dry_run`."""

from __future__ import annotations

import ast
import copy
import inspect
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from fednb.errors import InvalidInput
from fednb.models import code_hash


class Function:
    """A function whose *source* is what a domain reviews and runs.

    Use it as a decorator (``@fednb.function``) or wrap a source string
    (``fednb.function(source, name="cohort_stats")``). Imports go inside the function body;
    ``np`` and ``pd`` are available on the domains. It receives the dataset as a pandas DataFrame
    plus the keyword arguments given at submission. Counts, sums and means leave a domain as
    ``fednb.table(...)``/``fednb.stat(...)`` values, which the domain checks row by row; other numbers
    only where the owner's policy allows unchecked output (see SECURITY.md).

    ``columns=["age", "sex"]`` declares the only columns the function reads: each domain then loads
    just those from its file (memory follows them), the owner approves them with the code, and the
    frame holds no other column (reading one fails as a ``KeyError``, in the dry run as on a domain).
    """

    def __init__(self, fn: Callable | str, *, name: str | None = None, columns: Sequence[str] | None = None):
        if isinstance(fn, str):
            self.source = textwrap.dedent(fn).strip() + "\n"
            self.name = name or _first_def(self.source)
            self._fn: Callable | None = None
        else:
            self._fn = fn
            self.name = name or fn.__name__
            self.source = source_of(fn)
        _check(self.source, self.name)
        self.columns = column_list(columns)
        self.__name__ = self.name
        self.__doc__ = getattr(self._fn, "__doc__", None)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._callable()(*args, **kwargs)

    def _callable(self) -> Callable:
        if self._fn is None:
            import numpy as np
            import pandas as pd

            import fednb

            namespace: dict[str, Any] = {"np": np, "pd": pd, "fednb": fednb}
            exec(compile(self.source, f"<fednb function {self.name}>", "exec"), namespace)
            self._fn = namespace[self.name]
        return self._fn

    def hash(self, args: dict | None = None) -> str:
        return code_hash("function", self.name, self.source, args or {}, {"columns": self.columns})

    def __repr__(self) -> str:
        return f"<fednb.function {self.name} sha256={self.hash()[:12]}>"


_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def source_of(obj: Callable | type) -> str:
    """A function's or class's own source, without decorators, dedented.

    Classes defined in a notebook have no file Python can find; their cell is then looked up in
    the kernel's line cache (the latest cell that defines that name at top level).
    """
    name = getattr(obj, "__name__", repr(obj))
    try:
        text = textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError) as exc:
        text = _from_line_cache(name)
        if text is None:
            raise InvalidInput(
                f"cannot read the source of {name!r} ({exc}); define it in a notebook cell "
                "or a file, or pass the source text to fednb.function(...)") from None
    tree = ast.parse(text)
    node = next((n for n in tree.body if isinstance(n, _DEFS) and n.name == name), None)
    if node is None:
        node = next((n for n in tree.body if isinstance(n, _DEFS)), None)
    if node is None or (name == "<lambda>"):
        raise InvalidInput(f"{obj!r} is not a plain function or class (lambdas and methods cannot be submitted)")
    lines = text.splitlines()
    return "\n".join(lines[node.lineno - 1:node.end_lineno]) + "\n"


def _from_line_cache(name: str) -> str | None:
    import linecache

    found = None
    for entry in list(linecache.cache.values()):
        lines = entry[2] if len(entry) > 2 else None
        if not lines:
            continue
        text = "".join(lines)
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, _DEFS) and node.name == name:
                found = "\n".join(text.splitlines()[node.lineno - 1:node.end_lineno]) + "\n"
    return found


def _first_def(source: str) -> str:
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise InvalidInput(f"the code does not parse: {exc.msg} (line {exc.lineno})") from None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            return node.name
    raise InvalidInput("the code defines no function")


def _check(source: str, name: str) -> None:
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise InvalidInput(f"the code does not parse: {exc.msg} (line {exc.lineno})") from None
    if not any(isinstance(n, ast.FunctionDef) and n.name == name for n in tree.body):
        raise InvalidInput(f"the code defines no top-level function {name!r}")


def column_list(columns: Sequence[str] | None) -> list[str] | None:
    """A declared column list as it is sent: names, each once, at least one (None: every column)."""
    if columns is None:
        return None
    names = [columns] if isinstance(columns, str) else list(columns)
    if isinstance(columns, str) or not all(isinstance(c, str) for c in names):
        raise InvalidInput(f"columns must be a list of column names, not {columns!r:.60}")
    if not names:
        raise InvalidInput("columns=[] would give the function no data; leave it out to read every column")
    twice = next((c for i, c in enumerate(names) if c in names[:i]), None)
    if twice is not None:
        raise InvalidInput(f"columns names {twice!r} twice; name each column once")
    return names


def named_columns(source: str, available: Sequence[str]) -> list[str]:
    """The columns of ``available`` that the source names (``df["age"]``, ``df.age``,
    ``groupby("sex")``): a suggestion for ``columns=``, in the dataset's order. A name built at
    run time is not seen, so the dry run with the declared list is what confirms it."""
    named = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            named.add(node.value)
        elif isinstance(node, ast.Attribute):
            named.add(node.attr)
    return [c for c in available if c in named]


def function(fn: Callable | str | None = None, *, name: str | None = None, columns: Sequence[str] | None = None):
    """Decorator marking a function for federated submission (see :class:`Function`)."""
    if fn is None:
        return lambda f: Function(f, name=name, columns=columns)
    if isinstance(fn, Function):
        if columns is None:
            return fn
        declared = copy.copy(fn)
        declared.columns = column_list(columns)
        return declared
    return Function(fn, name=name, columns=columns)
