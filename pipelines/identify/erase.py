"""`ucv erase`: remove a person for good (GDPR Art. 17) from everything the pipeline keeps.

A request names a person by customer ID, e-mail, phone or national ID (each resolves to the
customers holding it, and all their source records are erased), or by source record (that record
only). Then, under the publish lock:

1. tombstones — salted hashes of every key of the erased records (record key, e-mails, phones,
   national IDs) — are added (`tombstone.py`), so later nights and reruns drop them at extract;
2. every landed export in the data root is redacted (the rows removed, through extract itself;
   an erased person nested in another person's row — a claimant, a co-insured — is taken out of
   that row, which stays; a row whose own person is erased stays, emptied of them, for the other
   people nested in it);
3. every Parquet file in run folders, the warehouse mirror versions and the dated exports, and
   the live DuckDB warehouse, is rewritten without the erased rows (and raw-shaped rows of run
   folders and quarantine without their erased nested records, or emptied of their own erased
   person where they hold other people, as extract does) — record-level rows of erased
   records, customer-level rows (golden record, 360, policy links, marketing rows) of every customer
   that held one (a surviving customer gets its golden record back at the next night) — always
   written beside the file and renamed over it, so a reader sees the old or the new file, and the
   file holds no leftover pages of the old data;
4. other files of run folders (charts, reports) that contain a value of the erased records are
   deleted (Splink's waterfall charts show record values); legacy baseline snapshots are deleted;
5. the ID registry replaces the erased record keys by their hashes and records an `erased` event
   for every customer with no record left (the ID is never reused);
6. steward overrides naming an erased record are removed from the override file.

The erasure report (counts and locations, no personal data) is printed and stored in
`data/registry/erasures/<number>.json`. Run it when no pipeline run is in progress.
"""

from __future__ import annotations

import csv
import functools
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import fileio, settings
from pipelines.identify import tombstone
from pipelines.identify.registry import LIVE_MAP_SQL, open_registry, registry_file
from pipelines.settings import RunPaths
from pipelines.sql import quote_ident, quote_path

if TYPE_CHECKING:
    from pipelines.ingest.mapping import SourceMapping

CANONICAL_KEYS = {"email": ["email"], "phone": ["phone_mobile", "phone_landline"],
                  "national_id": ["national_id"]}
LITERAL_COLUMNS = ("full_name", "given_name", "family_name", "name_native", "org_name",
                   "national_id", "registration_id", "phone_mobile", "phone_landline", "email",
                   "street")
MIN_LITERAL = 5  # shorter values (a city code, "Li") say nothing about one person
RUN_TEXT_SUFFIXES = (".html", ".md", ".json", ".txt", ".csv", ".log")
# a customer-level table of only these columns holds no personal data (the marketing suppression
# list: customer, channel, why): its rows stay, an erased customer's included
ID_ONLY_COLUMNS = {"customer_id", "related_customer_id", "channel", "reason", "as_of", "event",
                   "run_id", "publication", "party_type", "n_records"}


@dataclass
class ErasureRequest:
    """Who to erase; any mix of keys, each may be given several times."""

    customer_ids: list[str] = field(default_factory=list)
    source_records: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    national_ids: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not any(asdict(self).values())


@dataclass
class ErasureReport:
    """What an erasure did, without personal data."""

    erasure: int
    requested: dict[str, int]
    records_erased: int = 0
    customers_erased: list[str] = field(default_factory=list)
    customers_touched: int = 0
    tombstones_added: int = 0
    overrides_removed: int = 0
    locations: list[dict] = field(default_factory=list)
    report_file: str = ""

    def cleaned(self, path: Path, rows: int | None = None, action: str = "rewritten",
                records: int = 0, redacted: int = 0) -> None:
        """One location cleaned; `records`: erased persons taken out of rows that stay;
        `redacted`: rows emptied of their own erased person, kept for the people nested in them."""
        where = path.relative_to(settings.data_root()) if path.is_relative_to(
            settings.data_root()) else path
        self.locations.append({"location": str(where), "action": action,
                               **({"rows_removed": rows} if rows is not None else {}),
                               **({"nested_records_removed": records} if records else {}),
                               **({"rows_redacted": redacted} if redacted else {})})


