"""The function a notebook cell submits: read from the cell's text, not from the kernel's objects,
so that what the owner reviews is exactly what the analyst wrote."""

from __future__ import annotations

import ast

from fednb.errors import InvalidInput
from fednb.i18n import t

MAGIC_PREFIX = "%%fednb"


def _is_fednb_function(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return ast.unparse(target) in ("fednb.function", "function")


def strip_magic(text: str) -> str:
    """The cell without a leading ``%%fednb ...`` line (the UI may submit a cell that has one)."""
    lines = text.splitlines()
    while lines and lines[0].strip().startswith(MAGIC_PREFIX):
        lines = lines[1:]
    return "\n".join(lines)


def function_source(text: str, name: str | None = None) -> tuple[str, str]:
    """(source to submit, name of the function to run) from a cell that holds only function
    definitions. ``@fednb.function`` decorators are dropped (the domain has no fednb); helpers
    defined in the same cell travel with the function."""
    text = strip_magic(text)
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise InvalidInput(t("magic.syntax", msg=exc.msg, line=exc.lineno)) from None
    lines = text.splitlines()
    defs, pieces = [], []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            kept = [d for d in node.decorator_list if not _is_fednb_function(d)]
            start = min([d.lineno for d in kept] + [node.lineno])
            pieces.append("\n".join(lines[start - 1:node.end_lineno]))
            defs.append(node.name)
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue  # a note to the reader
        else:
            raise InvalidInput(t("magic.only_defs", line=node.lineno))
    if not defs:
        raise InvalidInput(t("magic.no_function"))
    if name is None:
        if len(defs) > 1:
            raise InvalidInput(t("magic.which", names=", ".join(defs)))
        name = defs[0]
    elif name not in defs:
        raise InvalidInput(t("magic.no_such", name=name))
    return "\n\n\n".join(pieces) + "\n", name


def declared_columns(text: str, name: str) -> list[str] | None:
    """The ``columns=[...]`` of function ``name``'s ``@fednb.function(...)`` decorator in the cell, or
    None: the decorator is dropped from the source, but what it declares still goes with the request."""
    for node in ast.parse(strip_magic(text)).body:
        if not (isinstance(node, ast.FunctionDef) and node.name == name):
            continue
        for decorator in node.decorator_list:
            if isinstance(decorator, ast.Call) and _is_fednb_function(decorator):
                for keyword in decorator.keywords:
                    if keyword.arg == "columns":
                        try:
                            return ast.literal_eval(keyword.value)
                        except ValueError:
                            raise InvalidInput(t("magic.columns")) from None
    return None
