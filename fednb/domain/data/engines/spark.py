"""A dataset that lives in the owner's Spark cluster (a lakehouse table): built-ins run as Spark SQL there.

The built-in's DuckDB SQL is translated by sqlglot to Spark SQL and run with ``spark.sql(query,
args={...})``: the analyst's values travel as Spark's own named parameters, never in the text,
and only the aggregated result comes back (Spark plans the scan and the partial aggregates on its
executors). The master is the owner's: ``local[N]`` (Spark inside the domain's process, for one big
machine), ``spark://HOST:PORT`` (a standalone cluster) or ``sc://HOST:PORT`` (Spark Connect, where
the domain holds only a thin gRPC client). The table is a catalog name (``db.table``) or, for a
Parquet folder, Spark's own ``parquet.`/path``` form.

Errors name Spark's error class, never its message: a failed cast quotes the value it failed on,
which is a row of the owner's data. A query longer than the timeout is stopped (:func:`_interrupt`).
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import pandas as pd

from fednb.domain.data.engines.base import ROW_ID, Engine, EngineError
from fednb.domain.data.engines.translate import SOURCE, table_name, translate

PATH_TABLE = re.compile(r"^(parquet|orc|delta)\.`(/[^`]+)`$")
# Spark's type names in DuckDB's vocabulary, which the built-ins' compiler reads
DUCKDB_TYPES = {"bigint": "BIGINT", "int": "INTEGER", "smallint": "SMALLINT", "tinyint": "TINYINT",
                "double": "DOUBLE", "float": "FLOAT", "string": "VARCHAR", "boolean": "BOOLEAN",
                "date": "DATE", "timestamp": "TIMESTAMP WITH TIME ZONE", "timestamp_ntz": "TIMESTAMP"}


def session(master: str):
    """One SparkSession per process, made on first use (starting Spark takes seconds)."""
    import logging

    from pyspark.sql import SparkSession

    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)  # it quotes rows
    if master.startswith("sc://"):
        return SparkSession.builder.remote(master).getOrCreate()
    spark = (SparkSession.builder.master(master).appName("fednb-domain")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             # a local master's shuffles: a few partitions, not a cluster's 200 (each a task per query)
             .config("spark.sql.shuffle.partitions", "4")
             # results reach Python over a local socket; a busy machine must not cut it (broken pipe)
             .config("spark.python.authenticate.socketTimeout", "300s")
             .getOrCreate())
    spark.sparkContext.setLogLevel("OFF")  # its messages quote rows; the domain keeps the error class
    return spark


class SparkEngine(Engine):
    """One table in the owner's Spark, reached through ``master``."""

    dialect = "spark"

    def __init__(self, master: str, table: str, *, timeout_seconds: float = 20.0):
        self._master = master
        path = PATH_TABLE.match(table or "")
        self._path = (path.group(1), path.group(2)) if path else None
        self._table = () if path else tuple(table_name(table))
        self._timeout = float(timeout_seconds)
        self._spark = None
        self._row_id: str | None = None

    @property
    def spark(self):
        if self._spark is None:
            try:
                self._spark = session(self._master)
            except Exception:  # pyspark raises many kinds here (Java gateway, gRPC, config)
                raise EngineError("the dataset's Spark cannot be reached; the owner can check it") from None
        return self._spark

    @property
    def source(self) -> str:
        if self._path:
            return f"{self._path[0]}.`{self._path[1]}`"
        return ".".join(f"`{p}`" for p in self._table)

    def row_id(self) -> str:
        """Each row's id, stable from query to query and below 2**32: its position in its file
        (``_metadata.row_index``) plus the rows of the files before it, counted once per engine.
        Spark's ``monotonically_increasing_id`` would not do: it depends on the partitioning and
        exceeds 32 bits."""
        if self._row_id is None:
            files = self._run(f"SELECT _metadata.file_path AS f, count(*) AS n FROM {self.source} "
                              "GROUP BY _metadata.file_path ORDER BY f", ())
            offsets, start = [], 0
            for path, n in zip(files["f"], files["n"]):
                offsets.append(f"WHEN '{str(path).replace(chr(39), chr(39) * 2)}' THEN {start}")
                start += int(n)
            if start >= 2**32:
                raise EngineError("the Spark table has more than 2**32 rows; row ids would not fit")
            cases = " ".join(offsets) or "WHEN '' THEN 0"
            self._row_id = f"(CASE _metadata.file_path {cases} END + _metadata.row_index)"
        return self._row_id

    @property
    def relation(self) -> str:
        """``data`` as the built-ins see it: the owner's table and each row's id."""
        return f"(SELECT *, {self.row_id()} AS `{ROW_ID}` FROM {self.source})"

    # -- the contract ----------------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        text = translate(sql, "spark", False)  # parameters named :p1, :p2, ... (one may appear twice)
        named = {f"p{i}": value for i, value in enumerate(params, start=1)}
        if ROW_ID in sql:
            return self._run(text.replace(f"`{SOURCE}`", self.relation), named)
        return self._run(text.replace(f"`{SOURCE}`", self.source), named)  # no ids asked for: a plain scan

    def columns(self) -> dict[str, str]:
        frame = self._guarded(lambda: self.spark.sql(f"SELECT * FROM {self.source} LIMIT 0").dtypes)
        return {name: DUCKDB_TYPES.get(kind, kind.upper()) for name, kind in frame}

    def row_count(self) -> int:
        return int(self._run(f"SELECT count(*) AS n FROM {self.source}", ()).iloc[0, 0])

    def sample(self, n: int, seed: int) -> pd.DataFrame:
        """Bernoulli sampling on the executors: only about ``n`` rows reach the domain."""
        total = self.row_count()
        fraction = min(1.0, 1.2 * n / max(total, 1))
        df = self._guarded(lambda: _as_pandas(self.spark.table(self.source) if not self._path else
                                              self.spark.sql(f"SELECT * FROM {self.source}"),
                                              fraction=fraction, seed=seed))
        return df.sample(n=n, random_state=seed).reset_index(drop=True) if len(df) > n else df

    def frame(self, columns: Sequence[str] | None = None, limit: int | None = None) -> pd.DataFrame:
        """Rows in row-id order, indexed by row id (as the Parquet engine's)."""
        known = self.columns()
        wanted = list(known) if columns is None else [c for c in columns if c in known]
        picked = ", ".join("`" + c.replace("`", "``") + "`" for c in [ROW_ID, *wanted])
        suffix = f" LIMIT {int(limit)}" if limit is not None else ""
        df = self._run(f"SELECT {picked} FROM {self.relation} AS data ORDER BY `{ROW_ID}`{suffix}", ())
        df.index = pd.Index(df.pop(ROW_ID).to_numpy(), name=None)
        return df

    def close(self) -> None:
        """The session is shared by the process and kept: starting Spark again would take seconds."""

    # -- running ---------------------------------------------------------------------------------
    def _run(self, text: str, params: Sequence[Any] | dict[str, Any]) -> pd.DataFrame:
        args = dict(params) if isinstance(params, dict) else list(params)
        return self._guarded(lambda: _as_pandas(self.spark.sql(text, args=args or None)))

    def _too_slow(self) -> EngineError:
        return EngineError(f"the dataset's Spark did not answer within {self._timeout:g} s; the query was stopped")

    def _guarded(self, work):
        """``work()`` under a tag that a timer interrupts after the timeout; Spark's errors become
        their error class."""
        spark = self.spark
        tag = f"fednb-{uuid.uuid4().hex}"
        timed_out = threading.Event()
        timer = threading.Timer(self._timeout, lambda: (timed_out.set(), _interrupt(spark, tag)))
        try:
            spark.addTag(tag)
            _interrupt_on_cancel(spark)
            timer.start()
            answer = work()
            if timed_out.is_set():  # the cancel came before Spark started a job: late is late
                raise self._too_slow()
            return answer
        except EngineError:
            raise
        except Exception as exc:
            if timed_out.is_set():
                raise self._too_slow() from None
            condition = _condition(exc)
            if condition is None:
                raise EngineError("the connection to the dataset's Spark was lost") from None
            raise EngineError(f"the dataset's Spark refused the query ({condition})") from None
        finally:
            timer.cancel()
            try:
                spark.removeTag(tag)
            except Exception:  # a lost session cannot remove a tag either
                pass


