"""The contract every engine keeps, whatever store it runs on.

Why SQL in one dialect: the disclosure checks, the audit and the approval stay in the domain and
see the same aggregates whichever store answered; only the place where the scan happens changes.
Engines for other stores translate DuckDB's dialect to theirs (``sqlglot.transpile``) and put
their own table where the query says ``data``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # the contract names pandas; importing it (for EngineError, say) loads nothing heavy
    import pandas as pd

#: A column every engine adds to ``data``: the row's position in the dataset (0, 1, ...), stable from
#: query to query. The differencing defence (:mod:`fednb.domain.release.differencing`) remembers the
#: set of row ids behind each release; ``columns()`` does not list it.
ROW_ID = "__fednb_row"
#: The file in a dataset folder that names its engine and table (absent for a file kept in the domain).
SOURCE_FILE = "source.json"


def memory_bytes(text: str) -> int:
    """``"1GB"``, ``"512MiB"`` -> bytes (the units DuckDB's ``memory_limit`` takes)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*", text)
    if not m:
        raise ValueError(f"{text!r} is not a memory size like \"1GB\" or \"512MiB\"")
    scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}[m.group(2)]
    return int(float(m.group(1)) * scale)


class EngineError(Exception):
    """A store failed or refused a query; the message is safe to show the analyst (no rows, no
    credentials, no traceback)."""


class Engine(ABC):
    """One dataset's rows, wherever they live. Results are aggregates: small frames."""

    #: the sqlglot name of the SQL dialect the store speaks ("duckdb", "postgres", "spark")
    dialect: ClassVar[str]

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """Run ``sql`` (DuckDB's dialect, ``FROM data``, positional ``?`` parameters: analyst values
        are always parameters, never pasted into the text) and return its result."""

    def batches(self, sql: str, params: Sequence[Any] = ()) -> Iterator[pd.DataFrame]:
        """The result of ``sql`` in pieces of bounded size, for results as long as the table (the row
        ids behind a release); an engine that can stream overrides this."""
        yield self.query(sql, params)

    @abstractmethod
    def columns(self) -> dict[str, str]:
        """Column name -> the store's type name, in the table's order."""

    @abstractmethod
    def row_count(self) -> int:
        """The exact number of rows (private: never shown unrounded)."""

    def numbered_rows(self) -> int | None:
        """N when the rows are an unchanging file's, their ids 0..N-1, so a selection of N rows is
        every row and its ids need no query; None where the table can change between two queries
        (a database's)."""
        return None

    def largest_magnitude(self, column: str) -> float | None:
        """An upper bound on |value| over the whole table, from statistics the file itself keeps, or
        None: a bound over every row also bounds any selection's values, at no pass over the rows."""
        return None

    @abstractmethod
    def sample(self, n: int, seed: int) -> pd.DataFrame:
        """About ``n`` rows drawn at random (for building mocks without loading the whole table)."""

    @abstractmethod
    def frame(self, columns: Sequence[str] | None = None, limit: int | None = None) -> pd.DataFrame:
        """Rows as pandas, only ``columns`` and at most ``limit`` rows (for custom code and for the
        built-ins that still compute in pandas on the filtered columns)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; an engine is not used after this."""
