"""export_marketing: the morning file of consenting, high-confidence customers, ready for campaigns.

Reads the run's own golden outputs (golden/customers.parquet, golden/customer_360.parquet), so the
export of a date always matches that run, whatever is published at the time. Writes, into
`export/<date>/`:
- `marketing_customers_<date>.parquet` (the primary artefact, typed) and `.csv` (the same values);
- `marketing_delta_<date>.*`: customers new, changed or removed since the previous export;
- `marketing_suppression_<date>.*`: per customer and channel, withdrawals and erasures since then;
- `manifest.json` (schema with types, files with rows and sha256, the previous export it follows,
  the CSV rules) and `export_summary.json` (sizes, columns, consent counts, for the run report).
Every file is written under a temporary name and renamed into place; the manifest comes last, so a
consumer that waits for it never reads a half-written file.

CSV cells are made inert against spreadsheet formula injection (OWASP "CSV Injection") without
changing what consumers read: a cell that starts with = + - @ tab, CR, LF or a full-width ＝＋－＠
gets a leading apostrophe, unless it is provably inert (an E.164 phone number or a decimal
number: constants whatever a spreadsheet makes of them); a cell that itself starts with an
apostrophe gets one more. Removing one leading apostrophe from every cell that has one gives the
Parquet value back, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import date
from pathlib import Path

import duckdb

from pipelines import settings
from pipelines.golden.build import sql_path
from pipelines.golden.config import survivorship_config
from pipelines.settings import RunPaths

# first characters a spreadsheet may read as a formula (ASCII and full-width forms)
FORMULA_TRIGGERS = "=+-@\t\r\n\uff1d\uff0b\uff0d\uff20"
ESCAPE = "'"
# Cells that start with a trigger but can only ever be a numeric constant: kept byte-exact.
INERT_PATTERNS = {
    "e164_phone": r"\+[1-9][0-9]{1,14}",
    "decimal": r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?",
}
INERT_RE = re.compile("|".join(f"(?:{p})" for p in INERT_PATTERNS.values()))
CHANNELS = ("email", "sms", "phone", "post")
CONSENT_RULE = ("per channel, the most recent explicit statement wins: the channel's own golden "
                "consent (consent_<channel>, its timestamp) or the general marketing_consent for the "
                "channels it covers (general_consent_channels), whichever is newer; at the same "
                "moment a withdrawal wins; NULL = no statement. A customer is exported when at "
                "least one channel is consented; contact details of unconsented channels are empty")
CSV_RULES = {
    "encoding": "UTF-8 without BOM",
    "delimiter": ",",
    "quote": "every non-NULL cell double-quoted; a double quote inside is doubled (RFC 4180)",
    "line_end": "CRLF",
    "null": "an empty unquoted field is NULL; \"\" is the empty string",
    "formula_safety": (
        "a cell starting with an apostrophe, or with one of = + - @ TAB CR LF ＝ ＋ － ＠ and not "
        "matching an inert pattern, is written with one leading apostrophe (')"),
    "inert_patterns": INERT_PATTERNS,
    "reverse": "remove one leading apostrophe from every cell that starts with one",
    "text_forms": {
        "TIMESTAMP WITH TIME ZONE": "ISO 8601 in UTC, microseconds: 2026-11-22T08:00:00.000000Z",
        "DATE": "ISO 8601: 2026-11-22",
        "DOUBLE": "shortest decimal that reads back as the same double",
        "BOOLEAN": "true / false",
        "lists and structs": "JSON",
    },
}


def inert_cell(value: str) -> str:
    """One CSV cell made safe to open in a spreadsheet (the Python twin of inert_cell_sql)."""
    if value.startswith(ESCAPE) or (value[:1] != "" and value[0] in FORMULA_TRIGGERS
                                    and not INERT_RE.fullmatch(value)):
        return ESCAPE + value
    return value


def restore_cell(cell: str) -> str:
    """The value an inert cell was made from (inverse of inert_cell)."""
    return cell[1:] if cell.startswith(ESCAPE) else cell


def inert_cell_sql(expr: str) -> str:
    """SQL: the escaped text of a VARCHAR expression (see inert_cell)."""
    triggers = ", ".join(f"chr({ord(c)})" for c in FORMULA_TRIGGERS)
    inert = "|".join(f"(?:{p})" for p in INERT_PATTERNS.values())
    return (f"CASE WHEN left({expr}, 1) = chr(39) OR (left({expr}, 1) IN ({triggers}) "
            f"AND NOT regexp_full_match({expr}, '{inert}')) THEN chr(39) || {expr} ELSE {expr} END")


def text_form_sql(column: str, dtype: str) -> str:
    """SQL: a typed column as the text the CSV carries (see CSV_RULES['text_forms'])."""
    if dtype == "TIMESTAMP WITH TIME ZONE":
        return f"strftime({column}, '%Y-%m-%dT%H:%M:%S.%fZ')"  # the session's zone is UTC
    if dtype == "TIMESTAMP":
        return f"strftime({column}, '%Y-%m-%dT%H:%M:%S.%f')"
    if dtype.endswith("]") or dtype.startswith(("STRUCT", "MAP", "JSON")):
        return f"CAST(to_json({column}) AS VARCHAR)"
    return f"CAST({column} AS VARCHAR)"


def write_safe_csv(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> None:
    """Every cell as text in its documented form, formula triggers neutralised reversibly."""
    con.execute("SET TimeZone = 'UTC'")
    described = con.execute(f"DESCRIBE {query}").fetchall()
    cells = ", ".join(f'{inert_cell_sql(text_form_sql(f"q.{quote_name(name)}", dtype))} '
                      f"AS {quote_name(name)}" for name, dtype, *_ in described)
    con.execute(f"COPY (SELECT {cells} FROM ({query}) q) TO {sql_path(path)} "
                "(FORMAT csv, HEADER true, DELIMITER ',', QUOTE '\"', ESCAPE '\"', "
                "FORCE_QUOTE *, NEW_LINE '\\r\\n')")


def quote_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def utc_sql(expr: str) -> str:
    """A naive UTC TIMESTAMP as a zoned TIMESTAMPTZ (the contract stores timestamps in UTC)."""
    return f"timezone('UTC', CAST({expr} AS TIMESTAMP))"


def consent_sql(config: dict) -> str:
    """One row per customer: effective consent, its as-of (UTC) and its basis, per channel."""
    general = set(config.get("general_consent_channels", CHANNELS))
    bases, values = [], []
    for ch in CHANNELS:
        own, own_at = f"consent_{ch}", f"consent_{ch}_as_of"
        gen, gen_at = (("marketing_consent", "marketing_consent_as_of") if ch in general
                       else ("CAST(NULL AS BOOLEAN)", "CAST(NULL AS TIMESTAMP)"))
        bases.append(
            f"CASE WHEN {own} IS NULL AND {gen} IS NULL THEN NULL "
            f"WHEN {gen} IS NULL THEN 'channel' WHEN {own} IS NULL THEN 'general' "
            f"WHEN {own_at} > {gen_at} THEN 'channel' WHEN {gen_at} > {own_at} THEN 'general' "
            f"WHEN NOT {own} THEN 'channel' ELSE 'general' END AS basis_{ch}")  # tie: withdrawal
        as_of = f"CASE basis_{ch} WHEN 'channel' THEN {own_at} WHEN 'general' THEN {gen_at} END"
        values += [f"CASE basis_{ch} WHEN 'channel' THEN {own} WHEN 'general' THEN {gen} END "
                   f"AS consent_{ch}",
                   f"{utc_sql(as_of)} AS consent_{ch}_as_of",
                   f"basis_{ch} AS consent_{ch}_basis"]
    return f"""
        SELECT customer_id, {", ".join(values)}
        FROM (SELECT *, {", ".join(bases)} FROM golden_customers)
    """


def contact_sql(config: dict) -> dict[str, str]:
    """Export column -> SQL over golden customers `c`, consent `e` and profile `p`."""
    masked = bool(config.get("contact_requires_consent", True))

    def only_if(expr: str, *channels: str) -> str:
        if not masked:
            return expr
        return f"CASE WHEN {' OR '.join(f'e.consent_{ch}' for ch in channels)} THEN {expr} END"

    columns = {
        "customer_id": "c.customer_id", "party_type": "c.party_type",
        "salutation": "c.salutation", "display_name": "c.display_name",
        "given_name": "c.given_name_display", "family_name": "c.family_name_display",
        "org_name": "c.org_name_display", "name_native": "c.name_native",
        "email": only_if("c.email", "email"),
        "phone_mobile": only_if("c.phone_mobile", "sms", "phone"),
        "phone_landline": only_if("c.phone_landline", "phone"),
        "street": only_if("c.street_display", "post"),
        "house_number": only_if("c.house_number_display", "post"),
        "postcode": only_if("c.postcode", "post"),
        "city": only_if("c.city_display", "post"),
        "country": "c.country", "language": "c.language",
        "preferred_channel": "c.preferred_channel", "confidence": "c.confidence",
    }
    for ch in CHANNELS:
        columns[f"consent_{ch}"] = f"e.consent_{ch}"
        columns[f"consent_{ch}_as_of"] = f"e.consent_{ch}_as_of"
    return columns


def export_columns(config: dict, profile_columns: set[str]) -> dict[str, str]:
    """The configured columns then the segment columns, each with its SQL; unknown names fail."""
    available = contact_sql(config)
    columns = {}
    for name in config["columns"]:
        if name not in available:
            raise ValueError(f"marketing_export.columns: unknown column {name!r}; "
                             f"known: {', '.join(sorted(available))}")
        columns[name] = available[name]
    for name in config.get("segment_columns") or []:
        if name not in profile_columns:
            raise ValueError(f"marketing_export.segment_columns: {name!r} is not a customer_360 "
                             f"column; known: {', '.join(sorted(profile_columns))}")
        columns[name] = f"p.{quote_name(name)}"
    return columns


def previous_export(export_root: Path, export_date: date) -> Path | None:
    """The folder of the latest complete export before `export_date` (None for the first)."""
    dated = [p for p in export_root.glob("????-??-??") if (p / "manifest.json").exists()
             and re.fullmatch(r"\d{4}-\d{2}-\d{2}", p.name) and p.name < export_date.isoformat()]
    return max(dated, default=None)


def snapshot_file(folder: Path) -> Path:
    """The snapshot Parquet file an export folder's manifest names."""
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    for name, entry in manifest["files"].items():
        if entry.get("role", "snapshot") == "snapshot" and entry["format"] == "parquet":
            return folder / name
    raise FileNotFoundError(f"{folder / 'manifest.json'} names no snapshot Parquet file")


