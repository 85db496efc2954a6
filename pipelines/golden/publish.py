"""publish_warehouse: build the new warehouse beside the old one, audit it, swap it in atomically.

Write, audit, publish. The DuckDB file is built under a temporary name and renamed over
`ucv.duckdb` (a rename is atomic: a reader opens either the old file or the new one, and a reader
that has the old one open keeps reading it). The file is written in the storage version of
schemas/warehouse.yaml (`storage_version`), so the DuckDB 1.x CLIs, drivers and BI tools analysts
use open it. The Parquet mirror is a versioned folder, `parquet/<version>/<table>.parquet`, never
changed once written; `parquet/LATEST` (a text file) names the current version and
`parquet/current` is a symlink to it, both replaced by rename, so a reader that resolves the
pointer once reads one version throughout. A run that fails at any step leaves the last published
warehouse untouched.

Every table is written once: golden's Parquet files (`build.GOLDEN_TABLES`, already the published
shape) become the mirror's files as hard links (a copy across file systems), and the DuckDB tables
are loaded from those mirror files; only the tables publish itself shapes (quarantine, match_pairs
with run_id, history, review queue, runs) are written to the mirror from the DuckDB file. A hard
link shares the file, not a name: golden, erasure and retention replace or delete files by name
(write beside, rename over; unlink), never in place, so a run folder and a mirror version never
change each other's files.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from pipelines import fileio, settings
from pipelines.golden.build import GOLDEN_TABLES, match_pairs_file, sql_path
from pipelines.golden.config import WAREHOUSE_SCHEMA_FILE, load_yaml
from pipelines.golden.dictionary import expanded_columns
from pipelines.settings import RunPaths, duckdb_config
from pipelines.sql import PARQUET_OPTIONS, quote_ident, quote_literal

WAREHOUSE_TABLES = ("source_records", "quarantine", "match_pairs", "customers",
                    "customer_policy_links", "customer_360", "policies", "claims",
                    "currency_rates", "customer_id_history", "review_queue", "runs")
ANALYST_TABLES = ("policies", "claims", "currency_rates")  # the analyst model, from golden/
# tables published exactly as golden wrote them: the mirror links golden's file
LINKED_TABLES = tuple(t for t in WAREHOUSE_TABLES if t in GOLDEN_TABLES)
MIRROR_DIR = "parquet"
CURRENT_LINK = "current"
LATEST_FILE = "LATEST"  # one line: the version folder of the published mirror
KEEP_MIRROR_VERSIONS = 3  # the default of prune_mirrors; runs keep `retention: mirror_versions`

EMPTY_QUARANTINE_SQL = """
    SELECT CAST(NULL AS VARCHAR) AS run_id, CAST(NULL AS VARCHAR) AS source_system,
           CAST(NULL AS VARCHAR) AS source_file, CAST(NULL AS BIGINT) AS row_number,
           CAST(NULL AS VARCHAR) AS raw, CAST(NULL AS VARCHAR[]) AS failed_checks
    WHERE FALSE
"""
EMPTY_HISTORY_SQL = """
    SELECT CAST(NULL AS VARCHAR) AS run_id, CAST(NULL AS VARCHAR) AS event,
           CAST(NULL AS VARCHAR) AS customer_id, CAST(NULL AS VARCHAR) AS related_customer_id
    WHERE FALSE
"""
EMPTY_REVIEW_SQL = """
    SELECT CAST(NULL AS VARCHAR) AS run_id, CAST(NULL AS VARCHAR) AS source_record_id_l,
           CAST(NULL AS VARCHAR) AS source_record_id_r, CAST(NULL AS DOUBLE) AS match_probability,
           CAST(NULL AS VARCHAR) AS reason
    WHERE FALSE
