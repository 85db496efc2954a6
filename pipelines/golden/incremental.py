"""Incremental golden: on an incremental night only the customers something happened to get their
golden record computed again; every other customer keeps the base night's row (tonight's run_id).

A golden record's values are a function of the customer's own records and of one statistic over
everyone else (how many other customers hold a value, which breaks ties when a value is outvoted by
a look-alike, `survivorship.commonness_sql`). So a customer is recomputed ("touched") when,
against the base night's golden inputs:
- one of its records is new, gone, moved to another customer, or changed in any canonical value
  (lineage — file, row number, run id — left out);
- in a group with `not_outvoted`, two of its variants are held by as many records each (only
  then does commonness decide) and it holds a value whose number of holders differs from the base
  night's (only a touched customer moves it);
- the base night has no golden record for it (erasure removes customer rows from run folders).
Everything else about a customer is unchanged, so its base row is exactly what a full night would
compute; `tests/test_golden_incremental.py` compares both on nights with every kind of change.
The exception is confidence: it reads the scored pairs, and every reused pair's probability moves
a little each night with the prior (pipelines/resolve/incremental.py). Confidence (and the
computed columns, which may read it) is therefore computed for every customer every night; a pass
over the pairs, ~1 s at 1M records.

The base night's rows are only reused when they were computed by the same rules: `golden_version`
hashes the survivorship and canonical configuration, the golden code and the DuckDB version, and
golden/golden_version.json records it. Rules whose SQL reads lineage or the clock cannot be reused
(a row would differ with nothing in its records changed): those nights compute every customer.
The other golden tables (links, 360°, policies, claims) read the date and policies shared between
customers, and stay computed in full every night.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import duckdb

from pipelines.golden.config import canonical_fields, computed_columns, survivorship_groups
from pipelines.golden.survivorship import candidate_filter_sql, confidence_sql, variant_key_sql
from pipelines.settings import RunPaths
from pipelines.sql import quote_ident, quote_literal, quote_path

VERSION_FILE = "golden_version.json"
LINEAGE = ("source_file", "source_row_number", "run_id")
# SQL in survivorship rules that would make a golden record depend on more than its records
NOT_REUSABLE_SQL = re.compile(
    r"\b(source_file|source_row_number|run_id|current_date|current_timestamp|now|today|"
    r"random|uuid|gen_random_uuid|get_current_timestamp)\b", re.IGNORECASE)
SCOPED_RECORDS = "golden_scope_records"
# the modules a golden record's value depends on (the other tables are computed every night)
CONFIDENCE_COLUMNS = ("confidence", "weakest_link_probability",
                      "nearest_other_customer_probability")  # survivorship.CONFIDENCE_SQL
GOLDEN_RECORD_CODE = ("build.py", "config.py", "survivorship.py", "incremental.py")


@dataclass
class GoldenReuse:
    """What an incremental golden night did (report/incremental.json)."""

    base_run: str | None = None
    customers: int = 0
    customers_recomputed: int = 0
    customers_reused: int = 0
    changed_records: int = 0
    touched_by_commonness: int = 0
    reason: str | None = None  # why every customer was computed

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def golden_version(config: dict) -> str:
    """Hash of everything besides the inputs that decides a golden record: the survivorship
    rules as loaded, the canonical schema, the code that computes it and the DuckDB version."""
    digest = hashlib.sha256(json.dumps([config, canonical_fields()], sort_keys=True,
                                       default=str).encode())
    code = Path(__file__).resolve().parent
    for path in (code / name for name in GOLDEN_RECORD_CODE):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(f"duckdb={metadata.version('duckdb')}\0".encode())
    return digest.hexdigest()


def write_version(golden_dir: Path, version: str) -> Path:
    path = golden_dir / VERSION_FILE
    path.write_text(json.dumps({"golden": version}) + "\n", encoding="utf-8")
    return path


def rules_not_reusable(config: dict) -> str | None:
    """Why the configured rules make base rows unusable (SQL reading lineage or the clock)."""
    found = NOT_REUSABLE_SQL.search(json.dumps(config.get("groups", {}))
                                    + json.dumps(config.get("computed", {})))
    if found:
        return f"survivorship rules read {found.group(0)!r}: every customer is computed"
    return None


def base_unusable(base: RunPaths | None, version: str, config: dict) -> str | None:
    """None when the base night's golden records can be reused tonight, else why not."""
    if base is None:
        return "no earlier successful night"
    needed = [base.golden_dir / "customers.parquet", base.golden_dir / "source_records.parquet",
              base.golden_dir / VERSION_FILE]
    missing = [p.name for p in needed if not p.is_file()]
    if missing:
        return f"night {base.run_id} has no {', '.join(missing)}"
    stored = json.loads((base.golden_dir / VERSION_FILE).read_text(encoding="utf-8")).get("golden")
    if stored != version:
        return f"night {base.run_id} was built by other golden rules (configuration or code)"
    return rules_not_reusable(config)


def record_hash_sql(columns: list[str]) -> str:
    """128 bits over a golden record's values and its customer_id, lineage left out."""
    struct = "{" + ", ".join(f"{quote_literal(c)}: {quote_ident(c)}"
                             for c in sorted(c for c in columns if c not in LINEAGE)) + "}"
    return f"((hash({struct})::UHUGEINT << 64) | hash('golden', {struct})::UHUGEINT)"