class NothingToErase(LookupError):
    """No record in the warehouse or any kept run folder carries the given keys."""


def erase(request: ErasureRequest) -> ErasureReport:
    """Erase the persons the request names from every location; returns the report."""
    from pipelines.golden.publish import publish_lock

    if request.is_empty():
        raise ValueError("name at least one customer ID, source record, e-mail, phone or national ID")
    with publish_lock(settings.warehouse_dir()):
        records = candidate_records()
        erased, touched, keys = resolve_request(request, records)
        if not erased:
            raise NothingToErase("no record in the warehouse or the kept run folders carries "
                                 "the given keys")
        report = ErasureReport(erasure=_next_erasure_number(),
                               requested={k: len(v) for k, v in asdict(request).items() if v})
        report.records_erased = len(erased)
        report.customers_touched = len(touched)
        report.tombstones_added = tombstone.add_tombstones(keys)
        hashes = tombstone.load_hashes()
        literals = literal_values(records[records["source_record_id"].isin(erased)])
        scope = Scope(erased=erased, touched=touched, hashes=hashes)
        redact_landing(report)
        for path in sorted(settings.data_root().glob("runs/*/baseline")):
            shutil.rmtree(path)
            report.cleaned(path, action="deleted (warehouse snapshot)")
        for folder in ("runs", "warehouse/parquet", "export"):
            for path in sorted((settings.data_root() / folder).rglob("*.parquet")):
                if not path.is_symlink():
                    clean_parquet(path, scope, report)
        clean_exports(report)
        clean_text_files(literals, report)
        report.customers_erased = erase_from_registry(erased, report)
        clean_warehouse(scope, report)
        report.overrides_removed = clean_overrides(erased, report)
        spill = settings.data_root() / "tmp"
        if spill.exists():
            shutil.rmtree(spill)
            report.cleaned(spill, action="deleted (DuckDB spill files)")
        write_report(report)
    return report


# --------------------------------------------------------------------------------------------
# Who: the request -> erased records, touched customers, tombstone keys


def candidate_records() -> pd.DataFrame:
    """Canonical records with their customer: the live warehouse and every kept run folder."""
    sources = []
    warehouse = settings.warehouse_file()
    columns = ["source_record_id", *[c for cs in CANONICAL_KEYS.values() for c in cs],
               *LITERAL_COLUMNS]
    columns = list(dict.fromkeys(columns))
    with duckdb.connect() as con:
        if warehouse.exists():
            con.execute("ATTACH ? AS wh (READ_ONLY)", [str(warehouse)])
            if con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = 'wh' "
                           "AND table_name = 'source_records'").fetchall()[0][0]:
                sources.append(_select_known(con, "wh.source_records", columns, "customer_id"))
        for run_root in sorted((settings.data_root() / "runs").glob("*")):
            run = RunPaths.for_run(run_root.name)
            staged = run.staged_dir / "source_records.parquet"
            customer_map = run.identified_dir / "customer_map.parquet"
            if staged.exists():
                relation = f"read_parquet({quote_path(staged)})"
                select = _select_known(con, relation, columns, None)
                if customer_map.exists():
                    select = (f"SELECT s.*, m.customer_id FROM ({select}) s LEFT JOIN "
                              f"read_parquet({quote_path(customer_map)}) m USING (source_record_id)")
                else:
                    select = f"SELECT *, NULL::VARCHAR AS customer_id FROM ({select})"
                sources.append(select)
        if not sources:
            return pd.DataFrame(columns=[*columns, "customer_id"])
        return con.execute(" UNION ALL BY NAME ".join(f"({s})" for s in sources)).df()