def _classic(spark) -> bool:
    return hasattr(spark, "sparkContext") and not type(spark).__module__.startswith("pyspark.sql.connect")


def _interrupt_on_cancel(spark) -> None:
    """Cancelling a classic Spark job only marks its tasks unless the job was started with
    ``interruptOnCancel``: then the task threads are interrupted too, so the cores are freed for the
    next query instead of finishing the work nobody will read."""
    if _classic(spark):
        spark.sparkContext.setInterruptOnCancel(True)


def _interrupt(spark, tag: str) -> None:
    """Stop the tagged query. Spark Connect interrupts by tag; classic Spark's tags do not reach the
    jobs that ``toPandas`` starts from its own thread, so there every job of the context is
    cancelled (a domain's worker runs one query at a time)."""
    try:
        if _classic(spark):
            spark.sparkContext.cancelAllJobs()
        else:
            spark.interruptTag(tag)
    except Exception:  # the query may have ended as the timer fired
        pass


def _condition(exc: Exception) -> str | None:
    """Spark's error class (``CAST_INVALID_INPUT``), or None when Spark itself is gone."""
    for method in ("getCondition", "getErrorClass"):
        found = getattr(exc, method, None)
        if callable(found):
            try:
                value = found()
            except Exception:
                value = None
            if value:
                return str(value)
    name = type(exc).__name__
    return None if name in ("Py4JNetworkError", "ConnectionRefusedError", "SparkConnectGrpcException") else name


def _as_pandas(df, *, fraction: float | None = None, seed: int = 0) -> pd.DataFrame:
    """A Spark result as pandas with the dtypes a Parquet copy would have (decimals as float)."""
    if fraction is not None and fraction < 1.0:
        df = df.sample(withReplacement=False, fraction=fraction, seed=seed)
    decimals = [name for name, kind in df.dtypes if kind.startswith("decimal")]
    out = df.toPandas()
    for name in decimals:
        out[name] = pd.to_numeric(out[name].astype("float64"))
    return out
