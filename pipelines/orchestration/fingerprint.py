"""Order-independent fingerprints of a run's outputs, to check that a rerun changed nothing.

A table's fingerprint is its row count and the sum of its rows' hashes (a multiset digest):
the same rows in any order give the same fingerprint; a duplicated or changed row does not.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.settings import RunPaths
from pipelines.sql import quote_ident, quote_literal

# Folders of a run whose Parquet files are data (run_state.json and the report hold timings).
RUN_DATA_DIRS = ("raw", "accepted", "quarantine", "staged", "resolved", "identified", "golden")
# Warehouse tables that record when and how long a run took, not what it produced.
VOLATILE_TABLES = {"runs"}


def _digest(con, relation_sql: str) -> str:
    rows, total = con.execute(
        f"SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0) FROM ({relation_sql}) t").fetchall()[0]
    return f"{rows}:{total}"


def output_fingerprints(run: RunPaths, warehouse: Path | None = None,
                        export_dir: Path | None = None) -> dict[str, str]:
    """Fingerprint of every Parquet output of the run, of the warehouse tables and exports."""
    import duckdb

    prints: dict[str, str] = {}
    with duckdb.connect() as con:
        for folder in RUN_DATA_DIRS:
            for path in sorted((run.root / folder).glob("*.parquet")):
                prints[f"run/{folder}/{path.name}"] = _digest(
                    con, f"SELECT * FROM read_parquet({quote_literal(path.as_posix())})")
        if export_dir is not None:
            for path in sorted(export_dir.rglob("*.parquet")):
                prints[f"export/{path.relative_to(export_dir)}"] = _digest(
                    con, f"SELECT * FROM read_parquet({quote_literal(path.as_posix())})")
        if warehouse is not None and warehouse.exists():
            con.execute(f"ATTACH {quote_literal(warehouse.as_posix())} AS wh (READ_ONLY)")
            tables = [r[0] for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = 'wh' "
                "ORDER BY table_name").fetchall()]
            for table in tables:
                if table not in VOLATILE_TABLES:
                    prints[f"warehouse/{table}"] = _digest(con, f"SELECT * FROM wh.{quote_ident(table)}")
            con.execute("DETACH wh")
    return prints