def _select_known(con: duckdb.DuckDBPyConnection, relation: str, columns: list[str],
                  customer: str | None) -> str:
    present = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()}
    select = [f"CAST({quote_ident(c)} AS VARCHAR) AS {quote_ident(c)}" if c in present
              else f"NULL::VARCHAR AS {quote_ident(c)}" for c in columns]
    if customer:
        select.append(f"{quote_ident(customer)} AS customer_id")
    return f"SELECT {', '.join(select)} FROM {relation}"


def resolve_request(request: ErasureRequest, records: pd.DataFrame
                    ) -> tuple[set[str], set[str], list[tuple[str, str]]]:
    """(erased source_record_ids, customers holding one, tombstone keys (kind, value))."""
    live = live_map()
    owner = pd.concat([records[["source_record_id", "customer_id"]],
                       live[["source_record_id", "customer_id"]]]).dropna().drop_duplicates()
    with duckdb.connect() as con:
        con.register("records_in", records)
        hits: set[str] = set(request.source_records) & set(records["source_record_id"])
        by_key: set[str] = set()
        for kind, values in (("email", request.emails), ("phone", request.phones),
                             ("national_id", request.national_ids)):
            if not values:
                continue
            wanted = [_normal(con, kind, v) for v in values]
            columns = CANONICAL_KEYS[kind]
            for column in columns:
                by_key |= {r[0] for r in con.execute(
                    f"SELECT DISTINCT source_record_id FROM records_in WHERE "
                    f"{tombstone.NORMAL_FORM_SQL[kind].format(v=column)} IN "
                    f"(SELECT unnest($wanted))", {"wanted": [w for w in wanted if w]}).fetchall()}
    customers = set(request.customer_ids) | set(owner[owner["source_record_id"].isin(by_key)]
                                                ["customer_id"])
    erased = hits | by_key | set(owner[owner["customer_id"].isin(customers)]["source_record_id"])
    touched = set(owner[owner["source_record_id"].isin(erased)]["customer_id"]) | customers
    keys: list[tuple[str, str]] = [("record", r) for r in sorted(erased)]
    mine = records[records["source_record_id"].isin(erased)]
    for kind, columns in CANONICAL_KEYS.items():
        for column in columns:
            keys += [(kind, v) for v in mine[column].dropna().unique()]
    keys += [("email", v) for v in request.emails] + [("phone", v) for v in request.phones]
    keys += [("national_id", v) for v in request.national_ids]
    return erased, touched, keys


def _normal(con: duckdb.DuckDBPyConnection, kind: str, value: str) -> str | None:
    sql = tombstone.NORMAL_FORM_SQL[kind].format(v="$v")
    return con.execute(f"SELECT {sql}", {"v": value}).fetchall()[0][0]


def live_map() -> pd.DataFrame:
    registry = registry_file()
    if not registry.exists():
        return pd.DataFrame(columns=["source_record_id", "customer_id", "party_type"])
    with open_registry(registry) as con:
        return con.execute(LIVE_MAP_SQL).df()


def literal_values(records: pd.DataFrame) -> set[str]:
    """Distinctive values of the erased records, to find them in files that are not tables."""
    values: set[str] = set()
    for column in LITERAL_COLUMNS:
        if column in records:
            values |= {str(v) for v in records[column].dropna() if len(str(v)) >= MIN_LITERAL}
    return values


# --------------------------------------------------------------------------------------------
# Where: each kind of location


@dataclass(frozen=True)
class Scope:
    erased: set[str]
    touched: set[str]
    hashes: set[str]


