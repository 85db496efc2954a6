"""export_marketing: the morning file of consenting, high-confidence customers (Parquet + CSV).

Reads the run's own golden outputs (golden/customers.parquet, golden/customer_360.parquet), so the
export of a date always matches that run, whatever is published at the time. Writes
`export/<date>/marketing_customers_<date>.parquet|csv` and `manifest.json` (row count, sha256 of
each file, threshold, run_id), each under a temporary name renamed into place; the manifest comes
last, so a consumer that waits for it never reads a half-written file.

CSV cells are made inert against spreadsheet formula injection (OWASP "CSV Injection"): a cell
that starts with = + - @ tab, carriage return or line feed (or their full-width forms) gets a
single quote in front. That includes E.164 phone numbers (`'+4915...`): spreadsheets show them
without the quote and keep them as text; the Parquet file carries the numbers unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import date
from pathlib import Path

import duckdb

from pipelines import settings
from pipelines.golden.build import sql_path
from pipelines.golden.config import survivorship_config
from pipelines.settings import RunPaths

# first characters a spreadsheet may read as a formula (ASCII and full-width forms)
FORMULA_TRIGGERS = "=+-@\t\r\n\uff1d\uff0b\uff0d\uff20"
CONSENT_RULE = ("golden marketing_consent: the most recent explicit statement across sources wins "
                "(NULL = source says nothing, not a candidate); a withdrawal beats an opt-in made "
                "at the same time")


def inert_cell(value: str) -> str:
    """One CSV cell made safe to open in a spreadsheet (the Python twin of INERT_CELL_SQL)."""
    return "'" + value if value[:1] and value[0] in FORMULA_TRIGGERS else value


def inert_cell_sql(expr: str) -> str:
    """SQL: prefix a single quote when the text starts with a formula trigger."""
    triggers = ", ".join(f"chr({ord(c)})" for c in FORMULA_TRIGGERS)
    return f"CASE WHEN left({expr}, 1) IN ({triggers}) THEN chr(39) || {expr} ELSE {expr} END"


def marketing_rows_sql(run: RunPaths, min_confidence: float, columns: list[str]) -> str:
    """Customers at or above the confidence threshold whose golden consent is an opt-in."""
    customers = sql_path(run.golden_dir / "customers.parquet")
    profiles = sql_path(run.golden_dir / "customer_360.parquet")
    available = {
        "display_name": """CASE WHEN c.party_type = 'organization' THEN c.org_name
                                WHEN c.name_script = 'han' THEN c.family_name || c.given_name
                                ELSE concat_ws(' ', c.given_name, c.family_name) END""",
        "value_tier": "p.value_tier",
    }
    select = ", ".join(f"{available.get(col, 'c.' + col)} AS {col}" for col in columns)
    return f"""
        SELECT {select}
        FROM read_parquet({customers}) c
        LEFT JOIN read_parquet({profiles}) p USING (customer_id)
        WHERE c.marketing_consent IS TRUE AND c.confidence >= {float(min_confidence)}
        ORDER BY c.customer_id
    """


def write_safe_csv(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> None:
    """Every cell as text, formula triggers neutralised, every cell quoted (RFC 4180 escaping)."""
    columns = [r[0] for r in con.execute(f"DESCRIBE {query}").fetchall()]
    cells = ", ".join(f'{inert_cell_sql(f"CAST(q.{c} AS VARCHAR)")} AS {c}' for c in columns)
    con.execute(f"COPY (SELECT {cells} FROM ({query}) q) TO {sql_path(path)} "
                "(FORMAT csv, HEADER true, DELIMITER ',', QUOTE '\"', ESCAPE '\"', "
                "FORCE_QUOTE *, NEW_LINE '\\r\\n')")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_marketing(run: RunPaths, export_date: date, export_dir: Path | None = None,
                     min_confidence: float | None = None) -> Path:
    """Write the dated marketing export and its manifest; returns the Parquet file's path."""
    config = survivorship_config()["marketing_export"]
    threshold = float(config["min_confidence"] if min_confidence is None else min_confidence)
    folder = Path(export_dir or settings.export_dir()) / export_date.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"marketing_customers_{export_date.isoformat()}"
    final = {"parquet": folder / f"{stem}.parquet", "csv": folder / f"{stem}.csv"}
    tmp = {kind: folder / f".{p.name}.tmp" for kind, p in final.items()}
    query = marketing_rows_sql(run, threshold, config["columns"])
    with duckdb.connect() as con:
        con.execute(f"CREATE TABLE export AS {query}")
        rows = con.execute("SELECT count(*) FROM export").fetchall()[0][0]
        con.execute(f"COPY export TO {sql_path(tmp['parquet'])} (FORMAT parquet)")
        write_safe_csv(con, "SELECT * FROM export", tmp["csv"])
    manifest = {
        "run_id": run.run_id,
        "export_date": export_date.isoformat(),
        "min_confidence": threshold,
        "consent_rule": CONSENT_RULE,
        "row_count": rows,
        "columns": config["columns"],
        "csv": "UTF-8, comma, every cell double-quoted, CRLF; cells starting with = + - @ tab CR "
               "LF are prefixed with a single quote (OWASP CSV injection), phones included",
        "files": {},
    }
    (folder / "manifest.json").unlink(missing_ok=True)  # no manifest describing other files
    for kind, path in final.items():
        manifest["files"][path.name] = {"format": kind, "rows": rows,
                                        "bytes": tmp[kind].stat().st_size,
                                        "sha256": sha256_of(tmp[kind])}
        os.replace(tmp[kind], path)
    manifest_tmp = folder / ".manifest.json.tmp"
    manifest_tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(manifest_tmp, folder / "manifest.json")
    return final["parquet"]
