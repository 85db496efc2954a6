"""build_golden: staged records + customer map + match pairs -> golden tables in the run folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb

from pipelines import fileio
from pipelines.golden.config import (
    canonical_fields,
    computed_columns,
    golden_fields,
    survivorship_config,
)
from pipelines.golden.incremental import (
    SCOPED_RECORDS,
    GoldenReuse,
    base_unusable,
    create_confidence,
    drop_scratch,
    find_touched,
    golden_version,
    reused_customers_sql,
    write_version,
)
from pipelines.golden.portfolio import claims_sql, currency_rates_sql, policies_sql
from pipelines.golden.profile import (
    create_fact_tables,
    customer_360_sql,
    customer_policy_links_sql,
    drop_fact_tables,
)
from pipelines.golden.survivorship import create_customers
from pipelines.settings import RunPaths, duckdb_config
from pipelines.sql import PARQUET_OPTIONS, quote_path

GOLDEN_TABLES = ("source_records", "customers", "customer_policy_links", "customer_360",
                 "policies", "claims", "currency_rates")
DERIVED_POLICY_KEY_SQL = "upper(regexp_replace(policy_number, '[^0-9A-Za-z]', '', 'g'))"


@dataclass
class GoldenResult:
    """Where build_golden wrote its tables, and how many rows each has."""

    run_id: str
    export_date: date
    paths: dict[str, Path] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    reuse: GoldenReuse | None = None  # an incremental night: what was reused from which night


def staged_records_file(run: RunPaths) -> Path:
    return run.staged_dir / "source_records.parquet"


def customer_map_file(run: RunPaths) -> Path:
    return run.identified_dir / "customer_map.parquet"


def match_pairs_file(run: RunPaths) -> Path:
    return run.resolved_dir / "match_pairs.parquet"


def sql_path(path: Path) -> str:
    return quote_path(path)


def parquet_columns(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    rows = con.execute(f"DESCRIBE SELECT * FROM read_parquet({sql_path(path)})").fetchall()
    return [r[0] for r in rows]


def canonical_select_sql(con: duckdb.DuckDBPyConnection, path: Path) -> str:
    """Staged records with exactly the canonical columns and types (absent ones as typed NULLs)."""
    present = set(parquet_columns(con, path))
    columns = [
        f"CAST({name} AS {dtype}) AS {name}" if name in present else f"CAST(NULL AS {dtype}) AS {name}"
        for name, dtype in canonical_fields().items()
    ]
    return f"SELECT {', '.join(columns)} FROM read_parquet({sql_path(path)})"


def require_inputs(run: RunPaths) -> None:
    missing = [p for p in (staged_records_file(run), customer_map_file(run), match_pairs_file(run))
               if not p.exists()]
    if missing:
        raise FileNotFoundError("golden needs the upstream outputs: " + ", ".join(map(str, missing)))


def load_golden_records(con: duckdb.DuckDBPyConnection, run: RunPaths) -> None:
    """Tables `golden_records` (canonical + customer_id) and `match_pairs` in `con`."""
    require_inputs(run)
    # Policies are keyed by policy_key across sources; where a mapping gives none, the policy
    # number without case, spaces or punctuation ("p-de 0001" and "PDE0001" are one policy).
    # (Derived as the table is created: an UPDATE afterwards cost a pass and slowed later scans.)
    con.execute(f"""
        CREATE OR REPLACE TABLE golden_records AS
        SELECT s.* REPLACE (coalesce(s.policy_key, {DERIVED_POLICY_KEY_SQL}) AS policy_key),
               m.customer_id
        FROM ({canonical_select_sql(con, staged_records_file(run))}) s
        LEFT JOIN read_parquet({sql_path(customer_map_file(run))}) m USING (source_record_id)
    """)
    unmapped = con.execute(
        "SELECT count(*), min(source_record_id) FROM golden_records WHERE customer_id IS NULL"
    ).fetchall()[0]
    if unmapped[0]:
        raise ValueError(f"{unmapped[0]} staged records have no customer_id in "
                         f"{customer_map_file(run)} (e.g. {unmapped[1]})")
    con.execute(f"""
        CREATE OR REPLACE TABLE match_pairs AS
        SELECT source_record_id_l, source_record_id_r, match_probability
        FROM read_parquet({sql_path(match_pairs_file(run))})
    """)


def write_parquet(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> None:
    """COPY a query to Parquet under a temporary name, then rename: no half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    con.execute(f"COPY ({query}) TO {sql_path(tmp)} ({PARQUET_OPTIONS})")
    fileio.replace(tmp, path)