def redact_landing(report: ErasureReport) -> None:
    """Extract every landed date once (into a scratch folder): extract drops and redacts."""
    from pipelines.ingest import extract_source, load_mappings
    from pipelines.ingest.errors import SourceRejected

    mappings = load_mappings()
    scratch = settings.data_root() / "tmp" / "erase-scratch"
    for landing in sorted(p for p in settings.landing_root().glob("*") if p.is_dir()):
        before = {p: tombstone.sidecar_counts(p) for p in landing.iterdir() if p.is_file()}
        for mapping in mappings.values():
            shutil.rmtree(scratch, ignore_errors=True)
            try:
                extract_source(mapping, landing, RunPaths.for_run("erase", base=scratch))
            except SourceRejected:
                continue  # no such file on that date, or unreadable: nothing extract would keep
        for path, was in before.items():
            new = {k: n - was[k] for k, n in tombstone.sidecar_counts(path).items()}
            if any(n > 0 for n in new.values()):
                report.cleaned(path, new["rows"], "redacted", new["records"], new["redacted"])
    shutil.rmtree(scratch, ignore_errors=True)


def erased_rows_mask(table: pa.Table, scope: Scope) -> pa.Array | None:
    """Which rows of a table to drop (None: the table has no column that could tell)."""
    names = set(table.column_names)
    masks = []
    erased = pa.array(sorted(scope.erased), pa.string())
    for column in ("source_record_id", "unique_id", "source_record_id_l", "source_record_id_r"):
        if column in names:
            masks.append(pc.is_in(pc.cast(table[column], pa.string()), value_set=erased))
    if ("customer_id" in names and not ({"source_record_id", "event"} & names)
            and not names <= ID_ONLY_COLUMNS):
        touched = pa.array(sorted(scope.touched), pa.string())
        masks.append(pc.is_in(pc.cast(table["customer_id"], pa.string()), value_set=touched))
    if (shape := _raw_shape(table)) is not None:
        masks.append(_raw_mask(table, *shape, scope))
    if not masks:
        return None
    mask = masks[0]
    for other in masks[1:]:
        mask = pc.or_(mask, other)
    return pc.fill_null(mask, False)


def _raw_shape(table: pa.Table) -> tuple[str, str | None] | None:
    """(source system column, JSON column of packed raw values or None) of raw-shaped rows (raw,
    accepted: one column per export column) or quarantine rows; None for other tables."""
    names = set(table.column_names)
    if "_source_system" in names:
        return "_source_system", None
    if {"raw", "source_system"} <= names:
        return "source_system", "raw"
    return None


def redact_nested(table: pa.Table, scope: Scope) -> tuple[pa.Table, int, int]:
    """Raw-shaped or quarantine rows with erased persons nested in them (`records:`) taken out,
    and rows whose own person is erased but which hold other people emptied of that person (as
    extract does), the rows (other people) kept; (table, nested records taken out, rows
    emptied)."""
    shape = _raw_shape(table)
    if shape is None or table.num_rows == 0:
        return table, 0, 0
    system_column, json_column = shape
    mappings = _mappings()
    found: dict[int, list[tombstone.Element]] = {}
    emptied: dict[int, SourceMapping] = {}  # position -> the mapping of the row's source
    for system in sorted(s for s in set(table[system_column].to_pylist()) if s is not None):
        mapping = mappings.get(system)
        if mapping is None or not mapping.records:
            continue
        rows = pc.equal(table[system_column], system)
        positions = pc.indices_nonzero(rows).to_pylist()
        part = table.filter(rows)
        if json_column is not None:
            part = _unpack_json(part, json_column, (*mapping.all_columns, "_malformed"))
        for position, elements in tombstone.erased_elements(mapping, part, scope.hashes).items():
            found[positions[position]] = elements
        for position in tombstone.erased_rows(mapping, part, scope.hashes)[1]:
            emptied[positions[position]] = mapping
    if not found and not emptied:
        return table, 0, 0
    redacted = len(emptied)
    if json_column is None:
        table = tombstone.redact_elements(table, found)
        for mapping in {id(m): m for m in emptied.values()}.values():
            table, _ = tombstone.empty_own(mapping, _with_marker(table),
                                           [p for p, m in emptied.items() if m is mapping])
    else:
        values = table[json_column].to_pylist()
        for position in sorted(set(found) | set(emptied)):
            packed = json.loads(values[position])
            elements = found.get(position, [])
            for column in {c for c, _ in elements}:
                packed[column] = tombstone.without_elements(packed.get(column), elements, column)
            if (mapping := emptied.get(position)) is not None:
                for column in tombstone.emptied_columns(mapping, list(packed)):
                    packed[column] = tombstone.emptied(mapping, column, packed[column])
            values[position] = json.dumps(packed, ensure_ascii=False)
        index = table.column_names.index(json_column)
        table = table.set_column(index, json_column,
                                 pa.array(values, table.schema.field(index).type))
    return table, sum(len(e) for e in found.values()), redacted