def load_export_tables(con: duckdb.DuckDBPyConnection, run: RunPaths, config: dict,
                       threshold: float, previous: Path | None) -> list[str]:
    """Tables `golden_customers`, `consent`, `export`, `previous_export`, `history`; the columns."""
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TABLE golden_customers AS SELECT * FROM read_parquet("
                f"{sql_path(run.golden_dir / 'customers.parquet')})")
    con.execute("CREATE TABLE profile AS SELECT * FROM read_parquet("
                f"{sql_path(run.golden_dir / 'customer_360.parquet')})")
    con.execute(f"CREATE TABLE consent AS {consent_sql(config)}")
    profile_columns = {r[0] for r in con.execute("DESCRIBE profile").fetchall()}
    columns = export_columns(config, profile_columns)
    select = ", ".join(f"{sql} AS {quote_name(name)}" for name, sql in columns.items())
    any_consent = " OR ".join(f"e.consent_{ch}" for ch in CHANNELS)
    con.execute(f"""
        CREATE TABLE export AS
        SELECT {select}
        FROM golden_customers c JOIN consent e USING (customer_id)
        LEFT JOIN profile p USING (customer_id)
        WHERE c.confidence >= $threshold AND ({any_consent}) IS TRUE
        ORDER BY c.customer_id
    """, {"threshold": threshold})
    if previous is not None:
        con.execute("CREATE TABLE previous_export AS SELECT * FROM read_parquet($path)",
                    {"path": str(snapshot_file(previous))})
    else:
        con.execute("CREATE TABLE previous_export AS SELECT * FROM export WHERE FALSE")
    history = run.identified_dir / "customer_id_history.parquet"
    if history.exists():
        con.execute("CREATE TABLE history AS SELECT customer_id, event, related_customer_id "
                    "FROM read_parquet($path)", {"path": str(history)})
    else:
        con.execute("CREATE TABLE history (customer_id VARCHAR, event VARCHAR, "
                    "related_customer_id VARCHAR)")
    return list(columns)