def build_golden_tables(con: duckdb.DuckDBPyConnection, run_id: str, export_date: date,
                        config: dict, base: RunPaths | None = None) -> None:
    """Create `customers`, `customer_policy_links`, `currency_rates`, `customer_360`, `policies`
    and `claims` from `golden_records`. `base`: the night whose golden records the customers
    outside `golden_touched` keep (pipelines/golden/incremental.py)."""
    if base is None:
        create_customers(con, config, run_id)
    else:
        create_customers(con, config, run_id, table="golden_recomputed", records=SCOPED_RECORDS)
        create_confidence(con)
        columns = [r[0] for r in con.execute("DESCRIBE golden_recomputed").fetchall()]
        con.execute(f"""CREATE OR REPLACE TABLE customers AS
            SELECT * FROM (SELECT * FROM golden_recomputed
                           UNION ALL {reused_customers_sql(base, run_id, columns, config)})
            ORDER BY customer_id""")
        con.execute("DROP TABLE golden_recomputed")
        expected, got = con.execute(
            "SELECT (SELECT count(DISTINCT customer_id) FROM golden_records), "
            "(SELECT count(*) FROM customers)").fetchall()[0]
        if expected != got:  # a customer neither recomputed nor reused (or one twice): a bug
            raise RuntimeError(f"incremental golden: {got} golden records for {expected} customers")
    create_fact_tables(con, config)  # policy and claim facts, once for every table that reads them
    try:
        con.execute("CREATE OR REPLACE TABLE customer_policy_links AS "
                    + customer_policy_links_sql(config, run_id))
        con.execute("CREATE OR REPLACE TABLE currency_rates AS " + currency_rates_sql(config))
        golden_columns = ["customer_id", "party_type", *golden_fields(config),
                          *computed_columns(config)]
        con.execute("CREATE OR REPLACE TABLE customer_360 AS "
                    + customer_360_sql(config, golden_columns, export_date, run_id))
        con.execute("CREATE OR REPLACE TABLE policies AS " + policies_sql(config, run_id))
        con.execute("CREATE OR REPLACE TABLE claims AS " + claims_sql(config, run_id))
    finally:
        drop_fact_tables(con)


def build_golden(run: RunPaths, export_date: date | None = None, incremental: bool = False,
                 base: RunPaths | None = None) -> GoldenResult:
    """Golden records, customer–policy links and 360° profiles for one run, as Parquet in golden/.

    `incremental`: customers whose records, pairs and rules did not change since the `base` night
    keep that night's golden record (pipelines/golden/incremental.py); the tables are the same."""
    export_date = export_date or date.fromisoformat(run.run_id)
    config = survivorship_config()
    version = golden_version(config)
    result = GoldenResult(run_id=run.run_id, export_date=export_date)
    with duckdb.connect(config=duckdb_config()) as con:
        load_golden_records(con, run)
        reuse_from = None
        if incremental:
            result.reuse = GoldenReuse(base_run=base.run_id if base else None,
                                       reason=base_unusable(base, version, config))
            if result.reuse.reason is None:
                assert base is not None
                find_touched(con, base, config, result.reuse)
                reuse_from = base
        build_golden_tables(con, run.run_id, export_date, config, reuse_from)
        if result.reuse is not None:
            reuse = result.reuse
            reuse.customers = con.execute("SELECT count(*) FROM customers").fetchall()[0][0]
            reuse.customers_recomputed = (
                con.execute("SELECT count(*) FROM golden_touched").fetchall()[0][0]
                if reuse_from else reuse.customers)
            reuse.customers_reused = reuse.customers - reuse.customers_recomputed
            drop_scratch(con)
        for table in GOLDEN_TABLES:
            source = "golden_records" if table == "source_records" else table
            path = run.golden_dir / f"{table}.parquet"
            write_parquet(con, f"SELECT * FROM {source}", path)
            result.paths[table] = path
            result.counts[table] = con.execute(f"SELECT count(*) FROM {source}").fetchall()[0][0]
    write_version(run.golden_dir, version)
    return result