def _with_marker(table: pa.Table) -> pa.Table:
    """Raw-shaped rows with the `_redacted` lineage column (run folders from before it had it)."""
    if "_redacted" in table.column_names:
        return table
    return table.append_column("_redacted", pa.nulls(table.num_rows, pa.bool_()))


def _raw_mask(table: pa.Table, system_column: str, json_column: str | None, scope: Scope
              ) -> pa.Array:
    """Tombstone matches of raw-shaped rows (raw/accepted), or of quarantine's JSON `raw` values."""
    mappings = _mappings()
    result = pa.array([False] * table.num_rows, pa.bool_())
    systems = set(table[system_column].to_pylist())
    for system in systems:
        mapping = mappings.get(system)
        if mapping is None:
            continue
        rows = pc.equal(table[system_column], system)
        part = table.filter(rows)
        if json_column is not None:
            part = _unpack_json(part, json_column, (*mapping.all_columns, "_malformed"))
        # rows holding other people stay (redact_nested empties them of the erased person)
        mask, _ = tombstone.erased_rows(mapping, part, scope.hashes)
        positions = pc.indices_nonzero(rows)
        hit = pc.filter(positions, mask)
        flags = [False] * table.num_rows
        for i in hit.to_pylist():
            flags[i] = True
        result = pc.or_(result, pa.array(flags, pa.bool_()))
    return result


@functools.cache
def _mappings() -> dict:
    from pipelines.ingest import load_mappings

    return load_mappings()


def _unpack_json(table: pa.Table, column: str, names: tuple[str, ...]) -> pa.Table:
    with duckdb.connect() as con:
        con.register("packed", table.select([column]))
        select = ", ".join(f"json_extract_string({quote_ident(column)}, $p{i}) AS {quote_ident(n)}"
                           for i, n in enumerate(names))
        params = {f"p{i}": "$." + json.dumps(n) for i, n in enumerate(names)}
        return con.sql(f"SELECT {select} FROM packed", params=params).to_arrow_table()


def clean_parquet(path: Path, scope: Scope, report: ErasureReport) -> int:
    """Rewrite a Parquet file without the erased rows and nested records (new file, then
    rename); rows removed."""
    table = pq.read_table(path)
    mask = erased_rows_mask(table, scope)
    if mask is None:
        return 0
    removed = int(pc.sum(mask).as_py() or 0)
    kept, records, redacted = redact_nested(table.filter(pc.invert(mask)), scope)
    if removed or records or redacted:
        tmp = path.with_name(f".{path.name}.erasing")
        pq.write_table(kept, tmp, compression="zstd")
        fileio.replace(tmp, path)
        report.cleaned(path, removed, records=records, redacted=redacted)
    return removed


