"""The one place that picks the Splink engine (schemas/resolution.yaml `backend`).

Model code only sees a Splink database API and SQL that Splink translates per dialect; Spark's
session, and the translation of a saved model's DuckDB SQL to Spark's, live in `spark.py`.
"""

from __future__ import annotations

import os
from typing import Any

from pipelines.resolve.config import load_resolution_settings
from pipelines.settings import duckdb_config

BACKENDS = ("duckdb", "spark")


def backend_name() -> str:
    """The configured engine; UCV_RESOLUTION_BACKEND overrides the yaml (e.g. for one test run)."""
    name = os.environ.get("UCV_RESOLUTION_BACKEND") or load_resolution_settings()["backend"]
    if name not in BACKENDS:
        raise ValueError(f"unknown resolution backend {name!r} in schemas/resolution.yaml "
                         f"(expected one of {', '.join(BACKENDS)})")
    return name


def backend_options(name: str) -> dict[str, Any]:
    """The yaml section of one engine (`duckdb:` or `spark:`)."""
    return dict(load_resolution_settings().get(name) or {})


def database_api(backend: str | None = None, options: dict[str, Any] | None = None) -> Any:
    """A fresh Splink database API for the configured backend (or the one named)."""
    name = backend or backend_name()
    if name not in BACKENDS:
        raise ValueError(f"unknown resolution backend {name!r} (expected 'duckdb' or 'spark')")
    options = {**backend_options(name), **(options or {})}
    if name == "spark":
        from pipelines.resolve.spark import spark_api

        return spark_api(options)
    import duckdb
    from splink import DuckDBAPI

    # spills go where the pipeline's own connections spill (data/tmp/duckdb), not into the
    # working directory's .tmp (DuckDB's default for an in-memory database)
    connection = duckdb.connect(config={"temp_directory": duckdb_config()["temp_directory"]})
    if "memory_limit" in options:
        connection.execute("SET memory_limit = ?", [str(options["memory_limit"])])
    if "threads" in options:
        connection.execute("SET threads = ?", [int(options["threads"])])
    connection.execute("SET preserve_insertion_order = false")
    connection.execute("SET enable_progress_bar = false")  # keeps CLI output and logs clean
    return DuckDBAPI(connection=connection)


def duckdb_connection(db_api: Any):
    """The DuckDB connection behind a DuckDB Splink API (used to stage inputs with plain SQL)."""
    return db_api.duckdb_con
