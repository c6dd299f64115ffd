"""The registry of built-in aggregates: their argument models and the code that computes them.

Built-ins are fednb's own code, so they run without the sandbox, but their arguments are the
analyst's: they are bounded here (filters, a model's design width) and evaluated in a worker process
under CPU, memory and wall-clock limits (:mod:`fednb.domain.run.workers`), through the same
disclosure checks as custom code. A built-in is one function
``fn(args, df, ctx) -> dict`` registered with its pydantic argument model; it raises
:class:`fednb.domain.release.disclosure.Blocked` to refuse a release.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fednb.domain.release import differencing
from fednb.domain.review.policy import DisclosureSection
from fednb.errors import InvalidInput

Scalar = bool | int | float | str | None
Op = Literal["==", "!=", "<", "<=", ">", ">=", "in", "not in"]


MAX_NAME = 200  # characters of a column name
MAX_TEXT = 1000  # characters of a compared value
MAX_VALUES = 1000  # values of an ``in`` list


class Condition(BaseModel):
    """One filter condition, bounded so that evaluating it is linear in the rows."""

    model_config = ConfigDict(extra="forbid")
    column: str = Field(max_length=MAX_NAME)
    op: Op
    value: Scalar | list[Scalar]

    @field_validator("value")
    @classmethod
    def _bounded(cls, v):
        values = v if isinstance(v, list) else [v]
        if len(values) > MAX_VALUES:
            raise ValueError(f"at most {MAX_VALUES} values")
        if any(isinstance(x, str) and len(x) > MAX_TEXT for x in values):
            raise ValueError(f"text values are at most {MAX_TEXT} characters")
        return v


class Noise(BaseModel):
    """Ask for a differentially private release (see :mod:`fednb.domain.release.noisy`)."""

    model_config = ConfigDict(extra="forbid")
    epsilon: float | None = Field(None, gt=0, le=100, description="Spent by this release; default: the policy's.")
    mechanism: Literal["laplace", "gaussian"] = "laplace"
    delta: float | None = Field(None, gt=0, lt=1, description="Gaussian only; default: 1% of your delta budget.")


class Args(BaseModel):
    """Every built-in takes ``where``: rows matching all conditions (structured, never ``eval``);
    ``privacy`` asks for noise, ``secure`` for release only inside a secure sum over domains."""

    model_config = ConfigDict(extra="forbid")
    where: list[Condition] = Field(default_factory=list, max_length=20)
    privacy: Noise | None = None
    secure: bool = False


@dataclass
class Context:
    """What a built-in may know besides the data (the disclosure rules, the public levels), and the
    ``evidence`` it leaves for the releasing transaction: JSON-able, bytes as base64 strings, so it
    can cross a process boundary. ``evidence["rows"]`` is the row set behind the result, which the
    differencing defence (:mod:`fednb.domain.release.differencing`) checks and remembers."""

    rules: DisclosureSection
    levels: dict[str, list] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)

    def rows_used(self, index: pd.Index) -> None:
        """Record the rows (the frame's index labels: the dataset's row positions) behind the result."""
        self.evidence["rows"] = differencing.evidence(np.asarray(index, dtype=np.int64))


@dataclass(frozen=True)
class Builtin:
    name: str
    args: type[Args]
    fn: Callable[[Any, pd.DataFrame, Context], dict[str, Any]]
    # An iterative built-in (a GLM's IRLS) is approved once for its static arguments and round
    # budget; each round is then a job whose inputs (validated by this model) join the arguments.
    round_inputs: type[BaseModel] | None = None
    # True: ``fn`` takes a :class:`~fednb.domain.run.builtins.scan.Scan` and computes in the engine's
    # SQL; False: it takes the selected rows of the columns it names, as a pandas frame
    sql: bool = False


REGISTRY: dict[str, Builtin] = {}


def increasing(values: list[float], what: str) -> list[float]:
    """Bins and time grids: finite and strictly increasing, or a ValueError naming ``what``."""
    if any(not np.isfinite(x) for x in values) or any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"{what} must be finite and strictly increasing")
    return values


def register(name: str, args: type[Args], fn: Callable[[Any, Any, Context], dict[str, Any]], *,
             round_inputs: type[BaseModel] | None = None, sql: bool = False) -> None:
    REGISTRY[name] = Builtin(name, args, fn, round_inputs, sql)


def iterative(name: str) -> bool:
    return name in REGISTRY and REGISTRY[name].round_inputs is not None


def validate_round_inputs(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    try:
        return REGISTRY[name].round_inputs.model_validate(inputs).model_dump(exclude_none=True)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'inputs'}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"bad round inputs for {name}: {problems}") from None


def validate_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Check a built-in's arguments when it is submitted; returns them normalised."""
    if name not in REGISTRY:
        raise InvalidInput(f"unknown built-in {name!r}; built-ins are {sorted(REGISTRY)}")
    try:
        parsed = REGISTRY[name].args.model_validate(args)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'args'}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"bad arguments for {name}: {problems}") from None
    check_design(parsed)
    return parsed.model_dump(exclude_defaults=True)