def clean_exports(report: ErasureReport) -> None:
    """Dated exports: each CSV follows its (already cleaned) Parquet twin; the manifest follows."""
    from pipelines.golden.export import sha256_of, write_safe_csv

    rewritten = {Path(loc["location"]) for loc in report.locations}
    for folder in sorted(p for p in settings.export_dir().glob("*") if p.is_dir()):
        changed = [p for p in sorted(folder.glob("*.parquet"))
                   if p.relative_to(settings.data_root()) in rewritten]
        for parquet in changed:
            csv_file = parquet.with_suffix(".csv")
            if csv_file.exists():
                tmp = csv_file.with_name(f".{csv_file.name}.erasing")
                with duckdb.connect() as con:
                    con.execute("SET TimeZone = 'UTC'")  # as the export writes timestamps
                    write_safe_csv(con, f"SELECT * FROM read_parquet({quote_path(parquet)})",
                                   tmp)
                fileio.replace(tmp, csv_file)
                report.cleaned(csv_file, action="rewritten from the cleaned Parquet file")
        manifest_file = folder / "manifest.json"
        if changed and manifest_file.exists():
            manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
            for parquet in changed:
                rows = pq.read_metadata(parquet).num_rows
                for path in (parquet, parquet.with_suffix(".csv")):
                    entry = manifest.get("files", {}).get(path.name)
                    if entry is not None and path.exists():
                        entry.update(rows=rows, bytes=path.stat().st_size, sha256=sha256_of(path))
                if parquet.name.startswith("marketing_customers_"):
                    manifest["row_count"] = rows
            manifest_tmp = manifest_file.with_name(".manifest.json.erasing")
            manifest_tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n",
                                    encoding="utf-8")
            fileio.replace(manifest_tmp, manifest_file)
            report.cleaned(manifest_file, action="counts and checksums updated")


def clean_text_files(literals: set[str], report: ErasureReport) -> None:
    """Delete charts and other non-table files of run folders that show an erased value."""
    # case-insensitive: charts show the matching forms too (`kanarienvogel` for `Kanarienvogel`)
    needles = [v.lower().encode("utf-8") for v in literals]
    if not needles:
        return
    for path in sorted((settings.data_root() / "runs").rglob("*")):
        if path.is_file() and path.suffix in RUN_TEXT_SUFFIXES:
            data = path.read_bytes().lower()
            if any(n in data for n in needles):
                path.unlink()
                report.cleaned(path, action="deleted (showed erased values)")


def erase_from_registry(erased: set[str], report: ErasureReport) -> list[str]:
    """Hash the erased record keys, record the erasure publication and `erased` events."""
    registry = registry_file()
    if not registry.exists():
        return []
    key_salt = tombstone.salt(create=True)
    with open_registry(registry) as con:
        con.register("erased_in", pd.DataFrame({"source_record_id": sorted(erased)}))
        con.execute(f"CREATE TEMP TABLE live_now AS {LIVE_MAP_SQL}")
        publication = con.execute("SELECT coalesce(max(publication), 0) + 1 FROM publications"
                                  ).fetchall()[0][0]
        gone = con.execute("""
            SELECT customer_id, any_value(party_type) AS party_type, count(*) AS n_records
            FROM live_now GROUP BY customer_id
            HAVING bool_and(source_record_id IN (SELECT source_record_id FROM erased_in))
            ORDER BY customer_id""").df()
        con.register("gone_in", gone)
        erased_key = tombstone.hash_sql("record", "source_record_id")
        con.execute("BEGIN TRANSACTION")
        con.execute("INSERT INTO publications VALUES (?, ?, 'erasure', true, ?, NULL)",
                    [publication, f"erasure:{report.erasure}", publication - 1])
        con.execute(f"""INSERT INTO assignments
                        SELECT $publication, 'erased:' || {erased_key}, NULL, party_type
                        FROM live_now
                        WHERE source_record_id IN (SELECT source_record_id FROM erased_in)""",
                    {"publication": publication, "salt": key_salt})
        con.execute(f"""UPDATE assignments SET source_record_id = 'erased:' || {erased_key}
                        WHERE source_record_id IN (SELECT source_record_id FROM erased_in)""",
                    {"salt": key_salt})
        con.execute("""INSERT INTO events SELECT ?, ?, 'erased', customer_id, NULL, party_type,
                       n_records FROM gone_in""", [publication, f"erasure:{report.erasure}"])
        con.execute("COMMIT")
    rewrite_duckdb_file(registry)
    report.cleaned(registry, len(erased), "record keys hashed, erased events added")
    return gone["customer_id"].tolist()


