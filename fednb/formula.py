"""Model formulas that every domain turns into the same design matrix.

Formulas are Wilkinson–Rogers notation (Wilkinson & Rogers 1973) read by formulaic:
``"readmitted ~ age + bmi + C(sex) + smoker"``. The analyst learns which columns a formula needs
(and which are categorical, so their levels can be agreed from the public metadata) from the same
grammar without formulaic (:mod:`fednb.formula_terms`); the domain builds its design matrix here with
those agreed levels, so every domain produces the same columns in the same order.

formulaic evaluates Python, and a formula comes from an analyst, so terms are restricted to column
names, ``C(column)``, interactions and pointwise transforms (``log``, ``exp``, ``sqrt``, arithmetic in
``I(...)``). Anything else is refused before it reaches a domain: attribute access and other calls
because they run code, and data-dependent transforms (``center``, ``scale``, ``poly``, ``bs``)
because each domain would compute them from its own rows and the designs would not match.

formulaic evaluates ``I(...)`` with Python's ``eval`` and expands ``(a+b+c)**k`` and ``a*b*c`` into
every interaction while it parses, so a short formula can hold a process for good (``I(x +
9**9**9**9)`` builds a number with billions of digits; ``(a+...+h)**8`` thousands of terms). So a
formula is first read against an explicit grammar, with Python's own parser and ``:`` read as
``@``: columns, calls of the functions above, ``+ - * / : **`` between terms, powers of terms up to
``MAX_DEGREE``, at most ``MAX_TERMS`` terms once expanded; inside a term, numbers up to
``MAX_CONSTANT`` and powers only by a constant up to ``MAX_EXPONENT`` of something that holds no
other power. The design's width is computed from the agreed levels before any matrix is built
(:func:`width`), and refused over ``MAX_COLUMNS``.
"""

from __future__ import annotations

import ast
import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fednb.errors import InvalidInput

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

MAX_LENGTH = 2000
MAX_NODES = 400  # syntax-tree nodes of the right-hand side
MAX_DEGREE = 3  # (a+b)**3: interactions up to three factors
MAX_TERMS = 200
MAX_EXPONENT = 10  # I(x**k) with |k| <= 10
MAX_CONSTANT = 1e15
MAX_COLUMNS = 500  # design-matrix columns, counted from the declared levels
_SYMBOLS = frozenset("_ .~+-*/:()^")
POINTWISE = ("log", "log1p", "log2", "log10", "exp", "sqrt", "abs")
_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)


@dataclass(frozen=True)
class Spec:
    """A checked formula: its outcome column, its predictor columns, and those used as ``C(...)``."""

    formula: str
    outcome: str
    variables: tuple[str, ...]
    categorical: frozenset[str]
    terms: tuple[tuple[str, ...], ...] = ()  # each right-hand term's factors (their expressions)


@dataclass
class Design:
    """A domain's outcome and design matrix, after dropping rows with missing values."""

    y: np.ndarray
    X: np.ndarray
    names: list[str]
    dropped: int
    frame: pd.DataFrame  # the used columns on the rows kept, categorical ones over the agreed levels


@functools.lru_cache(maxsize=64)  # every round of a fit parses the same formula twice on each domain
def parse(formula: str) -> Spec:
    """Read and check ``formula``; raises :class:`InvalidInput` saying what is not allowed."""
    from formulaic import Formula

    if not isinstance(formula, str) or not formula.strip():
        raise InvalidInput("a model formula is a string like \"readmitted ~ age + C(sex)\"")
    if len(formula) > MAX_LENGTH:
        raise InvalidInput(f"the formula is longer than {MAX_LENGTH} characters")
    check_grammar(formula)
    try:
        parsed = Formula(formula)
        lhs, rhs = parsed.lhs, parsed.rhs
        lhs_terms, rhs_terms = list(lhs), list(rhs)
        factors = [(f.expr, f.eval_method.value) for t in rhs_terms for f in t.factors]
    except Exception as exc:  # formulaic raises many types; all mean "cannot read it"
        if isinstance(exc, AttributeError):
            raise InvalidInput(f"the formula {formula!r} must be one outcome, '~', and terms "
                               "(e.g. \"readmitted ~ age + C(sex)\")") from None
        raise InvalidInput(f"cannot read the formula {formula!r}: {exc}; "
                           "write e.g. \"readmitted ~ age + C(sex)\"") from None
    outcome = [(f.expr, f.eval_method.value) for t in lhs_terms for f in t.factors]
    if len(outcome) != 1 or outcome[0][1] != "lookup":
        raise InvalidInput(f"the left of '~' in {formula!r} must be one column (the outcome)")
    variables: dict[str, None] = {}
    categorical: set[str] = set()
    for expr, method in factors:
        if method == "lookup":
            variables[_column_name(expr)] = None
        elif method == "python":
            _check_expression(expr, variables, categorical)
        elif method != "literal":
            raise InvalidInput(f"the term {expr!r} is not supported")
    name = _column_name(outcome[0][0])
    if name in variables:
        raise InvalidInput(f"the outcome {name!r} is also a term on the right of '~'")
    terms = tuple(tuple(f.expr for f in t.factors) for t in rhs_terms)
    if len(terms) > MAX_TERMS:
        raise InvalidInput(f"the formula has {len(terms)} terms; at most {MAX_TERMS} are allowed")
    return Spec(formula, name, tuple(variables), frozenset(categorical), terms)


