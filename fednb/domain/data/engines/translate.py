"""Turning a built-in's DuckDB-dialect SQL into the SQL another store runs, safely.

The built-ins speak one dialect over a relation named ``data`` (see :mod:`.base`). A store that is
not DuckDB gets the same query translated by sqlglot (https://github.com/tobymao/sqlglot), with
``data`` replaced by the owner's table. The translation is also a gate: only one read-only
``SELECT`` passes, it may read no table but ``data`` (and its own ``WITH`` names), and analyst
values stay positional parameters, numbered as the store wants them, never pasted into the text.
The store's read-only role and read-only transaction are the next two walls behind this one.
"""

from __future__ import annotations

import functools
import re

import sqlglot
from sqlglot import exp

from fednb.domain.data.engines.base import EngineError

DATA = "data"
#: where the translated query reads ``data``; the engine puts its own relation (the owner's table with
#: its row ids) in its place
SOURCE = "__fednb_source__"
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# Nodes that write, change the schema, or reach outside the query; none belongs in a built-in.
FORBIDDEN = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter,
             exp.Command, exp.Copy, exp.Into, exp.TruncateTable, exp.Set, exp.Transaction)


def table_name(text: str) -> list[str]:
    """The owner's ``--table``: ``table`` or ``schema.table`` (``catalog.schema.table`` for Spark),
    plain identifiers only, so that the name can never carry SQL of its own."""
    parts = text.split(".") if isinstance(text, str) else []
    if not 1 <= len(parts) <= 3 or not all(IDENTIFIER.match(p) for p in parts):
        raise EngineError(f"table name {text!r} must be TABLE or SCHEMA.TABLE, each part letters, digits "
                          "or '_' starting with a letter or '_'")
    return parts


@functools.lru_cache(maxsize=512)  # the rounds of a fit send the same few queries many times
def translate(sql: str, dialect: str, numbered: bool, booleans: frozenset[str] = frozenset()) -> str:
    """``sql`` (DuckDB, ``FROM data``, ``?`` parameters) in ``dialect``, reading the quoted name
    :data:`SOURCE` where it read ``data``; with ``numbered``, parameters become ``$1, $2, ...``
    (PostgreSQL's own placeholders). ``booleans``: the table's boolean columns (PostgreSQL casts
    them to numbers only through an integer)."""
    try:
        tree = sqlglot.parse(sql, read="duckdb")
    except sqlglot.errors.ParseError:
        raise EngineError("the built-in's query could not be read") from None
    if len(tree) != 1 or not isinstance(tree[0], exp.Query):
        raise EngineError("only a single SELECT may run against the owner's table")
    query = tree[0]
    if any(query.find_all(*FORBIDDEN)):
        raise EngineError("only a single SELECT may run against the owner's table")
    own = {cte.alias_or_name for cte in query.find_all(exp.CTE)}
    for found in query.find_all(exp.Table):
        if found.name == DATA and not found.db and not found.catalog:
            continue
        if found.name in own and not found.db:
            continue
        raise EngineError("a built-in may read only its dataset's table")
    if any(query.find_all(exp.Anonymous)) and _table_functions(query):
        raise EngineError("a built-in may read only its dataset's table")
    counter = iter(range(1, 10**6))

    def number(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and node.name == DATA and not node.db and DATA not in own:
            target = exp.table_(SOURCE, quoted=True)
            return exp.alias_(target, DATA, table=True) if not node.alias else target.as_(node.alias, table=True)
        if isinstance(node, exp.Placeholder):
            if node.name and node.name != "?":
                raise EngineError("a built-in's parameters are positional '?'")
            i = next(counter)  # numbered or named, a parameter may appear twice once the dialect is fixed
            return exp.Parameter(this=exp.Literal.number(i)) if numbered else exp.Placeholder(this=f"p{i}")
        return node

    query = query.transform(number)
    query = query.transform(lambda node: _dialect_fix(node, dialect, booleans))
    return query.transform(lambda node: _top_values(node, dialect)).sql(dialect=dialect)


def _top_values(node: exp.Expression, dialect: str) -> exp.Expression:
    """DuckDB's ``max(x, n)``: the n largest values as a list, missing values left out (after the
    other fixes, since ``x`` is copied as text)."""
    if isinstance(node, (exp.Max, exp.Min)) and node.args.get("count") is not None:
        x, n = node.this.sql(dialect), node.args["count"].sql(dialect)
        order = "DESC" if isinstance(node, exp.Max) else "ASC"
        if dialect == "postgres":
            text = f"(ARRAY_AGG({x} ORDER BY {x} {order}) FILTER (WHERE {x} IS NOT NULL))[1:{n}]"
        else:
            text = f"SLICE(SORT_ARRAY(COLLECT_LIST({x}), {'FALSE' if order == 'DESC' else 'TRUE'}), 1, {n})"
        return sqlglot.parse_one(text, read=dialect)
    return node


def _dialect_fix(node: exp.Expression, dialect: str, booleans: frozenset[str]) -> exp.Expression:
    """What PostgreSQL spells differently, or lacks, that sqlglot leaves alone."""
    if (dialect == "postgres" and isinstance(node, exp.Cast) and isinstance(node.this, exp.Column)
            and node.this.name in booleans and node.to.this != exp.DataType.Type.BOOLEAN):
        return exp.cast(exp.cast(node.this, "int"), node.to)
    if dialect == "postgres" and isinstance(node, exp.IsNan):  # no isnan in PostgreSQL: NaN equals NaN there
        return exp.paren(exp.EQ(this=node.this, expression=exp.cast(exp.Literal.string("NaN"), "double")))
    return node


def _table_functions(query: exp.Expression) -> bool:
    """A function in FROM (``read_csv('...')``, ``dblink(...)``) would read something else."""
    for source in query.find_all(exp.From, exp.Join):
        if isinstance(source.this, (exp.Anonymous, exp.TableFromRows)) or source.this.find(exp.Anonymous):
            return True
    return False