def rewrite_duckdb_file(path: Path) -> None:
    """Copy a DuckDB database into a fresh file and rename it over the old one, so no freed
    block of the old file keeps deleted values."""
    tmp = path.with_name(f".{path.name}.erasing")
    tmp.unlink(missing_ok=True)
    with duckdb.connect() as con:
        con.execute("ATTACH ? AS old (READ_ONLY)", [str(path)])
        con.execute("ATTACH ? AS new", [str(tmp)])
        con.execute("COPY FROM DATABASE old TO new")
        con.execute("DETACH old")
        con.execute("DETACH new")
    fileio.replace(tmp, path)


def clean_warehouse(scope: Scope, report: ErasureReport) -> None:
    """Rebuild the live warehouse file without the erased rows; history from the registry."""
    from pipelines.golden.publish import comment_tables, create_views, warehouse_writer

    warehouse = settings.warehouse_file()
    if not warehouse.exists():
        return
    tmp = warehouse.with_name(f".{warehouse.name}.erasing")
    tmp.unlink(missing_ok=True)
    removed_total = records_total = redacted_total = 0
    history = None
    if registry_file().exists():
        from pipelines.identify.registry import read_state

        history = read_state(registry_file()).history
    with warehouse_writer(tmp) as con:  # the configured storage version, as publish writes
        con.execute("ATTACH ? AS old (READ_ONLY)", [str(warehouse)])
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'old' "
            "ORDER BY table_name").fetchall()]
        for table in tables:
            data = con.sql(f"SELECT * FROM old.{quote_ident(table)}").to_arrow_table()
            if table == "customer_id_history" and history is not None:
                data = pa.Table.from_pandas(history, preserve_index=False)
            mask = erased_rows_mask(data, scope) if table != "customer_id_history" else None
            if mask is not None:
                removed_total += int(pc.sum(mask).as_py() or 0)
                data = data.filter(pc.invert(mask))
            data, records, redacted = redact_nested(data, scope)
            records_total += records
            redacted_total += redacted
            con.register("kept", data)
            con.execute(f"CREATE TABLE {quote_ident(table)} AS SELECT * FROM kept")
            con.unregister("kept")
        con.execute("DETACH old")
        comment_tables(con)
        create_views(con)
    fileio.replace(tmp, warehouse)
    report.cleaned(warehouse, removed_total, records=records_total, redacted=redacted_total)


def clean_overrides(erased: set[str], report: ErasureReport) -> int:
    """Remove steward decisions that name an erased record from the override file (other rows
    are written back exactly as they were, formula-safe cells included)."""
    from pipelines.fileio import formula_unsafe
    from pipelines.identify.overrides import DEFAULT_OVERRIDES_FILE

    path = DEFAULT_OVERRIDES_FILE
    if not path.exists():
        return 0
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return 0
    header, body = rows[0], rows[1:]
    columns = [header.index(c) for c in ("source_record_id_l", "source_record_id_r")
               if c in header]
    kept = [r for r in body
            if not any(i < len(r) and formula_unsafe(r[i].strip()) in erased for i in columns)]
    removed = len(body) - len(kept)
    if removed:
        tmp = path.with_name(f".{path.name}.erasing")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([header, *kept])
        fileio.replace(tmp, path)
        report.cleaned(path, removed, "steward decisions removed")
    return removed


def _next_erasure_number() -> int:
    folder = tombstone.registry_dir() / "erasures"
    numbers = [int(p.stem) for p in folder.glob("*.json") if p.stem.isdigit()]
    return max(numbers, default=0) + 1


def write_report(report: ErasureReport) -> Path:
    folder = tombstone.registry_dir() / "erasures"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{report.erasure:04d}.json"
    report.report_file = str(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    fileio.replace(tmp, path)
    return path