"""


class WarehouseAuditFailed(RuntimeError):
    """The new warehouse failed a check before the swap; the published one was left in place."""


def warehouse_file_in(warehouse_dir: Path) -> Path:
    return warehouse_dir / settings.warehouse_file().name


def mirror_root(warehouse_dir: Path) -> Path:
    return warehouse_dir / MIRROR_DIR


def current_mirror(warehouse_dir: Path | None = None) -> Path:
    """The published Parquet mirror folder, resolved once (read every table from this folder)."""
    root = mirror_root(Path(warehouse_dir or settings.warehouse_dir()))
    latest = root / LATEST_FILE
    if latest.exists():
        return root / latest.read_text(encoding="utf-8").strip()
    link = root / CURRENT_LINK
    if not link.exists():
        raise FileNotFoundError(f"no published Parquet mirror at {root}")
    return link.resolve()


def write_latest_pointer(warehouse_dir: Path, mirror: Path) -> None:
    """Name `mirror` in parquet/LATEST, replaced by rename (readers see the old or the new name)."""
    latest = mirror_root(warehouse_dir) / LATEST_FILE
    tmp = latest.with_name(f".{LATEST_FILE}.tmp")  # one fixed name: a crash leaves nothing to sweep
    tmp.write_text(mirror.name + "\n", encoding="utf-8")
    os.replace(tmp, latest)


def storage_version() -> str | None:
    """The DuckDB storage version the warehouse file is written in (None: this DuckDB's default)."""
    configured = load_yaml(WAREHOUSE_SCHEMA_FILE).get("storage_version")
    return None if configured in (None, "", "default") else str(configured)


@contextmanager
def warehouse_writer(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection whose default database is a new DuckDB file in the configured storage version."""
    version = storage_version()
    options = f" (STORAGE_VERSION {quote(version)})" if version else ""
    with duckdb.connect(config=duckdb_config()) as con:
        con.execute(f"ATTACH {sql_path(path)} AS warehouse{options}")
        con.execute("USE warehouse")
        yield con
        con.execute("CHECKPOINT warehouse")
        con.execute("USE memory")
        con.execute("DETACH warehouse")


@contextmanager
def publish_lock(warehouse_dir: Path) -> Iterator[None]:
    """One publish at a time per warehouse folder."""
    warehouse_dir.mkdir(parents=True, exist_ok=True)
    with open(warehouse_dir / ".publish.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def next_version(warehouse_dir: Path, run_id: str) -> tuple[int, str]:
    """(sequence, folder name) for the next publish: `000007-2026-11-22`."""
    sequences = [int(m.group(1)) for p in mirror_root(warehouse_dir).glob("*")
                 if (m := re.fullmatch(r"\.?(\d{6})-.*", p.name))]
    sequence = max(sequences, default=0) + 1
    return sequence, f"{sequence:06d}-{run_id}"


def read_run_state(run: RunPaths) -> dict:
    path = run.root / "run_state.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def with_run_id_sql(con: duckdb.DuckDBPyConnection, path: Path, run_id: str) -> str:
    """SELECT * from a Parquet file, adding a run_id column when the file has none."""
    columns = [r[0] for r in con.execute(
        f"DESCRIBE SELECT * FROM read_parquet({sql_path(path)})").fetchall()]
    extra = "" if "run_id" in columns else f", {quote_literal(run_id)} AS run_id"
    return f"SELECT *{extra} FROM read_parquet({sql_path(path)})"


def previous_tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = 'prev'").fetchall()}


def table_queries(con: duckdb.DuckDBPyConnection, run: RunPaths, previous: set[str]) -> dict:
    """Warehouse table -> the query that fills it from the run folder (and the previous warehouse),
    for the tables publish shapes itself (golden's come from the mirror: `linked_table_queries`)."""
    quarantine_files = sorted(run.quarantine_dir.glob("*.parquet"))
    if quarantine_files:
        files = "[" + ", ".join(sql_path(p) for p in quarantine_files) + "]"
        quarantine = f"SELECT * FROM read_parquet({files}, union_by_name = true)"
        if "run_id" not in [r[0] for r in con.execute(f"DESCRIBE {quarantine}").fetchall()]:
            quarantine = f"SELECT *, {quote_literal(run.run_id)} AS run_id FROM ({quarantine})"
    else:
        quarantine = EMPTY_QUARANTINE_SQL
    history_file = run.identified_dir / "customer_id_history.parquet"
    history_parts = [f"SELECT * FROM read_parquet({sql_path(history_file)})"
                     if history_file.exists() else EMPTY_HISTORY_SQL]
    if "customer_id_history" in previous and not history_is_complete(con, history_file):
        # earlier runs' events from the previous warehouse; a rerun replaces its own events
        history_parts.insert(0, f"SELECT * FROM prev.customer_id_history "
                                f"WHERE run_id <> {quote_literal(run.run_id)}")
    review_file = run.identified_dir / "review_queue.parquet"
    return {
        "quarantine": quarantine,
        "match_pairs": with_run_id_sql(con, match_pairs_file(run), run.run_id),
        "customer_id_history":
            "SELECT DISTINCT * FROM (" + " UNION ALL BY NAME ".join(history_parts) + ") "
            "ORDER BY run_id, event, customer_id",
        "review_queue": with_run_id_sql(con, review_file, run.run_id)
                        if review_file.exists() else EMPTY_REVIEW_SQL,
    }


def history_is_complete(con: duckdb.DuckDBPyConnection, history_file: Path) -> bool:
    """Identify writes the ID registry's whole history (with `publication`): nothing to add."""
    if not history_file.exists():
        return False
    columns = [r[0] for r in con.execute(
        f"DESCRIBE SELECT * FROM read_parquet({sql_path(history_file)})").fetchall()]
    return "publication" in columns


def link_or_copy(source: Path, target: Path) -> None:
    """`target` becomes `source`'s file: a hard link, or a copy where the two folders are on
    different file systems (or the file system has no hard links)."""
    try:
        os.link(source, target)
    except OSError as problem:
        if problem.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(source, tmp)
        fileio.replace(tmp, target)


def link_golden_tables(run: RunPaths, mirror: Path) -> None:
    """golden's Parquet files as the mirror's files of the tables published as golden wrote them."""
    missing = [run.golden_dir / f"{t}.parquet" for t in LINKED_TABLES
               if not (run.golden_dir / f"{t}.parquet").is_file()]
    if missing:
        raise FileNotFoundError("publish needs golden's tables: " + ", ".join(map(str, missing)))
    for table in LINKED_TABLES:
        link_or_copy(run.golden_dir / f"{table}.parquet", mirror / f"{table}.parquet")


def linked_table_queries(mirror: Path) -> dict[str, str]:
    """The golden tables (customers, 360, links, source records, policies, claims, currency
    rates) from the mirror's files: the DuckDB file and the mirror hold the same data."""
    return {table: f"SELECT * FROM read_parquet({sql_path(mirror / f'{table}.parquet')})"
            for table in LINKED_TABLES}


def audit_analyst_model(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """The policy and claim grains hold: one row per key, links and customers that exist."""
    checks = {
        "policies.policy_key is unique and not null":
            "SELECT count(*) FROM (SELECT policy_key FROM policies GROUP BY policy_key "
            "HAVING count(*) > 1 OR policy_key IS NULL)",
        "claims.claim_id is unique and not null":
            "SELECT count(*) FROM (SELECT claim_id FROM claims GROUP BY claim_id "
            "HAVING count(*) > 1 OR claim_id IS NULL)",
        "every linked policy is in policies":
            "SELECT count(*) FROM customer_policy_links ANTI JOIN policies USING (policy_key)",
        "policy holders and claimants are customers":
            "SELECT (SELECT count(*) FROM policies p WHERE holder_customer_id IS NOT NULL AND "
            "holder_customer_id NOT IN (SELECT customer_id FROM customers)) + (SELECT count(*) "
            "FROM claims WHERE claimant_customer_id NOT IN (SELECT customer_id FROM customers))",
        f"policies and claims come from run {run_id}":
            "SELECT (SELECT count(*) FROM policies WHERE run_id IS DISTINCT FROM $run_id) + "
            "(SELECT count(*) FROM claims WHERE run_id IS DISTINCT FROM $run_id)",
    }
    failed = [name for name, sql in checks.items()
              if con.execute(sql, {"run_id": run_id} if "$run_id" in sql else {}).fetchall()[0][0]]
    if failed:
        raise WarehouseAuditFailed("new warehouse not published, failed checks: " + "; ".join(failed))


def create_views(con: duckdb.DuckDBPyConnection) -> None:
    """The views of schemas/warehouse.yaml (the common questions), with their descriptions."""
    for name, spec in (load_yaml(WAREHOUSE_SCHEMA_FILE).get("views") or {}).items():
        con.execute(f"CREATE VIEW {name} AS {spec['sql']}")
        con.execute(f"COMMENT ON VIEW {name} IS {quote(spec['grain'])}")


def count(con: duckdb.DuckDBPyConnection, query: str) -> int:
    return con.execute(f"SELECT count(*) FROM ({query})").fetchall()[0][0]


def runs_row_sql(con: duckdb.DuckDBPyConnection, run: RunPaths, sequence: int, version: str,
                 previous: set[str]) -> str:
    """The cumulative `runs` table: earlier published runs plus this run's row."""
    state = read_run_state(run)
    stages = state.get("stages") or {}
    stage_counts = {name: s.get("counts") for name, s in stages.items() if isinstance(s, dict)}
    stage_seconds = {name: s.get("seconds") for name, s in stages.items() if isinstance(s, dict)}
    history_events = count(con, f"SELECT * FROM customer_id_history WHERE run_id = {quote_literal(run.run_id)}")
    row = {
        "run_id": run.run_id,
        "logical_date": state.get("logical_date"),
        "export_date": state.get("export_date") or run.run_id,
        "status": "published",
        "pipeline_status": state.get("status"),
        "orchestrator": state.get("orchestrator"),
        "started_at": state.get("started_at"),
        "publish_sequence": sequence,
        "warehouse_version": version,
        "source_records": count(con, "SELECT * FROM source_records"),
        "quarantined": count(con, "SELECT * FROM quarantine"),
        "match_pairs": count(con, "SELECT * FROM match_pairs"),
        "customers": count(con, "SELECT * FROM customers"),
        "customer_policy_links": count(con, "SELECT * FROM customer_policy_links"),
        "review_queue": count(con, "SELECT * FROM review_queue"),
        "id_events": history_events,
        "stage_counts": json.dumps(stage_counts, default=str),
        "stage_seconds": json.dumps(stage_seconds, default=str),
    }
    con.execute("CREATE TEMP TABLE this_run AS SELECT * FROM (SELECT "
                "$run_id AS run_id, $logical_date AS logical_date, "
                "CAST($export_date AS DATE) AS export_date, $status AS status, "
                "$pipeline_status AS pipeline_status, $orchestrator AS orchestrator, "
                "TRY_CAST($started_at AS TIMESTAMPTZ) AS started_at, "
                "CAST($publish_sequence AS INTEGER) AS publish_sequence, "
                "$warehouse_version AS warehouse_version, "
                "CAST($source_records AS BIGINT) AS source_records, "
                "CAST($quarantined AS BIGINT) AS quarantined, "
                "CAST($match_pairs AS BIGINT) AS match_pairs, "
                "CAST($customers AS BIGINT) AS customers, "
                "CAST($customer_policy_links AS BIGINT) AS customer_policy_links, "
                "CAST($review_queue AS BIGINT) AS review_queue, "
                "CAST($id_events AS BIGINT) AS id_events, "
                "CAST($stage_counts AS JSON) AS stage_counts, "
                "CAST($stage_seconds AS JSON) AS stage_seconds)", row)
    if "runs" in previous:
        return (f"SELECT * FROM prev.runs WHERE run_id <> {quote_literal(run.run_id)} "
                "UNION ALL BY NAME SELECT * FROM this_run ORDER BY publish_sequence")
    return "SELECT * FROM this_run"


def comment_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Table and column descriptions from schemas/warehouse.yaml, visible in duckdb_columns()."""
    if not WAREHOUSE_SCHEMA_FILE.exists():
        return
    schema = load_yaml(WAREHOUSE_SCHEMA_FILE)["tables"]
    con.execute("BEGIN TRANSACTION")  # one commit for all comments, not one per statement
    try:
        for table, spec in schema.items():
            present = {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
            con.execute(f"COMMENT ON TABLE {table} IS {quote(spec['grain'])}")
            for column, meaning in expanded_columns(spec).items():
                if column in present:
                    con.execute(f"COMMENT ON COLUMN {table}.{quote_ident(column)} "
                                f"IS {quote(str(meaning))}")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def quote(text: str) -> str:
    return quote_literal(text)


def audit_warehouse(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """Checks the new warehouse must pass before it may replace the published one."""
    checks = {
        "customers.customer_id is unique and not null":
            "SELECT count(*) FROM (SELECT customer_id FROM customers GROUP BY customer_id "
            "HAVING count(*) > 1 OR customer_id IS NULL)",
        "every source record belongs to a customer":
            "SELECT count(*) FROM source_records s ANTI JOIN customers c USING (customer_id)",
        "every customer has source records":
            "SELECT count(*) FROM customers c ANTI JOIN source_records s USING (customer_id)",
        "customer_360 has one row per customer":
            "SELECT (SELECT count(*) FROM customers) - (SELECT count(*) FROM customer_360 "
            "SEMI JOIN customers USING (customer_id)) + abs((SELECT count(*) FROM customer_360) "
            "- (SELECT count(DISTINCT customer_id) FROM customer_360))",
        "customer_policy_links point at customers":
            "SELECT count(*) FROM customer_policy_links ANTI JOIN customers USING (customer_id)",
        "source_records is not empty": "SELECT (count(*) = 0)::INTEGER FROM source_records",
    }
    for table in ("source_records", "match_pairs", "customers", "customer_policy_links",
                  "customer_360", "review_queue"):
        checks[f"{table} comes from run {run_id}"] = (
            f"SELECT count(*) FROM {table} WHERE run_id IS DISTINCT FROM {quote_literal(run_id)}")
    failed = [name for name, sql in checks.items() if con.execute(sql).fetchall()[0][0]]
    if failed:
        raise WarehouseAuditFailed("new warehouse not published, failed checks: " + "; ".join(failed))


def build_warehouse_file(run: RunPaths, path: Path, previous: Path, sequence: int,
                         version: str, mirror: Path) -> None:
    """Fill a new DuckDB file with every warehouse table, audit it, and write its Parquet mirror:
    golden's files are linked into the mirror and loaded from there, the other tables are
    written to the mirror from the DuckDB file."""
    mirror.mkdir(parents=True)
    link_golden_tables(run, mirror)
    with warehouse_writer(path) as con:
        prior: set[str] = set()
        if previous.exists():
            con.execute(f"ATTACH {sql_path(previous)} AS prev (READ_ONLY)")
            prior = previous_tables(con)
        queries = {**table_queries(con, run, prior), **linked_table_queries(mirror)}
        for table in WAREHOUSE_TABLES:
            if table in queries:
                con.execute(f"CREATE TABLE {table} AS {queries[table]}")
        con.execute(f"CREATE TABLE runs AS {runs_row_sql(con, run, sequence, version, prior)}")
        if previous.exists():
            con.execute("DETACH prev")
        audit_warehouse(con, run.run_id)
        audit_analyst_model(con, run.run_id)
        comment_tables(con)
        create_views(con)
        for table in WAREHOUSE_TABLES:
            if table not in LINKED_TABLES:
                con.execute(f"COPY {table} TO {sql_path(mirror / f'{table}.parquet')} "
                            f"({PARQUET_OPTIONS})")
        con.execute("CHECKPOINT")
    if Path(f"{path}.wal").exists():
        raise RuntimeError(f"{path}.wal left after close; the file would not be self-contained")


def swap_in(warehouse_dir: Path, building: Path, mirror: Path) -> None:
    """Point `parquet/current` at the new mirror, then rename the new DuckDB file into place."""
    link = mirror_root(warehouse_dir) / CURRENT_LINK
    tmp_link = mirror_root(warehouse_dir) / f".{CURRENT_LINK}-{mirror.name}"
    tmp_link.unlink(missing_ok=True)
    os.symlink(mirror.name, tmp_link)
    write_latest_pointer(warehouse_dir, mirror)
    os.replace(tmp_link, link)
    fileio.replace(building, warehouse_file_in(warehouse_dir))


def prune_mirrors(warehouse_dir: Path, keep: int = KEEP_MIRROR_VERSIONS) -> None:
    """Remove all but the newest `keep` mirror versions (never the current one)."""
    current = (mirror_root(warehouse_dir) / CURRENT_LINK).resolve()
    versions = sorted(p for p in mirror_root(warehouse_dir).iterdir()
                      if p.is_dir() and not p.is_symlink() and re.fullmatch(r"\d{6}-.*", p.name))
    for old in versions[:-keep]:
        if old.resolve() != current:
            shutil.rmtree(old, ignore_errors=True)


def publish_warehouse(run: RunPaths, warehouse_dir: Path | None = None,
                      before_swap: Callable[[], object] | None = None) -> Path:
    """Publish the run's tables as the warehouse (DuckDB + Parquet mirror); returns the DuckDB file.

    `before_swap` runs once the new warehouse is built and audited, just before it goes live (the
    ID registry commits there, so it never lags behind what readers can see).
    """
    warehouse_dir = Path(warehouse_dir or settings.warehouse_dir())
    with publish_lock(warehouse_dir):
        clear_abandoned_publish(warehouse_dir)
        sequence, version = next_version(warehouse_dir, run.run_id)
        building = warehouse_dir / f".building-{version}.duckdb"
        mirror = mirror_root(warehouse_dir) / version
        try:
            build_warehouse_file(run, building, warehouse_file_in(warehouse_dir), sequence,
                                 version, mirror)
            if before_swap is not None:
                before_swap()
            swap_in(warehouse_dir, building, mirror)
        except BaseException:
            building.unlink(missing_ok=True)
            Path(f"{building}.wal").unlink(missing_ok=True)
            if mirror.exists() and mirror != current_or_none(warehouse_dir):
                shutil.rmtree(mirror, ignore_errors=True)
            raise
        prune_mirrors(warehouse_dir, mirror_versions_kept())
    return warehouse_file_in(warehouse_dir)


def mirror_versions_kept() -> int:
    """How many mirror versions a publish keeps: the retention setting (schemas/identify.yaml);
    a reader still on an older version must re-resolve `current`."""
    from pipelines.orchestration.retention import load_retention

    return load_retention().mirror_versions


def clear_abandoned_publish(warehouse_dir: Path) -> list[Path]:
    """Remove what a publish killed mid-way left (call under the publish lock); returns it.

    A SIGKILL skips the cleanup in publish_warehouse: a half-built `.building-*.duckdb` (and WAL),
    a temporary `current` link or LATEST file, and mirror versions newer than the live one (publishes are
    serialized, so a version newer than `current` was never swapped in). Left there they would make
    the next attempt fail or keep half-written Parquet as if it were a version.
    """
    removed = [p for p in warehouse_dir.glob(".building-*") if p.is_file()]
    root = mirror_root(warehouse_dir)
    current = current_or_none(warehouse_dir)
    if root.is_dir():
        removed += [p for pattern in (f".{CURRENT_LINK}-*", f".{LATEST_FILE}-*")
                    for p in root.glob(pattern) if p.is_symlink() or p.exists()]
        live_sequence = version_sequence(current.name) if current is not None else 0
        removed += [p for p in root.iterdir()
                    if p.is_dir() and not p.is_symlink() and p != current
                    and (version_sequence(p.name) or 0) > (live_sequence or 0)]
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return removed


def version_sequence(name: str) -> int | None:
    match = re.fullmatch(r"\.?(\d{6})-.*", name)
    return int(match.group(1)) if match else None


def current_or_none(warehouse_dir: Path) -> Path | None:
    try:
        return current_mirror(warehouse_dir)
    except FileNotFoundError:
        return None


def duckdb_cli() -> Path:
    """The DuckDB CLI of this environment (PyPI's duckdb-cli, pinned in pyproject.toml)."""
    beside = Path(sys.executable).parent / "duckdb"
    found = beside if beside.exists() else shutil.which("duckdb")
    if not found:
        raise FileNotFoundError("no duckdb CLI: run `make setup` (installs the pinned duckdb-cli)")
    return Path(found)


def sql_shell_command(warehouse: Path | None = None, mirror: bool = False,
                      command: str | None = None) -> list[str]:
    """argv of a read-only DuckDB shell on the warehouse file, or on views over the current mirror."""
    argv = [str(duckdb_cli())]
    if mirror:
        folder = current_mirror(Path(warehouse).parent if warehouse else None)
        views = " ".join(f"CREATE VIEW {table} AS FROM read_parquet({sql_path(file)});"
                         for file in sorted(folder.glob("*.parquet")) for table in [file.stem])
        argv += ["-cmd", views]
    else:
        path = Path(warehouse or settings.warehouse_file())
        if not path.exists():
            raise FileNotFoundError(f"no warehouse at {path}: publish a run first (`ucv run`)")
        argv += ["-readonly", str(path)]
    return argv + (["-c", command] if command else [])