def check_grammar(formula: str) -> None:
    """Refuse a formula outside the grammar in the module's docstring before formulaic reads it."""
    odd = sorted({c for c in formula if not (c.isalnum() or c in _SYMBOLS)})
    if odd:
        raise InvalidInput(f"the formula may not contain {''.join(odd)!r}: only column names, numbers, "
                           "spaces and ~ + - * / : ^ ( ) are allowed")
    if formula.count("~") != 1:
        raise InvalidInput(f"the formula {formula!r} must be one outcome, '~', and terms "
                           "(e.g. \"readmitted ~ age + C(sex)\")")
    rhs = formula.split("~", 1)[1].replace(":", "@").replace("^", "**")
    try:
        tree = ast.parse(rhs.strip() or "?", mode="eval").body
    except SyntaxError:
        raise InvalidInput(f"cannot read the formula {formula!r}; write e.g. \"readmitted ~ age + C(sex)\"") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise InvalidInput(f"the formula is too complex (more than {MAX_NODES} parts); fit a smaller model")
    if _term_bound(tree) > MAX_TERMS:
        raise InvalidInput(f"the formula expands to more than {MAX_TERMS} terms; use fewer interactions")


def _term_bound(node: ast.AST) -> int:
    """An upper bound on the terms ``node`` expands to, capped just over ``MAX_TERMS``."""
    cap = MAX_TERMS + 1
    if isinstance(node, (ast.Name, ast.Call, ast.Attribute, ast.Constant)):
        return 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return _term_bound(node.operand)
    if not isinstance(node, ast.BinOp):
        raise InvalidInput(f"{type(node).__name__} expressions are not allowed between terms")
    left = _term_bound(node.left)
    if isinstance(node.op, ast.Pow):
        k = node.right.value if isinstance(node.right, ast.Constant) else None
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_DEGREE:
            raise InvalidInput(f"a power of terms, (a+b)**k, needs a whole k from 1 to {MAX_DEGREE}")
        return min(sum(math.comb(left, i) for i in range(1, k + 1)), cap)  # products of up to k terms
    right = _term_bound(node.right)
    bounds = {ast.Add: left + right, ast.Sub: left + right, ast.MatMult: left * right,
              ast.Mult: left + right + left * right, ast.Div: left + left * right}
    if type(node.op) not in bounds:
        raise InvalidInput("terms may be joined only by + - * / : and **")
    return min(bounds[type(node.op)], cap)


def width(spec: Spec, levels: dict[str, list]) -> int:
    """The design matrix's columns at most, from the declared ``levels`` (a categorical factor
    counts as all its levels); refuses a design over ``MAX_COLUMNS`` before it is built."""
    total = 0  # the intercept, where there is one, is a term of its own
    for term in spec.terms:
        columns = 1
        for expr in term:
            for name in spec.categorical:
                if f"C({name})" in expr.replace(" ", ""):
                    columns *= max(len(levels.get(name) or ()), 1)
        total += columns
        if total > MAX_COLUMNS:
            raise InvalidInput(f"the design would have more than {MAX_COLUMNS} columns with these levels; "
                               "merge levels or use fewer interactions of categorical terms")
    return total


def _column_name(expr: str) -> str:
    if not expr or expr.startswith("_") or "__" in expr:
        raise InvalidInput(f"{expr!r} is not a column name a formula may use")
    return expr