def check_design(parsed: Any) -> None:
    """A model's design width, from its formula and declared levels, before any data is touched."""
    text = getattr(parsed, "formula", None)
    if isinstance(text, str):
        from fednb import formula

        formula.width(formula.parse(text), getattr(parsed, "levels", None) or {})


def column(df: pd.DataFrame, name: str) -> pd.Series:
    if name not in df.columns:
        raise InvalidInput(f"the dataset has no column {name!r}")
    return df[name]


def numeric(df: pd.DataFrame, name: str):
    """A column's non-missing values as floats (booleans as 0/1); refuses a non-numeric column."""
    s = column(df, name)
    if pd.api.types.is_bool_dtype(s):
        s = s.astype("float")
    if not pd.api.types.is_numeric_dtype(s):
        raise InvalidInput(f"column {name!r} is not numeric")
    return s.dropna().to_numpy(dtype=float)


_OPS = {
    "==": lambda s, v: s == v, "!=": lambda s, v: s != v, "<": lambda s, v: s < v,
    "<=": lambda s, v: s <= v, ">": lambda s, v: s > v, ">=": lambda s, v: s >= v,
    "in": lambda s, v: s.isin(v if isinstance(v, list) else [v]),
    "not in": lambda s, v: ~s.isin(v if isinstance(v, list) else [v]),
}


def select(df: pd.DataFrame, where: list[Condition]) -> pd.DataFrame:
    """Rows matching every condition. Structured, never ``eval``: no code runs from a filter."""
    mask = pd.Series(True, index=df.index)
    for cond in where:
        try:
            mask &= _OPS[cond.op](column(df, cond.column), cond.value).fillna(False).astype(bool)
        except TypeError:
            raise InvalidInput(f"cannot compare column {cond.column!r} with {cond.value!r}") from None
    return df[mask]


def compute(name: str, args: dict[str, Any], source: Any, ctx: Context,
            inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run built-in ``name`` on the private rows, an :class:`~fednb.domain.data.engines.Engine` (or a
    DataFrame, seen through DuckDB), with a round's ``inputs``; raises ``Blocked`` or :class:`InvalidInput`."""
    if name not in REGISTRY:
        raise InvalidInput(f"unknown built-in {name!r}")
    builtin = REGISTRY[name]
    parsed = builtin.args.model_validate({**args, **(inputs or {})})
    if isinstance(source, pd.DataFrame):
        if not builtin.sql:
            return builtin.fn(parsed, select(source, parsed.where), ctx)
        from fednb.domain.data.engines.duckdb import FrameEngine

        engine = FrameEngine(source)
        try:
            return compute(name, args, engine, ctx, inputs)
        finally:
            engine.close()
    from fednb.domain.run.builtins.scan import Scan

    scan = Scan(source, parsed.where, ctx.levels)
    if builtin.sql:
        return builtin.fn(parsed, scan, ctx)
    return builtin.fn(parsed, scan.frame(used_columns(parsed, scan.schema.columns)), ctx)


def used_columns(parsed: BaseModel, known: Any) -> list[str]:
    """The columns a built-in's arguments name (its formula's too): the only ones read for it."""
    names: list[str] = []
    for key, value in parsed:
        if key in ("where", "privacy", "levels", "beta"):
            continue
        if key == "formula" and isinstance(value, str):
            from fednb import formula

            spec = formula.parse(value)
            names += [spec.outcome, *spec.variables]
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and v in known:
                names.append(v)
    return list(dict.fromkeys(names))
