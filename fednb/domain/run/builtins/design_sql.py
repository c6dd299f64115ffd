"""A GLM's design matrix as SQL column expressions over ``data``, so the engine computes it row by row.

:func:`fednb.formula.design` builds the matrix in memory with formulaic; here each of its columns
becomes one SQL expression the engine evaluates while it streams the table (DuckDB's out-of-core
scan, PostgreSQL's or Spark's own), so memory does not grow with the rows. Which columns a formula
has, in which order and with which coding of categorical terms (full or reduced rank, Wilkinson &
Rogers 1973, as formulaic decides it from the terms present) is read from formulaic itself, on a
one-row frame carrying the agreed levels; the column names built here must equal formulaic's, or
the formula is left to the in-memory path.

Every value that comes from the analyst (a level of ``C(x)``, a number inside ``I(...)``) is a ``?``
parameter; column names are quoted from the dataset's schema. A row is kept exactly when the
in-memory path keeps it: every used column present, each categorical value among the agreed public
levels, and every design column finite. Operations that would fail in SQL where NumPy gives an
infinity or NaN (``log(0)``, ``sqrt(-1)``, ``x / 0``, ``0 ** -1``) give NULL instead, which drops
the row as NumPy's non-finite value does.

Not translated (the in-memory path runs, :func:`compile_design` returns None): ``log1p`` (DuckDB has
no exact one), a power of a constant base, a categorical column inside arithmetic, level values of
another kind than their column, and columns of types other than numbers, booleans and text.
"""

from __future__ import annotations

import ast
import functools
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from fednb import formula as formulas
from fednb.domain.data.engines import sql

#: typed constants: PostgreSQL reads ``1.0`` as NUMERIC, whose sums come back as decimals
ONE, ZERO = "CAST(1 AS DOUBLE)", "CAST(0 AS DOUBLE)"
#: the largest finite double: ``abs(x) <= FINITE`` is false for NaN, the infinities and NULL alike
FINITE = "1.7976931348623157e308"
#: exp(x) is finite for x up to log(DBL_MAX); above it NumPy gives inf (and PostgreSQL an error)
EXP_LIMIT = "709.782712893384"
#: exp(x) rounds to 0 below log(2**-1075); PostgreSQL reports that underflow as an error, NumPy gives 0
EXP_UNDERFLOW = "-745.1332191019412"
# log2 and log10 as ratios of ln: sqlglot writes them LOG(b, x), which PostgreSQL has only for NUMERIC
# (SQL of the function of {a}, the domain where NumPy's result is finite, None: everywhere)
_FUNCTIONS = {"log": ("ln({a})", "> 0"), "log2": ("(ln({a}) / ln(2))", "> 0"),
              "log10": ("(ln({a}) / ln(10))", "> 0"), "sqrt": ("sqrt({a})", ">= 0"),
              "exp": (f"(CASE WHEN {{a}} < {EXP_UNDERFLOW} THEN {ZERO} ELSE exp({{a}}) END)", f"<= {EXP_LIMIT}"),
              "abs": ("abs({a})", None)}


@dataclass(frozen=True)
class Expr:
    """SQL text with ``?`` placeholders and their values, in the order the placeholders appear."""

    text: str
    params: tuple = ()


def fill(template: str, **parts: Expr) -> Expr:
    """``template`` with ``{name}`` replaced by each part's text; parameters follow the text's order,
    so a part used twice brings its values twice."""
    params: list[Any] = []

    def put(match: re.Match) -> str:
        part = parts[match.group(1)]
        params.extend(part.params)
        return part.text

    text = re.sub(r"\{(\w+)\}", put, template)
    return Expr(text, tuple(params))


@dataclass
class SqlDesign:
    """The design's columns and outcome as expressions over ``data``, and the test a row must pass."""

    names: list[str]
    columns: list[Expr]
    outcome: Expr
    present: Expr  # used columns present (those the finite design needs no test for), categorical values public
    categorical: dict[str, str] = field(default_factory=dict)  # column -> its quoted identifier
    binary: list[bool] = field(default_factory=list)  # per column: 0/1 by construction (intercept, dummies)
    kept_levels: dict[str, list] = field(default_factory=dict)  # categorical column -> the levels its rows may have