def find_touched(con: duckdb.DuckDBPyConnection, base: RunPaths, config: dict,
                 stats: GoldenReuse) -> None:
    """Temp table `golden_touched(customer_id)`: tonight's customers to compute again (module
    docstring), from `golden_records` in `con` and the base night's golden records."""
    columns = [r[0] for r in con.execute("DESCRIBE golden_records").fetchall()]
    base_records = f"read_parquet({quote_path(base.golden_dir / 'source_records.parquet')})"
    row_hash = record_hash_sql(columns)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE golden_changed AS
        WITH now AS (SELECT source_record_id, customer_id, {row_hash} AS h FROM golden_records),
             before AS (SELECT source_record_id, customer_id, {row_hash} AS h FROM {base_records})
        SELECT n.customer_id AS customer_now, b.customer_id AS customer_before
        FROM now n FULL JOIN before b USING (source_record_id)
        WHERE n.h IS DISTINCT FROM b.h""")
    stats.changed_records = con.execute("SELECT count(*) FROM golden_changed").fetchall()[0][0]
    base_customers = f"read_parquet({quote_path(base.golden_dir / 'customers.parquet')})"
    # a customer that gained, lost or changed a record, or that the base night has no row for
    con.execute(f"""CREATE OR REPLACE TEMP TABLE golden_touched AS
        SELECT customer_id FROM (
            SELECT customer_now AS customer_id FROM golden_changed
            UNION SELECT customer_before FROM golden_changed
            UNION SELECT customer_id FROM (SELECT DISTINCT customer_id FROM golden_records)
                  ANTI JOIN (SELECT customer_id FROM {base_customers}) USING (customer_id))
        WHERE customer_id IS NOT NULL
          AND customer_id IN (SELECT customer_id FROM golden_records)""")
    stats.touched_by_commonness = sum(
        touch_by_commonness(con, group, base_records) for group in survivorship_groups(config)
        if "not_outvoted" in group.rules)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE {SCOPED_RECORDS} AS
        SELECT * FROM golden_records SEMI JOIN golden_touched USING (customer_id)""")


def touch_by_commonness(con: duckdb.DuckDBPyConnection, group, base_records: str) -> int:
    """Add to `golden_touched` the untouched customers whose `group` winner may move because a
    value's commonness moved: only a tie in record count between two of a customer's variants
    reads commonness (`survivorship.outvoted_sql`), and commonness only moves for a value whose
    number of holders differs from the base night's, which only a touched customer can cause."""
    where = candidate_filter_sql(group)
    fields = group.variants_of

    def holds(records: str) -> str:
        return " UNION ALL ".join(
            f"SELECT customer_id, {i} AS field, CAST({f} AS VARCHAR) AS value "
            f"FROM {records} WHERE {where} AND {f} IS NOT NULL" for i, f in enumerate(fields))

    return con.execute(f"""INSERT INTO golden_touched
        WITH now_holds AS ({holds("golden_records")}),
             before_holds AS ({holds(base_records)}),
             touched_values AS (
                 SELECT field, value FROM now_holds SEMI JOIN golden_touched USING (customer_id)
                 UNION
                 SELECT field, value FROM before_holds
                 SEMI JOIN (SELECT customer_before AS customer_id FROM golden_changed)
                     USING (customer_id)),
             holders_now AS (
                 SELECT field, value, count(DISTINCT customer_id) AS customers
                 FROM now_holds SEMI JOIN touched_values USING (field, value)
                 GROUP BY field, value),
             holders_before AS (
                 SELECT field, value, count(DISTINCT customer_id) AS customers
                 FROM before_holds SEMI JOIN touched_values USING (field, value)
                 GROUP BY field, value),
             moved_values AS (
                 SELECT field, value FROM holders_now n FULL JOIN holders_before b
                     USING (field, value)
                 WHERE n.customers IS DISTINCT FROM b.customers),
             variant_records AS (
                 SELECT customer_id, {variant_key_sql(fields)} AS variant_key, count(*) AS n
                 FROM golden_records WHERE {where} GROUP BY ALL),
             tied AS (
                 SELECT DISTINCT customer_id FROM variant_records
                 GROUP BY customer_id, n HAVING count(*) > 1)
        SELECT DISTINCT h.customer_id FROM now_holds h
        SEMI JOIN tied USING (customer_id)
        SEMI JOIN moved_values USING (field, value)
        ANTI JOIN golden_touched USING (customer_id)""").fetchall()[0][0]


def reused_customers_sql(base: RunPaths, run_id: str, columns: list[str], config: dict) -> str:
    """The base night's golden records of tonight's untouched customers: tonight's confidence
    (temp table `golden_confidence`), computed columns and run_id, in the order of `columns`."""
    path = quote_path(base.golden_dir / "customers.parquet")
    confidence = ", ".join(f"c.{c} AS {c}" for c in CONFIDENCE_COLUMNS)
    computed = ", ".join(f"{sql} AS {name}" for name, sql in computed_columns(config).items())
    recompute = f"SELECT * REPLACE ({computed}) FROM" if computed else "SELECT * FROM"
    return f"""
        SELECT {", ".join(quote_ident(c) for c in columns)} FROM ({recompute} (
            SELECT b.* REPLACE ({confidence}, {quote_literal(run_id)} AS run_id)
            FROM read_parquet({path}) b JOIN golden_confidence c USING (customer_id)
            ANTI JOIN golden_touched t ON t.customer_id = b.customer_id))"""


def drop_scratch(con: duckdb.DuckDBPyConnection) -> None:
    for table in ("golden_changed", "golden_touched", "golden_touched_before",
                  "golden_confidence", SCOPED_RECORDS):
        con.execute(f"DROP TABLE IF EXISTS temp.{table}")


def create_confidence(con: duckdb.DuckDBPyConnection) -> None:
    """Temp table `golden_confidence`: every customer's confidence from tonight's pairs."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE golden_confidence AS {confidence_sql()}")