def delta_sql(columns: list[str], previous_columns: list[str], ignore: list[str]) -> str:
    """new / changed / removed customers against the previous export, with the current values."""
    compared = [c for c in columns if c not in ignore and c in previous_columns]
    if set(compared) != {c for c in columns if c not in ignore}:
        changed = "TRUE"  # the export's columns changed: every kept customer counts as changed
    else:
        changed = " OR ".join(f"cur.{quote_name(c)} IS DISTINCT FROM prev.{quote_name(c)}"
                              for c in compared) or "FALSE"
    current = ", ".join(f"cur.{quote_name(c)}" for c in columns if c != "customer_id")
    return f"""
        SELECT CASE WHEN prev.customer_id IS NULL THEN 'new'
                    WHEN cur.customer_id IS NULL THEN 'removed' ELSE 'changed' END AS change,
               CASE WHEN cur.customer_id IS NULL THEN coalesce(
                   (SELECT arg_min(h.event || coalesce(':' || h.related_customer_id, ''),
                                   list_position(['erased', 'merged', 'retired', 'split'], h.event))
                    FROM history h WHERE h.customer_id = prev.customer_id
                      AND h.event IN ('erased', 'merged', 'retired', 'split')),
                   CASE WHEN g.customer_id IS NULL THEN 'not_a_customer'
                        WHEN NOT coalesce(e.consent_email OR e.consent_sms OR e.consent_phone
                                          OR e.consent_post, FALSE) THEN 'no_consent'
                        ELSE 'below_confidence' END) END AS reason,
               coalesce(cur.customer_id, prev.customer_id) AS customer_id, {current}
        FROM export cur
        FULL JOIN previous_export prev ON prev.customer_id = cur.customer_id
        LEFT JOIN golden_customers g ON g.customer_id = prev.customer_id
        LEFT JOIN consent e ON e.customer_id = prev.customer_id
        WHERE prev.customer_id IS NULL OR cur.customer_id IS NULL OR ({changed})
        ORDER BY customer_id
    """