class Untranslatable(Exception):
    """The formula uses something this module does not turn into SQL."""


def compile_design(spec: formulas.Spec, schema: sql.Schema, asked: dict[str, list],
                   public: dict[str, list]) -> SqlDesign | None:
    """The SQL design of ``spec`` over ``schema`` with categorical columns coded over ``asked``
    levels (rows outside ``public`` ones dropped), or None where the in-memory path must run (it
    also gives the errors of bad formulas, named as they always were)."""
    try:
        return _compile(spec, schema, asked, public)
    except Untranslatable:
        return None


def _compile(spec: formulas.Spec, schema: sql.Schema, asked: dict[str, list], public: dict[str, list]) -> SqlDesign:
    levels = {name: list(asked[name]) for name in spec.variables if name in asked}
    for name in [spec.outcome, *spec.variables]:
        if name not in schema.columns or (name not in levels and not sql.is_numeric(schema.columns[name])):
            raise Untranslatable(name)
    for name, values in levels.items():
        if name not in public or not same_kind(schema.columns[name], values):
            raise Untranslatable(name)
    if set(spec.categorical) - set(levels):
        raise Untranslatable("a categorical term without levels")
    names: list[str] = []
    columns: list[Expr] = []
    binary: list[bool] = []
    for scoped_terms, expected in _structure(spec.formula, json.dumps(levels, sort_keys=True, default=str)):
        term_names = []
        for factors in scoped_terms:
            parts = [_factor(expr, reduced, spec, schema, levels) for expr, reduced in factors]
            # formulaic's order: the first factor varies fastest
            for combination in itertools.product(*reversed(parts)):
                chosen = list(reversed(combination))
                term_names.append(":".join(n for n, _, _ in chosen) or "Intercept")
                columns.append(_product([e for _, e, _ in chosen]))
                binary.append(all(indicator for _, _, indicator in chosen))
        if term_names != list(expected):
            raise Untranslatable("column names differ from formulaic's")
        names += term_names
    # a column that is itself a design column (or the outcome) is kept only where finite, which it is
    # not where missing (``abs(NULL)`` and ``abs(NaN) <= FINITE`` are not true): no test of its own
    plain = {c.text for c in columns}
    tests = [Expr(schema.present(name)) for name in spec.variables
             if name not in levels and name != spec.outcome and schema.numeric(name) not in plain]
    kept_levels = {}
    for name, values in levels.items():
        allowed = kept_levels[name] = [v for v in values if v in public[name]]
        ident = schema.column(name)
        tests.append(Expr(f"coalesce({ident} IN ({', '.join('?' for _ in allowed)}), false)", tuple(allowed))
                     if allowed else Expr("false"))
    present = Expr(" AND ".join(t.text for t in tests) or "true", tuple(p for t in tests for p in t.params))
    return SqlDesign(names, columns, Expr(schema.numeric(spec.outcome)), present,
                     {name: schema.column(name) for name in levels}, binary, kept_levels)


def same_kind(sql_type: str, values: list) -> bool:
    """Levels compare with their column as pandas' ``isin`` does only when they are of its kind."""
    if sql_type.upper() == "BOOLEAN":
        return all(isinstance(v, bool) for v in values)
    if sql.is_numeric(sql_type):
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if sql.is_text(sql_type):
        return all(isinstance(v, str) for v in values)
    return False


