"""Incremental standardization: an accepted row whose content did not change since the base
night is not standardized again; its staged records are copied from the base night.

Standardization is a function of one row (its mapped values), the mapping, the reference tables
and the libraries; nothing in it looks at other rows. So a row with the same content gives the
same canonical records, apart from its lineage (file, row number, run id), which are tonight's.
Each night writes, beside its staged records, `staged/fingerprints/<source>.parquet`: per staged
record its row's fingerprint (128 bits of hash over the source name and every value of the
accepted row, lineage left out) and how many records that row gave. `standardizer` (in the `.json` beside it) hashes the
mapping, the reference tables, the standardize code and the library versions: a night standardized
by other rules is never reused.

Erasure holds by construction: tonight's accepted rows are the universe (a tombstoned row never gets
here; a row redacted of a nested person has another fingerprint), and `ucv erase` deletes the
erased records' fingerprint rows with their staged rows, so a base row that lost a record to an
erasure (fewer fingerprint rows than it gave) is standardized afresh instead of reused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import duckdb

from pipelines import fileio, settings
from pipelines.ingest.mapping import SourceMapping
from pipelines.settings import RunPaths
from pipelines.sql import PARQUET_OPTIONS, quote_ident, quote_literal, quote_path

LINEAGE = ("_source_file", "_row_number", "_run_id")
FINGERPRINTS = "fingerprints"
# libraries whose answers are part of a canonical record
LIBRARIES = ("phonenumbers", "python-stdnum", "pypinyin", "anyascii", "nicknames",
             "email-validator", "opencc", "cantonese-romanisation", "babel", "faker",
             "google-re2", "jellyfish", "duckdb")


@dataclass
class ReuseStats:
    rows: int = 0
    rows_reused: int = 0
    rows_standardized: int = 0
    base_run: str | None = None
    reason: str | None = None  # why nothing was reused (no base night, other standardizer)


def fingerprints_path(run: RunPaths, source: str) -> Path:
    return run.staged_dir / FINGERPRINTS / f"{source}.parquet"


def standardizer_version(mapping: SourceMapping) -> str:
    """Hash of everything besides the row that decides its canonical records."""
    digest = hashlib.sha256()
    code = Path(__file__).resolve().parent
    files = [Path(mapping.file), settings.SCHEMAS_DIR / "canonical.yaml",
             *sorted((settings.SCHEMAS_DIR / "reference").glob("*")),
             *sorted(code.glob("*.py")), code.parent / "ingest" / "mapping.py"]
    if settings.CONFIG_DIR is not None:
        files += sorted((settings.CONFIG_DIR / "reference").glob("*"))
        files.append(settings.CONFIG_DIR / "canonical.yaml")
    for path in files:
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for name in LIBRARIES:
        try:
            digest.update(f"{name}={metadata.version(name)}\0".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{name}=-\0".encode())
    return digest.hexdigest()


def fingerprint_sql(source: str, columns: list[str]) -> str:
    """128 bits over the source name and the row's values, lineage out; columns by name, so a
    reordered export still matches. Two of DuckDB's 64-bit hashes (5x faster than md5 over JSON,
    measured): a false match of a changed row needs both to collide. The DuckDB version is part
    of the standardizer hash, so fingerprints are only compared between equal hash functions."""
    struct = "{" + ", ".join(f"{quote_literal(c)}: {quote_ident(c)}"
                             for c in sorted(c for c in columns if c not in LINEAGE)) + "}"
    return (f"((hash({struct})::UHUGEINT << 64) | "
            f"hash({quote_literal(source)}, {struct})::UHUGEINT)")


def write_fingerprints(con: duckdb.DuckDBPyConnection, mapping: SourceMapping, run: RunPaths,
                       version: str | None = None) -> Path:
    """staged/fingerprints/<source>.parquet for tonight's staged records (view `fp_rows` must
    hold tonight's accepted rows' fingerprints: _source_file, _row_number, fingerprint)."""
    staged = run.staged_dir / f"{mapping.name}.parquet"
    out = fingerprints_path(run, mapping.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    con.execute(f"""COPY (
        SELECT s.source_record_id, s.source_file, s.source_row_number, f.fingerprint,
               count(*) OVER (PARTITION BY s.source_file, s.source_row_number) AS records_in_row
        FROM read_parquet({quote_path(staged)}) s
        JOIN fp_rows f ON f._source_file = s.source_file AND f._row_number = s.source_row_number
        ) TO {quote_path(tmp)} ({PARQUET_OPTIONS})""")
    fileio.replace(tmp, out)
    out.with_suffix(".json").write_text(json.dumps(
        {"standardizer": version or standardizer_version(mapping)}) + "\n", encoding="utf-8")
    return out


def _fingerprint_rows(con: duckdb.DuckDBPyConnection, mapping: SourceMapping,
                      accepted: Path) -> None:
    columns = [r[0] for r in con.execute(
        f"DESCRIBE SELECT * FROM read_parquet({quote_path(accepted)})").fetchall()]
    con.execute(f"""CREATE OR REPLACE TEMP TABLE fp_rows AS
        SELECT _source_file, _row_number, {fingerprint_sql(mapping.name, columns)} AS fingerprint
        FROM read_parquet({quote_path(accepted)})""")


def base_usable(base: RunPaths | None, mapping: SourceMapping, version: str) -> str | None:
    """None when `base` can give rows to reuse, else why not."""
    if base is None:
        return "no earlier successful night"
    fp = fingerprints_path(base, mapping.name)
    staged = base.staged_dir / f"{mapping.name}.parquet"
    if not (fp.is_file() and staged.is_file() and fp.with_suffix(".json").is_file()):
        return f"night {base.run_id} has no fingerprints for {mapping.name}"
    stored = json.loads(fp.with_suffix(".json").read_text(encoding="utf-8")).get("standardizer")
    if stored != version:
        return f"night {base.run_id} was standardized by other rules (mapping, reference or code)"
    return None


def standardize_incremental(mapping: SourceMapping, run: RunPaths, base: RunPaths | None
                            ) -> tuple[Path, ReuseStats]:
    """accepted/<source> -> staged/<source> (+ fingerprints), reusing the base night's staged
    records of unchanged rows and standardizing only the others. `base=None`: all afresh."""
    from pipelines.standardize.records import standardize_source

    accepted = run.accepted_dir / f"{mapping.name}.parquet"
    if not accepted.exists():
        raise FileNotFoundError(f"{accepted} does not exist: validate {mapping.name!r} first")
    version = standardizer_version(mapping)
    stats = ReuseStats(base_run=base.run_id if base else None)
    stats.reason = base_usable(base, mapping, version)
    out = run.staged_dir / f"{mapping.name}.parquet"
    with duckdb.connect(config=settings.duckdb_config()) as con:
        _fingerprint_rows(con, mapping, accepted)
        stats.rows = con.execute("SELECT count(*) FROM fp_rows").fetchall()[0][0]
        if stats.reason is not None:
            standardize_source(mapping, run)
            stats.rows_standardized = stats.rows
            write_fingerprints(con, mapping, run, version)
            return out, stats
        assert base is not None
        base_fp = fingerprints_path(base, mapping.name)
        base_staged = base.staged_dir / f"{mapping.name}.parquet"
        # a base row is reusable when it still has every record it gave (none erased since);
        # identical rows share a fingerprint, any of them will do (same content, same records)
        con.execute(f"""CREATE TEMP TABLE reusable AS
            SELECT fingerprint, k.f AS b_file, k.r AS b_row FROM (
                SELECT fingerprint, min({{'f': source_file, 'r': source_row_number}}) AS k
                FROM (SELECT fingerprint, source_file, source_row_number
                      FROM read_parquet({quote_path(base_fp)})
                      GROUP BY ALL HAVING count(*) = max(records_in_row))
                GROUP BY fingerprint)""")
        con.execute("""CREATE TEMP TABLE reuse_map AS
            SELECT f._source_file, f._row_number, r.b_file, r.b_row
            FROM fp_rows f JOIN reusable r USING (fingerprint)""")
        stats.rows_reused = con.execute("SELECT count(*) FROM reuse_map").fetchall()[0][0]
        stats.rows_standardized = stats.rows - stats.rows_reused
        # the changed and new rows go through standardization as a run of their own
        scratch = RunPaths(run_id=run.run_id, root=run.staged_dir / ".incremental")
        shutil.rmtree(scratch.root, ignore_errors=True)
        scratch.accepted_dir.mkdir(parents=True)
        con.execute(f"""COPY (SELECT a.* FROM read_parquet({quote_path(accepted)}) a
                              ANTI JOIN reuse_map m ON m._source_file = a._source_file
                                                   AND m._row_number = a._row_number)
                        TO {quote_path(scratch.accepted_dir / (mapping.name + '.parquet'))}
                        (FORMAT parquet)""")
        fresh = standardize_source(mapping, scratch)
        columns = [r[0] for r in con.execute(
            f"DESCRIBE SELECT * FROM read_parquet({quote_path(fresh)})").fetchall()]
        select = ", ".join(
            {"source_file": "m._source_file AS source_file",
             "source_row_number": "m._row_number AS source_row_number",
             "run_id": f"{quote_literal(run.run_id)} AS run_id"}.get(c, f"b.{quote_ident(c)}")
            for c in columns)
        tmp = out.with_name(f".{out.name}.tmp")
        # the order standardize_source writes (its rows' order): the same file as a full night
        con.execute(f"""COPY (
            SELECT * FROM (
                SELECT {select} FROM read_parquet({quote_path(base_staged)}) b
                JOIN reuse_map m ON m.b_file = b.source_file AND m.b_row = b.source_row_number
                UNION ALL BY NAME SELECT * FROM read_parquet({quote_path(fresh)}))
            ORDER BY source_file, source_row_number, source_part NULLS FIRST, source_key)
            TO {quote_path(tmp)} ({PARQUET_OPTIONS})""")
        fileio.replace(tmp, out)
        shutil.rmtree(scratch.root, ignore_errors=True)
        write_fingerprints(con, mapping, run, version)
    return out, stats
