"""Where a dataset's rows live, and how built-ins reach them: one engine per kind of store.

Built-ins are written once, as SQL in DuckDB's dialect over a relation named ``data``; an engine
runs that SQL where the rows are (DuckDB over the domain's Parquet file, the owner's PostgreSQL
database, or a Spark cluster) and returns only the small aggregated result.
"""

from fednb.domain.data.engines.base import Engine, EngineError

__all__ = ["Engine", "EngineError"]