@functools.lru_cache(maxsize=64)  # every round of a fit asks for the same design
def _structure(formula: str, levels_json: str) -> tuple:
    """formulaic's terms for ``formula`` with these levels, from a one-row frame: per term, its
    scoped terms (each a tuple of factors: expression, reduced coding) and the term's column names."""
    import pandas as pd
    from formulaic import model_matrix

    levels = json.loads(levels_json)
    spec = formulas.parse(formula)
    frame = {spec.outcome: [1.0]}
    for name in spec.variables:
        frame[name] = pd.Categorical(levels[name][:1], categories=levels[name]) if name in levels else [1.0]
    try:
        rhs = model_matrix(formula, pd.DataFrame(frame), na_action="ignore", context=formulas._context()).rhs
        structure = rhs.model_spec.structure
    except Exception as exc:  # formulaic raises many kinds; the in-memory path reports them
        raise Untranslatable(str(exc)) from None
    return tuple((tuple(tuple((str(f.factor.expr), bool(f.reduced)) for f in scoped.factors)
                        for scoped in scoped_terms), tuple(columns))
                  for _term, scoped_terms, columns in structure)


def _factor(expr: str, reduced: bool, spec: formulas.Spec, schema: sql.Schema,
            levels: dict[str, list]) -> list[tuple[str, Expr, bool]]:
    """(column name, SQL, whether it is a 0/1 indicator) for each column one factor contributes to a term."""
    try:
        node = ast.parse(expr, mode="eval").body
    except SyntaxError:
        raise Untranslatable(expr) from None
    name = None
    if isinstance(node, ast.Name) and node.id in levels:
        name = node.id
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "C"
          and len(node.args) == 1 and isinstance(node.args[0], ast.Name) and node.args[0].id in levels):
        name = node.args[0].id
    if name is not None:
        ident = schema.column(name)
        coded = levels[name][1:] if reduced else levels[name]
        label = "T." if reduced else ""
        return [(f"{expr}[{label}{level}]", Expr(f"CASE WHEN {ident} = ? THEN {ONE} ELSE {ZERO} END", (level,)), True)
                for level in coded]
    if reduced:
        raise Untranslatable(expr)
    return [(expr, _numeric(node, spec, schema, levels), False)]


def _product(parts: list[Expr]) -> Expr:
    if not parts:
        return Expr(ONE)
    if len(parts) == 1:
        return parts[0]
    return Expr("(" + " * ".join(p.text for p in parts) + ")", tuple(v for p in parts for v in p.params))


def _numeric(node: ast.AST, spec: formulas.Spec, schema: sql.Schema, levels: dict[str, list]) -> Expr:
    """A factor's arithmetic as SQL: NULL where NumPy would give a non-finite value by a domain error."""
    if isinstance(node, ast.Name):
        if node.id not in spec.variables or node.id in levels:
            raise Untranslatable(node.id)
        return Expr(schema.numeric(node.id))
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return Expr("CAST(? AS DOUBLE)", (float(node.value),))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _numeric(node.operand, spec, schema, levels)
        return fill("(- {a})", a=inner) if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Pow) and not _has_column(node.left, spec):
            raise Untranslatable("a power of a constant")  # Python's own arithmetic (complex numbers...)
        a = _numeric(node.left, spec, schema, levels)
        b = _numeric(node.right, spec, schema, levels)
        if isinstance(node.op, ast.Add):
            return fill("({a} + {b})", a=a, b=b)
        if isinstance(node.op, ast.Sub):
            return fill("({a} - {b})", a=a, b=b)
        if isinstance(node.op, ast.Mult):
            return fill("({a} * {b})", a=a, b=b)
        if isinstance(node.op, ast.Div):
            return fill("({a} / NULLIF({b}, 0))", a=a, b=b)
        if isinstance(node.op, ast.Pow):
            return fill("CASE WHEN {a} < 0 AND {b} <> floor({b}) THEN NULL WHEN {a} = 0 AND {b} < 0 THEN NULL "
                        "ELSE power({a}, {b}) END", a=a, b=b)
    if isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords:
        fn = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
        inner = _numeric(node.args[0], spec, schema, levels)
        if fn == "I":
            return inner
        if fn in _FUNCTIONS:
            template, domain = _FUNCTIONS[fn]
            return fill(template if domain is None else f"CASE WHEN {{a}} {domain} THEN {template} END", a=inner)
    raise Untranslatable(ast.dump(node)[:80])


def _has_column(node: ast.AST, spec: formulas.Spec) -> bool:
    return any(isinstance(n, ast.Name) and n.id in spec.variables for n in ast.walk(node))
