"""Which engine answers for a dataset: the folder's ``source.json`` names it (``{"engine":
"parquet"}`` when absent), so a file kept in the domain and a table kept in the owner's PostgreSQL or
Spark are queried through the same :class:`~fednb.domain.data.engines.base.Engine` contract."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fednb.domain.data.engines.base import SOURCE_FILE, Engine, EngineError


def parquet_engine(folder: Path, source: dict[str, Any], settings: Any) -> Engine:
    """A file kept in the domain's folder, queried by the embedded DuckDB."""
    from fednb.domain.data.engines.duckdb import parquet_engine as open_parquet

    return open_parquet(folder, source, settings)


def store_engine(folder: Path, source: dict[str, Any], settings: Any) -> Engine:
    """A dataset whose rows stay in the owner's PostgreSQL or Spark (:mod:`fednb.domain.data.sources`)."""
    from fednb.domain.data.sources import open_source

    return open_source(folder, source, settings)


#: engine name in ``source.json`` -> factory(dataset folder, the parsed source.json, [engine] settings)
ENGINES: dict[str, Callable[[Path, dict[str, Any], Any], Engine]] = {
    "parquet": parquet_engine,
    "postgresql": store_engine,
    "spark": store_engine,
}


def open_engine(dataset_folder: Path, settings: Any) -> Engine:
    """The engine of the dataset in ``dataset_folder`` (``DIR/datasets/NAME``), with the policy's
    ``[engine]`` settings (``memory_limit``, ``threads``)."""
    folder = Path(dataset_folder)
    source_file = folder / SOURCE_FILE
    source: dict[str, Any] = {"engine": "parquet"}
    if source_file.exists():
        try:
            source = json.loads(source_file.read_text(encoding="utf-8"))
        except ValueError:
            raise EngineError(f"{source_file} is not valid JSON") from None
    kind = source.get("engine", "parquet")
    if kind not in ENGINES:
        raise EngineError(f"{source_file} names the engine {kind!r}; this domain knows {sorted(ENGINES)}")
    return ENGINES[kind](folder, source, settings)