def _check_expression(expr: str, variables: dict[str, None], categorical: set[str]) -> None:
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError:
        raise InvalidInput(f"cannot read the term {expr!r}") from None

    def refuse(why: str) -> InvalidInput:
        allowed = ", ".join(POINTWISE)
        return InvalidInput(f"the term {expr!r} is not allowed ({why}); terms may use columns, C(column), "
                            f"I(arithmetic), and {allowed} (also as np.log etc.)")

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            if node.id in POINTWISE or node.id in ("C", "I", "np"):
                raise refuse(f"{node.id} is a function, not a column")
            variables[_column_name(node.id)] = None
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float)) or isinstance(node.value, bool):
                raise refuse("only numbers may appear as constants")
            if abs(node.value) > MAX_CONSTANT:
                raise refuse(f"numbers may be at most {MAX_CONSTANT:g}")
        elif isinstance(node, ast.BinOp):
            if not isinstance(node.op, _ARITHMETIC):
                raise refuse("only + - * / ** are allowed")
            if isinstance(node.op, ast.Pow):
                _check_power(node, refuse)
            visit(node.left)
            visit(node.right)
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd)):
                raise refuse("only a leading minus is allowed")
            visit(node.operand)
        elif isinstance(node, ast.Call):
            fn = _function_name(node.func)
            if fn is None:
                raise refuse("that function cannot be used; data-dependent transforms such as center() or "
                             "poly() would differ between domains")
            if node.keywords or len(node.args) != 1:
                raise refuse(f"{fn}() takes exactly one argument here")
            if fn == "C":
                if not isinstance(node.args[0], ast.Name):
                    raise refuse("C() takes a column name; choose its levels with levels= in fednb.glm")
                categorical.add(_column_name(node.args[0].id))
                variables[node.args[0].id] = None
            else:
                visit(node.args[0])
        else:
            raise refuse(f"{type(node).__name__} expressions are not allowed")

    visit(tree)


def _check_power(node: ast.BinOp, refuse) -> None:
    """``base ** k``: k a number with |k| <= MAX_EXPONENT, the base free of other powers, so no
    term can build a big integer (9**9**9**9) or an overflowing chain of powers."""
    k = node.right
    if isinstance(k, ast.UnaryOp) and isinstance(k.op, (ast.USub, ast.UAdd)):
        k = k.operand
    if not (isinstance(k, ast.Constant) and isinstance(k.value, (int, float)) and not isinstance(k.value, bool)
            and abs(k.value) <= MAX_EXPONENT):
        raise refuse(f"a power's exponent must be a number from -{MAX_EXPONENT} to {MAX_EXPONENT}")
    if any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow) for n in ast.walk(node.left)):
        raise refuse("a power may not contain another power")


def _function_name(func: ast.AST) -> str | None:
    if isinstance(func, ast.Name) and func.id in (*POINTWISE, "C", "I"):
        return func.id
    if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "np"
            and func.attr in POINTWISE):
        return f"np.{func.attr}"
    return None


def _context() -> dict[str, Any]:
    """The only names a formula's Python terms can reach, besides the data's columns."""
    import numpy as np

    return {"np": np, **{name: getattr(np, "absolute" if name == "abs" else name) for name in POINTWISE}}


def design(spec: Spec, df: pd.DataFrame, levels: dict[str, list]) -> Design:
    """Outcome and design matrix of ``spec`` on ``df``, categorical columns coded over ``levels``.

    Rows with a missing value in a used column, a level outside the agreed ones, or a transform that
    is not finite (``log(0)``) are dropped and counted in ``Design.dropped``.
    """
    import numpy as np
    import pandas as pd
    from formulaic import model_matrix

    used = [spec.outcome, *spec.variables]
    for name in used:
        if name not in df.columns:
            raise InvalidInput(f"the dataset has no column {name!r}")
    data = pd.DataFrame(index=df.index)
    for name in spec.variables:
        s = df[name]
        if name in levels:
            data[name] = pd.Categorical(s.where(s.isin(levels[name])), categories=list(levels[name]))
        elif name in spec.categorical:
            raise InvalidInput(f"C({name}) needs the agreed levels of {name!r}")
        elif pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            data[name] = s.astype("float64")
        else:
            raise InvalidInput(f"column {name!r} is not numeric; use C({name}) to treat it as categorical")
    y = df[spec.outcome]
    if not (pd.api.types.is_bool_dtype(y) or pd.api.types.is_numeric_dtype(y)):
        raise InvalidInput(f"the outcome {spec.outcome!r} must be numeric or boolean")
    width(spec, levels)
    data[spec.outcome] = y.astype("float64")
    data = data[data.notna().all(axis=1)]
    if data.empty:
        return Design(np.zeros(0), np.zeros((0, 0)), [], len(df), data)
    with np.errstate(all="ignore"):
        mm = model_matrix(spec.formula, data, context=_context(), na_action="ignore")
        y_out = np.asarray(mm.lhs, dtype=float).reshape(-1)
        X = np.asarray(mm.rhs, dtype=float)
    keep = np.isfinite(y_out) & np.isfinite(X).all(axis=1)
    return Design(y_out[keep], X[keep], [str(c) for c in mm.rhs.columns], int(len(df) - keep.sum()), data[keep])