def suppression_sql(previous_columns: list[str], first_export: bool) -> str:
    """Per (customer, channel): a withdrawal since the previous export, or an erasure. No PII."""
    previously = [f"SELECT customer_id, '{ch}' AS channel FROM previous_export "
                  f"WHERE consent_{ch} IS TRUE" for ch in CHANNELS
                  if f"consent_{ch}" in previous_columns]
    if "marketing_consent" in previous_columns:  # exports written before per-channel consent
        previously += [f"SELECT customer_id, '{ch}' FROM previous_export "
                       "WHERE marketing_consent IS TRUE" for ch in CHANNELS]
    withdrawn = " UNION ALL ".join(
        f"SELECT customer_id, '{ch}' AS channel, consent_{ch}_as_of AS as_of FROM consent "
        f"WHERE consent_{ch} IS FALSE" for ch in CHANNELS)
    since = "TRUE" if first_export else "w.as_of >= CAST($since AS TIMESTAMPTZ)"
    previous_union = " UNION ".join(previously) or (
        "SELECT CAST(NULL AS VARCHAR) AS customer_id, CAST(NULL AS VARCHAR) AS channel WHERE FALSE")
    channels = ", ".join(f"('{ch}')" for ch in CHANNELS)
    return f"""
        WITH previously AS ({previous_union}),
        withdrawn AS ({withdrawn}),
        erased AS (SELECT DISTINCT customer_id FROM history WHERE event = 'erased')
        SELECT w.customer_id, w.channel, 'withdrawn' AS reason, w.as_of
        FROM withdrawn w
        WHERE w.customer_id NOT IN (SELECT customer_id FROM erased)
          AND ({since} OR EXISTS (SELECT 1 FROM previously p
                                  WHERE p.customer_id = w.customer_id AND p.channel = w.channel))
        UNION ALL
        SELECT x.customer_id, ch.channel, 'erased', CAST(NULL AS TIMESTAMPTZ)
        FROM erased x, (VALUES {channels}) ch(channel)
        ORDER BY customer_id, channel
    """


def consent_counts(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, dict[str, int]]:
    """Per channel: customers with consent true, false and without a statement."""
    counts = {}
    for ch in CHANNELS:
        row = con.execute(f"SELECT count(*) FILTER (WHERE consent_{ch}), "
                          f"count(*) FILTER (WHERE NOT consent_{ch}), "
                          f"count(*) FILTER (WHERE consent_{ch} IS NULL) FROM {table}").fetchall()[0]
        counts[ch] = {"true": row[0], "false": row[1], "unknown": row[2]}
    return counts


