"""The one place that picks the Splink engine (schemas/resolution.yaml `backend`).

Model code only sees a Splink database API and SQL that Splink translates per dialect, so adding
Spark means adding a branch here, not touching comparisons, training or clustering.
"""

from __future__ import annotations

from typing import Any

from pipelines.resolve.config import backend_settings


def database_api(backend: str | None = None, options: dict[str, Any] | None = None) -> Any:
    """A fresh Splink database API for the configured backend."""
    name, configured = backend_settings()
    name = backend or name
    options = {**configured, **(options or {})}
    if name == "duckdb":
        import duckdb
        from splink import DuckDBAPI

        connection = duckdb.connect()
        if "memory_limit" in options:
            connection.execute(f"SET memory_limit = '{options['memory_limit']}'")
        if "threads" in options:
            connection.execute(f"SET threads = {int(options['threads'])}")
        connection.execute("SET preserve_insertion_order = false")
        connection.execute("SET enable_progress_bar = false")  # keeps CLI output and logs clean
        return DuckDBAPI(connection=connection)
    if name == "spark":
        raise NotImplementedError(
            "backend 'spark' is not wired yet: create a SparkSession and return "
            "splink.SparkAPI(spark_session=...) here; the model code needs no change")
    raise ValueError(f"unknown resolution backend {name!r} (expected 'duckdb' or 'spark')")


def duckdb_connection(db_api: Any):
    """The DuckDB connection behind a DuckDB Splink API (used to stage inputs with plain SQL)."""
    return db_api.duckdb_con
