"""The analyst's reading of a model formula: its outcome, its columns and its terms, without formulaic.

A domain builds its design matrix with formulaic (:func:`fednb.formula.design`), but formulaic needs
scipy, which would add ~140 MB to an analyst's install only to learn which columns a formula names.
So the analyst reads the same restricted grammar (:func:`fednb.formula.check_grammar`) with
Python's own parser and expands it by the rules of Wilkinson & Rogers ("Symbolic description of
factorial models for analysis of variance", Applied Statistics 22, 1973) as formulaic does:
``a + b`` joins terms, ``a - b`` removes them, ``a:b`` interacts them, ``a*b`` is
``a + b + a:b``, ``a/b`` is ``a + a:b`` (all of ``a``'s factors with each term of ``b``), ``(a+b)**k``
holds every interaction of up to k terms; ``1`` is the intercept, present unless removed
(``- 1``, ``+ 0``). Terms are ordered by degree, then by first appearance, as formulaic orders them.
The test suite checks that this reading and :func:`fednb.formula.parse` agree.
"""

from __future__ import annotations

import ast

from fednb import formula as formulas
from fednb.errors import InvalidInput

Term = tuple[str, ...]  # a term's factors, each a column name or a call such as "C(sex)"
_INTERCEPT: Term = ()


def read(formula: str) -> formulas.Spec:
    """Read and check ``formula`` as a domain will; raises :class:`InvalidInput` saying what is wrong."""
    if not isinstance(formula, str) or not formula.strip():
        raise InvalidInput("a model formula is a string like \"readmitted ~ age + C(sex)\"")
    if len(formula) > formulas.MAX_LENGTH:
        raise InvalidInput(f"the formula is longer than {formulas.MAX_LENGTH} characters")
    formulas.check_grammar(formula)
    left, right = formula.split("~", 1)
    outcome = _outcome(left, formula)
    rhs = "1 + " + right.replace(":", "@").replace("^", "**").strip()  # the implicit intercept, removable
    tree = ast.parse(rhs, mode="eval").body  # check_grammar has parsed it already
    terms = sorted(_expand(tree), key=len)  # by degree; sorted() is stable, so then by appearance
    if len(terms) > formulas.MAX_TERMS:
        raise InvalidInput(f"the formula has {len(terms)} terms; at most {formulas.MAX_TERMS} are allowed")
    variables: dict[str, None] = {}
    categorical: set[str] = set()
    for term in terms:
        for factor in term:
            if "(" in factor:
                formulas._check_expression(factor, variables, categorical)
            else:
                variables[formulas._column_name(factor)] = None
    if outcome in variables:
        raise InvalidInput(f"the outcome {outcome!r} is also a term on the right of '~'")
    shown = tuple(term or ("1",) for term in terms)
    return formulas.Spec(formula, outcome, tuple(variables), frozenset(categorical), shown)


def _outcome(left: str, formula: str) -> str:
    if not left.strip():
        raise InvalidInput(f"the formula {formula!r} must be one outcome, '~', and terms "
                           "(e.g. \"readmitted ~ age + C(sex)\")")
    try:
        node = ast.parse(left.strip(), mode="eval").body
    except SyntaxError:
        node = None
    name = _dotted_name(node)
    if name is None:
        raise InvalidInput(f"the left of '~' in {formula!r} must be one column (the outcome)")
    return formulas._column_name(name)


def _dotted_name(node: ast.AST | None) -> str | None:
    """``a`` or ``a.b``: formulaic reads dotted names as one column."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted_name(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def _expand(node: ast.AST) -> list[Term]:
    """The terms ``node`` stands for, in order of first appearance, each once."""
    if isinstance(node, ast.Constant):
        if node.value == 1 and not isinstance(node.value, bool):
            return [_INTERCEPT]
        raise InvalidInput("numbers other than 1 (the intercept) and 0 (no intercept) cannot stand as terms")
    if isinstance(node, ast.Call):
        return [(ast.unparse(node),)]
    name = _dotted_name(node)
    if name is not None:
        return [(name,)]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
        return _expand(node.operand)
    if not isinstance(node, ast.BinOp):
        raise InvalidInput(f"{type(node).__name__} expressions are not allowed between terms")
    if isinstance(node.op, ast.Add):
        if _is_zero(node.right):
            return _without(_expand(node.left), [_INTERCEPT])
        if isinstance(node.right, ast.UnaryOp) and isinstance(node.right.op, ast.USub):
            return _without(_expand(node.left), _expand(node.right.operand))
        return _unique(_expand(node.left) + _expand(node.right))
    if isinstance(node.op, ast.Sub):
        if _is_zero(node.right):
            return _unique(_expand(node.left) + [_INTERCEPT])
        return _without(_expand(node.left), _expand(node.right))
    left = _expand(node.left)
    if isinstance(node.op, ast.Pow):
        power, result = node.right.value, left  # check_grammar allows only a whole 1..MAX_DEGREE here
        for _ in range(power - 1):
            result = _unique(result + _interactions(result, left))
        return result
    right = _expand(node.right)
    if isinstance(node.op, ast.MatMult):
        return _interactions(left, right)
    if isinstance(node.op, ast.Mult):
        return _unique(left + right + _interactions(left, right))
    if isinstance(node.op, ast.Div):
        nested = _interactions([_product(left)], right)
        return _unique(left + nested)
    raise InvalidInput("terms may be joined only by + - * / : and **")


def _is_zero(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value == 0 and not isinstance(node.value, bool)


def _product(terms: list[Term]) -> Term:
    return _unique_factors(tuple(f for term in terms for f in term))


def _interactions(left: list[Term], right: list[Term]) -> list[Term]:
    return _unique([_unique_factors(a + b) for a in left for b in right])


def _unique_factors(term: Term) -> Term:
    return tuple(dict.fromkeys(term))  # a:a is a


def _unique(terms: list[Term]) -> list[Term]:
    """Each term once, in first appearance; a:b and b:a are one term (the first spelling is kept)."""
    seen: set[frozenset[str]] = set()
    out = []
    for term in terms:
        if frozenset(term) not in seen:
            seen.add(frozenset(term))
            out.append(term)
    return out


def _without(terms: list[Term], removed: list[Term]) -> list[Term]:
    gone = {frozenset(t) for t in removed}
    return [t for t in terms if frozenset(t) not in gone]