def export_marketing(run: RunPaths, export_date: date, export_dir: Path | None = None,
                     min_confidence: float | None = None) -> Path:
    """Write the dated marketing export (snapshot, delta, suppression) and its manifest; returns
    the snapshot Parquet file's path."""
    config = survivorship_config()["marketing_export"]
    threshold = float(config["min_confidence"] if min_confidence is None else min_confidence)
    export_root = Path(export_dir or settings.export_dir())
    folder = export_root / export_date.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    previous = previous_export(export_root, export_date)
    day = export_date.isoformat()
    outputs = {"snapshot": f"marketing_customers_{day}", "delta": f"marketing_delta_{day}",
               "suppression": f"marketing_suppression_{day}"}
    written: dict[str, dict] = {}
    with duckdb.connect() as con:
        columns = load_export_tables(con, run, config, threshold, previous)
        previous_columns = [r[0] for r in con.execute("DESCRIBE previous_export").fetchall()]
        queries = {
            "snapshot": "SELECT * FROM export",
            "delta": delta_sql(columns, previous_columns, config.get("delta_ignore_columns") or []),
            "suppression": suppression_sql(previous_columns, first_export=previous is None),
        }
        params = {"suppression": {"since": f"{previous.name} 00:00:00+00"} if previous else {}}
        for role, query in queries.items():
            con.execute(f"CREATE TABLE out_{role} AS {query}", params.get(role) or {})
            rows = con.execute(f"SELECT count(*) FROM out_{role}").fetchall()[0][0]
            for kind in ("parquet", "csv"):
                path = folder / f"{outputs[role]}.{kind}"
                tmp = folder / f".{path.name}.tmp"
                if kind == "parquet":
                    con.execute(f"COPY out_{role} TO {sql_path(tmp)} (FORMAT parquet)")
                else:
                    write_safe_csv(con, f"SELECT * FROM out_{role}", tmp)
                written[path.name] = {"format": kind, "role": role, "rows": rows,
                                      "bytes": tmp.stat().st_size, "sha256": sha256_of(tmp),
                                      "tmp": tmp, "path": path}
        schema = [{"name": r[0], "type": r[1]} for r in con.execute("DESCRIBE export").fetchall()]
        summary_counts = {
            "consent_exported": consent_counts(con, "export"),
            "consent_all_customers": consent_counts(con, "consent"),
            "delta": dict(con.execute("SELECT change, count(*) FROM out_delta GROUP BY ALL "
                                      "ORDER BY ALL").fetchall()),
            "suppression": dict(con.execute("SELECT reason, count(*) FROM out_suppression "
                                            "GROUP BY ALL ORDER BY ALL").fetchall()),
            "rows_without_country": con.execute(
                "SELECT count(*) FROM export WHERE country IS NULL").fetchall()[0][0]
                if "country" in columns else None,
        }
    follows = None
    if previous is not None:
        prior = json.loads((previous / "manifest.json").read_text(encoding="utf-8"))
        follows = {"export_date": previous.name, "run_id": prior.get("run_id"),
                   "manifest_sha256": sha256_of(previous / "manifest.json")}
    rows = written[f"{outputs['snapshot']}.parquet"]["rows"]
    manifest = {
        "run_id": run.run_id,
        "export_date": day,
        "min_confidence": threshold,
        "consent_rule": CONSENT_RULE,
        "row_count": rows,
        "columns": columns,
        "schema": schema,
        "follows": follows,
        "delta_ignores": config.get("delta_ignore_columns") or [],
        "csv": CSV_RULES,
        "files": {name: {k: v for k, v in entry.items() if k not in ("tmp", "path")}
                  for name, entry in written.items()},
    }
    summary = {
        "run_id": run.run_id, "export_date": day, "folder": str(folder),
        "rows": rows, "columns": len(columns), "column_names": columns,
        "bytes": {name: entry["bytes"] for name, entry in written.items()},
        "files": {name: entry["rows"] for name, entry in written.items()},
        "follows": follows["export_date"] if follows else None,
        **summary_counts,
    }
    (folder / "manifest.json").unlink(missing_ok=True)  # no manifest describing other files
    for entry in written.values():
        os.replace(entry["tmp"], entry["path"])
    for path, content in ((folder / "export_summary.json", summary),
                          (run.root / "export_summary.json", summary),
                          (folder / "manifest.json", manifest)):  # the manifest last
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(content, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    return written[f"{outputs['snapshot']}.parquet"]["path"]
