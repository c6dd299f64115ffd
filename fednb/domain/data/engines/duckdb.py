"""DuckDB over the dataset's Parquet file: the domain's embedded engine.

Why DuckDB: it scans Parquet column by column and out of core (Raasveldt & Mühleisen, "DuckDB: an
embeddable analytical database", SIGMOD 2019), so a built-in over fifty million rows reads only the
columns it names and stays under ``[engine] memory_limit`` by spilling to a folder inside the domain,
where pandas would hold the whole table in memory.

:mod:`fednb.domain.data.engines.factory` picks this engine or another store's from the dataset
folder's ``source.json``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fednb.domain.data.engines.base import ROW_ID, Engine, EngineError
from fednb.domain.data.engines.sql import quote

DATA_FILE = "data.parquet"
SPILL_FOLDER = ".engine-spill"  # inside the domain folder: private rows never reach the system's /tmp
BATCH_ROWS = 1 << 20


def _literal(text: str) -> str:
    """A SQL string literal (for the file path of a view, which cannot be a parameter)."""
    return "'" + text.replace("'", "''") + "'"


class DuckDBEngine(Engine):
    """A DuckDB connection in which ``data`` is one dataset's rows plus their row ids."""

    dialect = "duckdb"

    def __init__(self, *, memory_limit: str = "1GB", threads: int = 2, spill_directory: Path | None = None,
                 readable: Sequence[Path] = ()):
        import duckdb

        config: dict[str, Any] = {"memory_limit": memory_limit, "threads": int(threads),
                                  "autoinstall_known_extensions": False, "autoload_known_extensions": False}
        if spill_directory is not None:
            Path(spill_directory).mkdir(mode=0o700, parents=True, exist_ok=True)
            config["temp_directory"] = str(spill_directory)
        self._con = duckdb.connect(":memory:", config=config)
        self._columns: dict[str, str] | None = None
        self._define()
        # no other file may be opened: a compiled query that went wrong cannot read /etc/passwd
        self._con.execute("SET allowed_paths = ?", [[str(p) for p in readable]])
        if spill_directory is not None:
            self._con.execute("SET allowed_directories = ?", [[str(spill_directory)]])
        self._con.execute("SET enable_external_access = false")
        self._con.execute("SET lock_configuration = true")

    def _define(self) -> None:
        raise NotImplementedError

    def _run(self, sql: str, params: Sequence[Any]):
        import duckdb

        try:
            return self._con.execute(sql, list(params))
        except duckdb.OutOfMemoryException as exc:
            raise MemoryError(str(exc)) from None
        except duckdb.Error as exc:
            raise EngineError(f"the domain's engine could not run this query ({type(exc).__name__}); check that "
                              "each filter value has its column's type") from None

    def query(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        return self._run(sql, params).df()

    def arrow_batches(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Any]:
        """The result as Arrow record batches in row order: their columns reach NumPy without a copy
        (a pandas frame per batch costs more than the scan when only row ids come out)."""
        import pyarrow as pa

        reader = self._run(sql, params).to_arrow_reader(BATCH_ROWS)
        while True:
            try:  # DuckDB's errors while streaming reach here as Arrow's
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except (pa.ArrowException, OSError) as exc:
                if "out of memory" in str(exc).lower():
                    raise MemoryError(str(exc).splitlines()[0]) from None
                raise EngineError(f"the domain's engine stopped while reading ({type(exc).__name__})") from None
            yield batch

    def batches(self, sql: str, params: Sequence[Any] = ()) -> Iterator[pd.DataFrame]:
        for batch in self.arrow_batches(sql, params):
            # One thread: a worker under its memory cap cannot reserve new thread stacks, and a
            # batch converts fast enough alone.
            yield batch.to_pandas(use_threads=False)

    def columns(self) -> dict[str, str]:
        if self._columns is None:
            described = self._run("DESCRIBE data", ()).fetchall()
            self._columns = {str(row[0]): str(row[1]) for row in described if row[0] != ROW_ID}
        return dict(self._columns)

    def row_count(self) -> int:
        return int(self._run("SELECT count(*) FROM data", ()).fetchone()[0])

    def sample(self, n: int, seed: int) -> pd.DataFrame:
        names = ", ".join(quote(c) for c in self.columns())
        return self.query(f"SELECT {names} FROM data USING SAMPLE reservoir({int(n)} ROWS) REPEATABLE ({int(seed) % 2**31})")

    def frame(self, columns: Sequence[str] | None = None, limit: int | None = None) -> pd.DataFrame:
        """Rows in file order; the index is the row id (as ``pd.read_parquet`` numbers them)."""
        known = self.columns()
        wanted = list(known) if columns is None else [c for c in columns if c in known]
        names = ", ".join([ROW_ID, *(quote(c) for c in wanted)])
        sql = f"SELECT {names} FROM data ORDER BY {ROW_ID}" + (f" LIMIT {int(limit)}" if limit is not None else "")
        table = self._run(sql, ()).to_arrow_table()
        df = table.to_pandas()
        df.index = pd.Index(df.pop(ROW_ID).to_numpy(), name=None)
        return df

    def close(self) -> None:
        self._con.close()


class ParquetEngine(DuckDBEngine):
    """A dataset's ``data.parquet``, read column by column and out of core."""

    def __init__(self, path: Path, **settings: Any):
        self.path = Path(path)
        super().__init__(readable=[self.path], **settings)

    def _define(self) -> None:
        self._con.execute(f"CREATE VIEW data AS SELECT * EXCLUDE (file_row_number), file_row_number AS {ROW_ID}"
                          f" FROM read_parquet({_literal(str(self.path))}, file_row_number = true)")

    def _footer(self) -> Any:
        """The file's Parquet metadata (row count, each row group's column statistics), read again only
        when the file is another (a dataset replaced under an open engine: its mtime, size or inode)."""
        import pyarrow.parquet as pq

        st = self.path.stat()
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if getattr(self, "_footer_of", None) != key:
            self._metadata, self._footer_of = pq.ParquetFile(self.path).metadata, key
        return self._metadata

    def numbered_rows(self) -> int | None:
        return int(self._footer().num_rows)  # file_row_number: 0..N-1 in file order

    def largest_magnitude(self, column: str) -> float | None:
        """max(|min|, |max|) over the row groups' statistics of ``column`` (the Parquet writer leaves
        NaN out of them, and NaN rows are never summed); None when a row group has none."""
        meta = self._footer()
        largest = 0.0
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            stats = next((group.column(j).statistics for j in range(group.num_columns)
                          if group.column(j).path_in_schema == column), None)
            if stats is None or not stats.has_min_max:
                return None
            try:
                ends = abs(float(stats.min)), abs(float(stats.max))
            except (TypeError, ValueError):
                return None
            if math.isnan(ends[0]) or math.isnan(ends[1]):
                return None  # a writer that kept NaN in its statistics: they bound nothing
            largest = max(largest, *ends)
        return largest


class FrameEngine(DuckDBEngine):
    """A pandas frame already in memory (its index labels are the row ids): the same SQL built-ins
    over rows that never were a file, for tests and small in-memory tables."""

    def __init__(self, frame: pd.DataFrame, **settings: Any):
        index = frame.index
        ids = index.to_numpy() if pd.api.types.is_integer_dtype(index) else range(len(frame))
        self._frame = frame.assign(**{ROW_ID: ids})
        super().__init__(**settings)

    def _define(self) -> None:
        self._con.register("fednb_frame", self._frame)
        self._con.execute("CREATE VIEW data AS SELECT * FROM fednb_frame")


def parquet_engine(folder: Path, source: dict[str, Any], settings: Any) -> Engine:
    return ParquetEngine(folder / DATA_FILE, memory_limit=settings.memory_limit, threads=settings.threads,
                         spill_directory=folder.parent.parent / SPILL_FOLDER)
