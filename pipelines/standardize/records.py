"""Standardize accepted source rows to the canonical record (schemas/canonical.yaml).

Set-based: one DuckDB pass maps the mapping's columns to working columns; every standardizer that
needs a Python library (names, phones, e-mails, addresses, IDs, legal forms) runs once per
DISTINCT value and is joined back; a last SELECT assembles the canonical columns in schema order.
`standardize_frame` runs the same code on a pandas frame of source-shaped rows (real time).
A row that holds further records nested (`records:` in the mapping: a claimant, co-insured
persons) gives one canonical record per nested object or list element besides its own, each
mapped by its own section of the mapping from a copy of the row whose `from` column holds just
that element; their `source_key` is `<row key>/<part>[/<element key or index>]`.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from pipelines import fileio
from pipelines.ingest.columns import column_sql, literal, value_sql
from pipelines.ingest.columns import quote as _quote
from pipelines.ingest.mapping import FieldSpec, IdentifierSpec, SourceMapping, canonical_fields
from pipelines.settings import RunPaths
from pipelines.sql import PARQUET_OPTIONS, quote_literal, quote_path
from pipelines.standardize.addresses import standardize_address
from pipelines.standardize.bulk import (
    ADDRESS_PARTS,
    address_lookup_table,
    email_lookup_table,
    python_lookup,
)
from pipelines.standardize.contact import standardize_email, standardize_phone
from pipelines.standardize.languages import normalise_language
from pipelines.standardize.names import (
    canonical_given_name,
    family_name_key,
    family_name_norm,
    given_name_norm,
    given_name_origin,
    name_script,
    normalise_suffix,
    parse_full_name,
    split_full_in_family,
    strip_name_suffix,
)
from pipelines.standardize.organizations import (
    add_org_word_columns,
    check_identifier,
    company_name_sql,
    org_core_sql,
    org_qualifiers_sql,
    org_tokens_sql,
    split_legal_form,
)
from pipelines.standardize.phones import phone_lookup_table

NO_VALUE = "\x1e"   # stands for NULL inside composite lookup keys
KEY_SEPARATOR = "\x1f"
# "+49 (0)151 ..." -> "+49151...": the trunk zero in brackets, then everything but digits and +.
TRUNK_ZERO = re.compile(r"\(0\)")
NOT_PHONE_CHAR = re.compile(r"[^0-9+]")

log = logging.getLogger(__name__)


def staged_path(run: RunPaths, source: str) -> Path:
    return run.staged_dir / f"{source}.parquet"


def standardize_source(mapping: SourceMapping, run: RunPaths) -> Path:
    """accepted/<source>.parquet -> staged/<source>.parquet in the canonical schema."""
    accepted = run.accepted_dir / f"{mapping.name}.parquet"
    if not accepted.exists():
        raise FileNotFoundError(f"{accepted} does not exist: validate {mapping.name!r} first")
    run.staged_dir.mkdir(parents=True, exist_ok=True)
    out = staged_path(run, mapping.name)
    tmp = out.with_suffix(".parquet.tmp")
    with duckdb.connect() as con:
        con.execute(f"CREATE TEMP VIEW rows AS SELECT * FROM read_parquet({quote_path(accepted)})")
        columns = [r[0] for r in con.execute("DESCRIBE rows").fetchall()]
        parts = []
        # a row kept for the people nested in it, its own person erased (`_redacted`), gives
        # their records only: its own, emptied, would be a ghost customer under an erased key
        own = ("(SELECT * FROM rows WHERE NOT coalesce(_redacted, false))"
               if "_redacted" in columns else "rows")
        for i, sub in enumerate([mapping, *(r.mapping for r in mapping.records)]):
            source = own if sub.part is None else nested_rows_sql(sub, "rows")
            con.execute(f"CREATE OR REPLACE TEMP VIEW src AS SELECT * FROM {source}")
            final_sql = build_canonical(con, sub, columns, run.run_id)
            con.execute(f"CREATE TEMP TABLE canonical_{i} AS {final_sql}")
            parts.append(f"SELECT * FROM canonical_{i}")
        con.execute(f"COPY ({' UNION ALL '.join(parts)} ORDER BY source_file, source_row_number, "
                    f"source_part NULLS FIRST, source_key) "
                    f"TO {quote_path(tmp)} ({PARQUET_OPTIONS})")
    fileio.replace(tmp, out)
    return out


def nested_rows_sql(sub: SourceMapping, rows: str) -> str:
    """Rows of a nested record: one per JSON object in the part's column, or per object element
    of a JSON list there, the column holding that element; rows without it give none."""
    assert sub.part is not None
    c = _quote(sub.part.source)
    return f"""(SELECT * EXCLUDE (_elems, _elem, _is_list, _idx)
                      REPLACE (_elem::VARCHAR AS {c}),
                      CASE WHEN _is_list THEN _idx END AS _part_index FROM (
                  SELECT *, unnest(_elems) AS _elem, unnest(range(1, len(_elems) + 1)) AS _idx FROM (
                      SELECT *, json_type({c}) = 'ARRAY' AS _is_list,
                             CASE WHEN json_type({c}) = 'ARRAY' THEN json_extract({c}, '$[*]')
                                  ELSE [{c}::JSON] END AS _elems
                        FROM {rows} WHERE json_valid({c}) AND json_type({c}) IN ('OBJECT', 'ARRAY')))
                 WHERE json_type(_elem) = 'OBJECT')"""


def expand_part_rows(sub: SourceMapping, df: pd.DataFrame) -> pd.DataFrame:
    """The frame form of `nested_rows_sql` (real time): one row per nested object."""
    assert sub.part is not None
    column = sub.part.source
    out = []
    for row in df.to_dict("records"):
        value = row.get(column)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                continue
        if isinstance(value, dict):
            out.append({**row, column: json.dumps(value, ensure_ascii=False), "_part_index": None})
        elif isinstance(value, list):
            for i, element in enumerate(value, start=1):
                if isinstance(element, dict):
                    out.append({**row, column: json.dumps(element, ensure_ascii=False),
                                "_part_index": i})
    columns = [*df.columns, "_part_index"] if "_part_index" not in df.columns else list(df.columns)
    return pd.DataFrame(out, columns=columns)


def standardize_frame(mapping: SourceMapping, df: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """Raw source-shaped rows (export column names) -> canonical rows, as in the batch run.

    Runs on the mapping's warm `RecordStandardizer`; tests/test_standardize_frame.py checks it
    gives the batch run's rows for every source.
    """
    frames = [record_standardizer(mapping).standardize(df, run_id)]
    for record in mapping.records:
        if len(df):
            if "_row_number" not in df.columns:
                df = df.assign(_row_number=range(1, len(df) + 1))
            expanded = expand_part_rows(record.mapping, df)
            if len(expanded):
                frames.append(record_standardizer(record.mapping).standardize(expanded, run_id))
    if len(frames) == 1:
        return frames[0]
    combined = pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)
    return combined.sort_values(["source_file", "source_row_number", "source_part", "source_key"],
                                na_position="first", kind="stable").reset_index(drop=True)


def source_table(mapping: SourceMapping, df: pd.DataFrame | list[dict], run_id: str) -> pa.Table:
    """Source-shaped rows (a frame, or records as dicts: no frame to build for a few requests) as
    the all-VARCHAR table with lineage columns that ingest's raw step writes."""
    if isinstance(df, list):
        return _records_table(mapping, df, run_id)
    n = len(df)
    arrays = {}
    for column in df.columns:
        arrays[str(column)] = pa.array([_as_text(v) for v in df[column].tolist()], pa.string())
    for column in mapping.all_columns:
        arrays.setdefault(column, pa.nulls(n, pa.string()))
    if "_source_file" not in arrays:
        arrays["_source_file"] = pa.array(["<frame>"] * n, pa.string())
    if "_row_number" not in arrays:
        arrays["_row_number"] = pa.array(range(1, n + 1), pa.int64())
    else:
        arrays["_row_number"] = pa.array(df["_row_number"].astype("int64").tolist(), pa.int64())
    arrays["_run_id"] = pa.array([run_id] * n, pa.string())
    if mapping.part is not None:
        index = df["_part_index"].tolist() if "_part_index" in df.columns else [None] * n
        arrays["_part_index"] = pa.array([None if v is None or v != v else int(v) for v in index],
                                         pa.int64())
    return pa.table(arrays)


def _records_table(mapping: SourceMapping, records: list[dict], run_id: str) -> pa.Table:
    """`source_table` of records given as dicts; record i is source row i + 1."""
    n = len(records)
    arrays = {column: pa.array([_as_text(r.get(column)) for r in records], pa.string())
              for column in mapping.all_columns if any(column in r for r in records)}
    for column in mapping.all_columns:
        arrays.setdefault(column, pa.nulls(n, pa.string()))
    arrays["_source_file"] = pa.array(["<frame>"] * n, pa.string())
    arrays["_row_number"] = pa.array(range(1, n + 1), pa.int64())
    arrays["_run_id"] = pa.array([run_id] * n, pa.string())
    if mapping.part is not None:
        arrays["_part_index"] = pa.nulls(n, pa.int64())
    return pa.table(arrays)


_RECORD_STANDARDIZERS: dict[str, RecordStandardizer] = {}
_RECORD_STANDARDIZERS_LOCK = threading.Lock()


def record_standardizer(mapping: SourceMapping) -> RecordStandardizer:
    """The warm standardizer of `mapping`, made on first use (a changed mapping gets a new one)."""
    name = mapping.name if mapping.part is None else f"{mapping.name}/{mapping.part.part}"
    with _RECORD_STANDARDIZERS_LOCK:
        standardizer = _RECORD_STANDARDIZERS.get(name)
        if standardizer is None or standardizer.mapping != mapping:
            standardizer = _RECORD_STANDARDIZERS[name] = RecordStandardizer(mapping)
        return standardizer


class RecordStandardizer:
    """One source's mapping kept warm for a few rows at a time (real-time resolution).

    The batch run builds ~30 working tables (DuckDB statements cost milliseconds each, whatever
    the row count). Here the same row-level SQL (`working_select`) and the same canonical SELECT
    (`_final_select`) run as two statements prepared once on a connection held open, the rows
    passed in as list parameters; in between, the lookups come from the per-value Python
    standardizers that the batch's set-based shortcuts are tested against
    (tests/test_standardize.py).

    For records returned as dicts (`standardize_rows`, real time), the canonical SELECT — column
    picks, CASEs, casts and the quality-flag list over the working row and its lookups — is also
    compiled to Python from the very same SQL (`resolve.python_levels`, DuckDB's semantics): the
    statement costs ~5 ms per execution however few rows it has, the Python ~0.2 ms a record.
    The first `SHADOW_CHECKS` records of each statement go both ways and the compiled SELECT is
    kept only if every row is equal; a value it cannot take exactly goes to DuckDB.
    """

    def __init__(self, mapping: SourceMapping):
        self.mapping = mapping
        self._con = duckdb.connect()
        self._con.execute("SET threads = 1")  # a few rows: scheduling threads costs more than it saves
        self._lock = threading.Lock()
        self._statements: dict[tuple, tuple[str, str, str]] = {}
        self._prepared_count = 0
        # canonical statement -> its compiled SELECT (None: DuckDB's only) and records left to check
        self._compiled: dict[str, CanonicalRowFn | None] = {}
        self._unchecked: dict[str, int] = {}
        self.paths = {"python": 0, "duckdb": 0, "checked": 0}  # records per way (tests, /health)

    def standardize(self, df: pd.DataFrame, run_id: str) -> pd.DataFrame:
        """Source-shaped rows -> canonical rows, ordered by source row number."""
        result = self._run(df, run_id, lambda cursor: cursor.df())
        # Ordered here, not in SQL: sorting a wide row costs DuckDB more than the whole query.
        return result.sort_values("source_row_number", kind="stable").reset_index(drop=True)

    def standardize_rows(self, df: pd.DataFrame | list[dict], run_id: str) -> list[dict]:
        """As `standardize`, as dicts of Python values (a DataFrame of one row costs ~20 ms to
        build and read back); `df` may be the records as dicts, record i being source row i + 1."""
        rows = self._run(df, run_id, _fetch_dicts, python=True)
        return sorted(rows, key=lambda row: row["source_row_number"])

    def _run(self, df: pd.DataFrame | list[dict], run_id: str, fetch, python: bool = False):
        """`fetch(cursor)` of the canonical statement executed on `df`; with `python`, rows as
        dicts from the compiled canonical SELECT where it holds (see the class)."""
        # Only the columns the mapping reads, in its order: one prepared statement serves records
        # whatever keys they bring.
        lineage = LINEAGE if self.mapping.part is None else (*LINEAGE, "_part_index")
        table = source_table(self.mapping, df, run_id).select([*self.mapping.all_columns, *lineage])
        source_args = [_list_literal(table.column(i).to_pylist(), ARROW_TO_SQL[str(table.schema.types[i])])
                       for i in range(table.num_columns)]
        with self._lock:
            working, canonical, no_org = self._prepared(table.schema, run_id)
            cursor = self._con.execute(f"EXECUTE {working}({', '.join(source_args)})")
            rows = _fetch_dicts(cursor)
            lookups = record_lookups(self.mapping, rows)
            if all(row.get("org_name_norm") is None for row in lookups):
                canonical = no_org
            compiled = self._compiled.get(canonical) if python else None
            if compiled is not None:
                found = _compiled_rows(compiled, rows, lookups)
                if found is not None and self._unchecked[canonical] <= 0:
                    self.paths["python"] += len(found)
                    return found
            self.paths["duckdb"] += len(rows)
            lookup_args = [_list_literal([row.get(name) for row in lookups], sql_type)
                           for name, sql_type in lookup_columns(self.mapping)]
            expected = fetch(self._con.execute(f"EXECUTE {canonical}({', '.join(source_args + lookup_args)})"))
            if compiled is not None and found is not None:  # still being checked against DuckDB
                self._check_compiled(canonical, found, expected)
            return expected

    def _check_compiled(self, canonical: str, found: list[dict], expected: list[dict]) -> None:
        def ordered(rows: list[dict]) -> list[dict]:
            return sorted(rows, key=lambda r: (r["source_row_number"], str(r.get("source_part")),
                                               str(r.get("source_key"))))
        if ordered(found) != ordered(expected):
            differ = sorted({k for a, b in zip(ordered(found), ordered(expected), strict=False)
                             for k in b if a.get(k, object()) != b[k]})
            log.warning("%s: the compiled canonical SELECT differs from DuckDB's (%s): DuckDB's only",
                        self.mapping.name, differ or "row count")
            self._compiled[canonical] = None
            return
        self._unchecked[canonical] -= len(expected)
        self.paths["checked"] += len(expected)

    def _prepared(self, schema: pa.Schema, run_id: str) -> tuple[str, str, str]:
        """Names of the working and canonical statements (parsed and planned once; the canonical
        one also without organization names) for tables with this schema: parameters $1.. are
        the source columns, then the lookup columns."""
        key = (tuple(schema.names), tuple(str(t) for t in schema.types), run_id)
        if key not in self._statements:
            source = [(name, ARROW_TO_SQL[str(type_)]) for name, type_ in zip(schema.names, schema.types,
                                                                             strict=True)]
            record_src = _unnest_parameters(source, first=1)
            working, fields = working_sql(self.mapping, schema.names, f"({record_src}) record_src")
            record_lookups_sql = _unnest_parameters(lookup_columns(self.mapping), first=len(source) + 1)
            working = f"SELECT *, {ADDRESS_KEY_SQL} AS a_key FROM ({working})"
            ids = list(range(len(self.mapping.identifiers)))
            canonical, no_org = (
                f"WITH record_lookups AS ({record_lookups_sql}), b AS ({working}) "
                f"{_final_select(self.mapping, run_id, fields, ids, 'record_lookups', org_names)}"
                for org_names in (True, False))
            if len(self._statements) >= MAX_PREPARED:  # many run ids: forget the oldest
                for name in self._statements.pop(next(iter(self._statements))):
                    self._con.execute(f"DEALLOCATE {name}")
                    self._compiled.pop(name, None)
                    self._unchecked.pop(name, None)
            n = self._prepared_count = self._prepared_count + 1
            self._con.execute(f"PREPARE record_working_{n} AS {working}")
            self._con.execute(f"PREPARE record_canonical_{n} AS {canonical}")
            self._con.execute(f"PREPARE record_canonical_no_org_{n} AS {no_org}")
            self._statements[key] = (f"record_working_{n}", f"record_canonical_{n}",
                                     f"record_canonical_no_org_{n}")
            for name, org_names in ((f"record_canonical_{n}", True), (f"record_canonical_no_org_{n}", False)):
                compiled, why = compile_canonical_select(
                    _final_select(self.mapping, run_id, fields, ids, "record_lookups", org_names),
                    {name for name, _ in lookup_columns(self.mapping)})
                if compiled is None:
                    log.info("%s: canonical SELECT%s stays in DuckDB: %s", self.mapping.name,
                             "" if org_names else " (no organization)", why)
                self._compiled[name], self._unchecked[name] = compiled, SHADOW_CHECKS
        return self._statements[key]


CanonicalRowFn = Callable[[dict, dict], dict]
SHADOW_CHECKS = 20  # records of a statement standardized both ways before the compiled one is trusted


def compile_canonical_select(sql: str, lookup_names: set[str]) -> tuple[CanonicalRowFn | None, str | None]:
    """The canonical SELECT of `_final_select(..., one_lookup_row=...)` as a function of (working
    row, its lookup row) -> canonical row, or (None, why not). `b.x` reads the working row; every
    lookup alias (`a.street`, `g.given_name_norm`, ...) the lookup row; `i<n>.id_valid` its
    `id_<n>_valid` (`_final_select` packs those as a struct). A lookup column missing from a
    lookup row is NULL, as the statement's parameters make it (`lookup_names`: `lookup_columns`)."""
    from pipelines.resolve.python_levels import Unsupported, compile_projections

    def lookup_column(key: str):
        if key not in lookup_names:
            raise Unsupported(f"lookup column {key}")
        return lambda b, lookup: lookup.get(key)

    def column(node):
        table, name = node.table, node.name
        if table == "b":
            return lambda b, lookup: b[name]
        if table in LOOKUP_ALIASES:
            return lookup_column(name)
        if re.fullmatch(r"i[0-9]+", table or "") and name.startswith("id_"):  # i0.id_valid: id_0_valid
            return lookup_column(f"id_{table[1:]}_{name[3:]}")
        raise Unsupported(f"column {node.sql()}")

    projections, why = compile_projections(sql, column)
    if projections is None:
        return None, why

    def canonical_row(b: dict, lookup: dict) -> dict:
        return {name: fn(b, lookup) for name, fn in projections}
    return canonical_row, None


def _compiled_rows(compiled: CanonicalRowFn, rows: list[dict], lookups: list[dict]) -> list[dict] | None:
    """Canonical rows by the compiled SELECT, or None when a value is one only DuckDB decides."""
    try:
        # the lookup values as the statement's parameters hold them (the text `_literal` writes)
        return [compiled(b, {k: _as_parameter(v) for k, v in lookup.items()})
                for b, lookup in zip(rows, lookups, strict=True)]
    except Exception:  # Unsupported, or a value of a type the closures do not take
        log.debug("compiled canonical SELECT declined a record: DuckDB's statement", exc_info=True)
        return None


def _as_parameter(value):
    if isinstance(value, list | tuple):
        return [_as_parameter(v) for v in value]
    return _sql_text(value)


def _fetch_dicts(cursor) -> list[dict]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


LINEAGE = ("_source_file", "_row_number", "_run_id")
MAX_PREPARED = 8
ARROW_TO_SQL = {"string": "VARCHAR", "int64": "BIGINT", "bool": "BOOLEAN", "null": "VARCHAR"}


def _unnest_parameters(columns: list[tuple[str, str]], first: int) -> str:
    """SELECT of rows whose columns come as list parameters $first, $first+1, ... (zipped)."""
    return "SELECT " + ", ".join(f"unnest(${first + i}::{sql_type}[]) AS {_quote(name)}"
                                 for i, (name, sql_type) in enumerate(columns))


def _list_literal(values: list, sql_type: str) -> str:
    # Typed exactly as the statement's parameter: any other type makes DuckDB re-plan it.
    return "[" + ", ".join(_literal(v) for v in values) + f"]::{sql_type}[]"


def _literal(value) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return literal(_sql_text(value))


def _sql_text(value):
    """A value as SQL text can hold it: no NUL or lone surrogate (cleaning turns control
    characters into a space anyway, ingest/columns.py, and a lone surrogate is no character)."""
    if isinstance(value, str) and ("\x00" in value or not value.isascii()):
        return value.replace("\x00", " ").encode("utf-8", "replace").decode("utf-8")
    return value


def record_lookups(mapping: SourceMapping, rows: list[dict]) -> list[dict]:
    """Per working row, what the batch's lookup tables hold for it (one Python call per value)."""
    out = []
    for b in rows:
        address = standardize_address(**{p: b[f"a_{p}"] for p in ADDRESS_PARTS},
                                      default_country=mapping.address.default_country)
        email, email_flag, email_phone = standardize_email(b["email_raw"])
        region = address.country or mapping.phone_default_region
        candidates = [(c["v"], c["kind"]) for c in b["phone_candidates"]]
        if email_phone is not None:
            candidates.append((email_phone, None))
        phones = [standardize_phone(clean_phone(v), region, kind) for v, kind in candidates]
        row = {
            "_rid": b["_rid"], "a_key": b["a_key"], "street": address.street,
            "house_number": address.house_number, "postcode": address.postcode,
            "city": address.city, "country": address.country,
            "street_display": address.street_display,
            "house_number_display": address.house_number_display,
            "city_display": address.city_display, "country_unknown": address.country_unknown,
            "email_raw": b["email_raw"], "email": email, "email_flag": email_flag,
            "email_phone": email_phone,
            # First number of each kind in column order; flags if any number has them.
            "phone_mobile": next((e for e, kind, _ in phones if kind == "mobile"), None),
            "phone_landline": next((e for e, kind, _ in phones if kind == "landline"), None),
            "phone_invalid": any(flag == "phone_invalid" for *_, flag in phones) if phones else None,
            "phone_unverified": any(flag == "phone_unverified" for *_, flag in phones) if phones
            else None,
            "party_type": b["party_type"], "is_person": b["party_type"] == "person",
            "language_raw": b["language_raw"],
            "language": normalise_language(b["language_raw"]) if b["language_raw"] else None,
        }
        given = family = None
        if row["is_person"]:
            given, family, suffix, script, full, split = _person_name(
                mapping, b["n_full"], b["n_given"], b["n_family"], b["n_native"], b["n_suffix"],
                address.country)
            row.update(name_suffix=suffix, name_script=script, full_name=full,
                       full_name_split=split)
        given_norm, given_canonical, origin = _given(given) if given is not None else (None,) * 3
        family_norm, family_key = _family(family) if family is not None else (None, None)
        birth = b["n_birth_family"] if row["is_person"] else None
        row.update(given_name=given, family_name=family, given_name_norm=given_norm,
                   given_name_canonical=given_canonical, given_name_origin=origin,
                   family_name_norm=family_norm, family_name_key=family_key,
                   birth_family_name_norm=family_name_norm(birth) if birth is not None else None)
        org_name = b["n_org_name"]
        org_norm, legal_form = split_legal_form(org_name) if org_name is not None else (None, None)
        row.update(org_name=org_name, org_name_norm=org_norm, org_legal_form=legal_form)
        for i, ident in enumerate(mapping.identifiers):
            value = b[f"id_{i}"]
            checked = _identifier(ident, value, b["party_type"]) if value is not None else (None,) * 4
            row.update({f"id_{i}": value, f"id_{i}_value": checked[0], f"id_{i}_type": checked[1],
                        f"id_{i}_valid": checked[2], f"id_{i}_canonical": checked[3]})
        out.append(row)
    return out


def lookup_columns(mapping: SourceMapping) -> list[tuple[str, str]]:
    """(name, SQL type) of the columns `record_lookups` gives per working row."""
    booleans = {"phone_invalid", "phone_unverified", "is_person", "country_unknown",
                "full_name_split"}
    lists = {"family_name_key"}
    names = ["_rid", "a_key", "street", "house_number", "postcode", "city", "country",
             "street_display", "house_number_display", "city_display", "country_unknown",
             "email_raw", "email", "email_flag", "email_phone", "phone_mobile", "phone_landline",
             "phone_invalid", "phone_unverified", "party_type", "is_person", "language_raw",
             "language", "given_name", "family_name", "name_suffix", "name_script", "full_name",
             "full_name_split", "given_name_norm", "given_name_canonical", "given_name_origin",
             "family_name_norm", "family_name_key", "birth_family_name_norm", "org_name",
             "org_name_norm", "org_legal_form"]
    for i in range(len(mapping.identifiers)):
        names += [f"id_{i}", f"id_{i}_value", f"id_{i}_type", f"id_{i}_valid", f"id_{i}_canonical"]
        booleans.update({f"id_{i}_valid", f"id_{i}_canonical"})
    return [(name, "BIGINT" if name == "_rid" else "BOOLEAN" if name in booleans
             else "VARCHAR[]" if name in lists else "VARCHAR") for name in names]


def clean_phone(raw: str) -> str:
    """The digits and + of a phone number as written, trunk "(0)" dropped (as the batch SQL)."""
    return NOT_PHONE_CHAR.sub("", TRUNK_ZERO.sub("", raw))


def _as_text(value) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "isoformat"):
        return value.isoformat(sep=" ") if hasattr(value, "hour") else value.isoformat()
    if pd.isna(value):
        return None
    return str(value)


# --------------------------------------------------------------------------------------------
# SQL building blocks



def list_column_sql(path: str, columns: Sequence[str]) -> str:
    """A JSON list column as VARCHAR[]; a plain value becomes a one-element list."""
    value = column_sql(path, columns)
    return (f"CASE WHEN {value} IS NULL THEN []::VARCHAR[] "
            f"WHEN json_valid({value}) AND json_type({value}) = 'ARRAY' "
            f"THEN json_extract_string({value}, '$[*]') ELSE [{value}] END")


SWAPPABLE = ("%d", "%m")


def _date_sql(value: str, formats: tuple[str, ...], target_type: str) -> str:
    if not formats:
        return f"TRY_CAST({value} AS {target_type})"
    parsed = ", ".join(f"try_strptime({value}, {_literal(f)})" for f in formats)
    return f"CAST(coalesce({parsed}) AS {target_type})" if len(formats) > 1 \
        else f"CAST({parsed} AS {target_type})"


def _ambiguous_sql(value: str, formats: tuple[str, ...]) -> str:
    """Day and month both <= 12 (and different) in a format where they could be swapped."""
    swappable = [f for f in formats if all(p in f for p in SWAPPABLE) and not f.startswith("%Y")]
    if not swappable:
        return "FALSE"
    parsed = f"CAST(try_strptime({value}, {_literal(swappable[0])}) AS DATE)"
    return (f"coalesce(day({parsed}) <= 12 AND month({parsed}) <= 12 "
            f"AND day({parsed}) <> month({parsed}), FALSE)")


# Canonical text fields with a normal form of their own (applied after the mapping's rewrites).
COMPACT_UPPER = "NULLIF(regexp_replace(upper({}), '[^A-Z0-9]', '', 'g'), '')"
FIELD_NORMAL_FORMS = {
    "tax_id": COMPACT_UPPER, "passport_number": COMPACT_UPPER,
    "preferred_channel": "lower({})", "salutation": "{}", "customer_number": "{}",
}


def field_sql(name: str, spec: FieldSpec, columns: Sequence[str]) -> tuple[str, str | None]:
    """(typed SQL expression, raw text expression for the 'invalid' check) of one plain field."""
    target_type = canonical_fields()[name]
    value = value_sql(spec.expr, columns)
    if spec.column is None:
        return f"CAST({value} AS {target_type})", None
    if target_type in ("DATE", "TIMESTAMP"):
        return _date_sql(value, spec.formats, target_type), value
    if target_type == "DOUBLE" and spec.decimal == ",":
        value = f"replace(replace({value}, '.', ''), ',', '.')"
    if target_type == "VARCHAR":
        return f"CAST({FIELD_NORMAL_FORMS.get(name, '{}').format(value)} AS VARCHAR)", None
    return f"TRY_CAST({value} AS {target_type})", value


def policy_key_sql(number: str) -> str:
    """Policy number as a join key: letters and digits only, upper-case, and each run of digits
    without its leading zeros (DE-MOT-00412345 = DEMOT00412345 = DE MOT 412345)."""
    compact = f"regexp_replace(upper({number}), '[^A-Z0-9]', '', 'g')"
    return f"NULLIF(regexp_replace({compact}, '(^|[^0-9])0+([0-9])', '\\1\\2', 'g'), '')"


# --------------------------------------------------------------------------------------------
# Python standardizers over distinct values


def _key(*parts: str) -> str:
    return "concat_ws(chr(31), " + ", ".join(f"coalesce({p}, chr(30))" for p in parts) + ")"


ADDRESS_KEY_SQL = _key(*(f"a_{part}" for part in ADDRESS_PARTS))


def _unkey(key: str) -> list[str | None]:
    return [None if p == NO_VALUE else p for p in key.split(KEY_SEPARATOR)]


def _person_name(mapping: SourceMapping, full: str | None, given: str | None,
                 family: str | None, native: str | None, suffix_written: str | None,
                 country: str | None) -> tuple:
    """(given, family, suffix, script, full_name, full_name_split) for one distinct combination."""
    spec = mapping.name_spec
    suffix = normalise_suffix(suffix_written)
    split = False
    if full and not (given or family):
        parsed = parse_full_name(full, country, spec.order)
        given, family, suffix = parsed.given, parsed.family, suffix or parsed.suffix
    else:
        given, given_suffix = strip_name_suffix(given)
        family, family_suffix = strip_name_suffix(family)
        suffix = suffix or family_suffix or given_suffix
        if family and not given:
            parsed_family = split_full_in_family(family, spec.full_in_family, country)
            if parsed_family is not None:
                given, family, split = parsed_family.given, parsed_family.family, True
                suffix = suffix or parsed_family.suffix
    script = name_script(given, family, full if not (given or family) else None)
    if full is None:
        parts = [family, given] if script == "han" else [given, family]
        full = ("" if script == "han" else " ").join(p for p in parts if p) or None
    return given, family, suffix, script, full, split


def _given(given: str) -> tuple:
    norm = given_name_norm(given)
    return norm, canonical_given_name(norm), given_name_origin(given)


def _family(family: str) -> tuple:
    key = family_name_key(family)
    return family_name_norm(family), list(key) if key is not None else None


def _identifier(ident: IdentifierSpec, value: str, party: str) -> tuple:
    """(id_value, id_type, id_valid, id_canonical) of one distinct identifier of a party."""
    if party == "person":
        modules, patterns = ident.person, ident.person_patterns
    else:
        modules, patterns = ident.organization, ident.patterns
    if not (modules or patterns):
        return None, None, True, True
    return check_identifier(value, modules, patterns)


def _applies_to(ident: IdentifierSpec, party: str) -> bool:
    return bool(ident.person or ident.person_patterns) if party == "person" \
        else bool(ident.organization or ident.patterns)


# --------------------------------------------------------------------------------------------
# The canonical SELECT


def working_sql(mapping: SourceMapping, columns: Sequence[str], source: str) -> tuple[str, dict]:
    """(SELECT of the working columns per source row of `source`, plain fields' SQL)."""
    val = lambda expr: value_sql(expr, columns)  # noqa: E731
    spec, addr = mapping.name_spec, mapping.address
    party = mapping.party_type
    if party.column:
        cases = " ".join(f"WHEN {_literal(raw)} THEN {_literal(p)}" for raw, p in party.values.items())
        party_sql = f"CASE {val(party.column)} {cases} ELSE {_literal(party.default)} END"
    else:
        party_sql = _literal(party.default)

    phone_parts = []
    for phone in mapping.phones:
        kind = _literal(phone.kind)
        if phone.is_list:
            phone_parts.append(f"list_transform({list_column_sql(phone.column.refs[0], columns)}, "
                               f"lambda x: struct_pack(v := NULLIF(trim(x), ''), kind := {kind}::VARCHAR))")
        else:
            phone_parts.append(f"[struct_pack(v := {val(phone.column)}, kind := {kind}::VARCHAR)]")
    phones_sql = " || ".join(phone_parts) if phone_parts else \
        "[]::STRUCT(v VARCHAR, kind VARCHAR)[]"
    phones_sql = f"list_filter({phones_sql}, lambda p: p.v IS NOT NULL)"
    if mapping.email_in_phone:
        # An e-mail address typed into a phone column is the e-mail, not a broken number.
        in_phone = f"list_filter({phones_sql}, lambda p: contains(p.v, '@'))"
        email_sql = f"coalesce({val(mapping.email)}, {in_phone}[1].v)"
        phone_was_email = f"len({in_phone}) > 0"
        phones_sql = f"list_filter({phones_sql}, lambda p: NOT contains(p.v, '@'))"
    else:
        email_sql, phone_was_email = val(mapping.email), "FALSE"

    fields = {name: field_sql(name, fs, columns) for name, fs in mapping.fields.items()}
    id_columns = [f"{val(ident.column)} AS id_{i}" for i, ident in enumerate(mapping.identifiers)]
    order = "_source_file, _row_number" + (", _part_index" if mapping.part else "")
    source_key = source_key_sql(mapping, columns)
    if mapping.part is not None:
        source_part = (f"{_literal(mapping.part.part)} || coalesce('[' || "
                       f"CAST(_part_index AS VARCHAR) || ']', '')")
    else:
        source_part = "NULL::VARCHAR"
    select = [
        f"row_number() OVER (ORDER BY {order}) AS _rid",
        "_source_file", "_row_number",
        f"{source_key} AS source_key", f"{source_part} AS source_part",
        f"{party_sql} AS party_declared",
        f"({party_sql}) IS NULL AS party_type_defaulted",
        f"{val(spec.given)} AS n_given", f"{val(spec.family)} AS n_family",
        f"{val(spec.full)} AS n_full", f"{val(spec.native)} AS n_native",
        f"{val(spec.organization)} AS n_org", f"{val(spec.suffix)} AS n_suffix",
        f"{val(spec.birth_family)} AS n_birth_family",
        f"{email_sql} AS email_raw", f"{phone_was_email} AS phone_was_email",
        f"{phones_sql} AS phone_candidates",
        *[f"{val(getattr(addr, k))} AS a_{k}" for k in ADDRESS_PARTS],
        *id_columns,
    ]
    for name, (typed, raw) in fields.items():
        select.append(f"{typed} AS f_{name}")
        if raw is not None:
            select.append(f"{raw} AS r_{name}")
    language = mapping.fields.get("language")
    select.append(f"{val(language.expr) if language else 'NULL::VARCHAR'} AS language_raw")
    if "birth_date" in mapping.fields and mapping.fields["birth_date"].column:
        fs = mapping.fields["birth_date"]
        select.append(f"{_ambiguous_sql(val(fs.expr), fs.formats)} AS birth_date_ambiguous")
    else:
        select.append("NULL::BOOLEAN AS birth_date_ambiguous")

    # Party type by content: a person whose name holds a legal form or company word is one.
    name_text = "coalesce(n_full, NULLIF(concat_ws(' ', n_given, n_family), ''))"
    inferred = (f"coalesce(party_declared = 'person' AND {company_name_sql(name_text)}, FALSE)"
                if party.infer_from_name else "FALSE")
    outer = (f"SELECT * EXCLUDE (party_declared), "
             f"CASE WHEN party_type_inferred THEN 'organization' "
             f"ELSE coalesce(party_declared, 'person') END AS party_type FROM "
             f"(SELECT *, {inferred} AS party_type_inferred FROM "
             f"(SELECT {', '.join(select)} FROM {source}) w) i")
    org_name = ("CASE WHEN party_type = 'organization' THEN coalesce(n_org, n_full, "
                "NULLIF(concat_ws(' ', n_given, n_family), '')) END")
    return f"SELECT *, {org_name} AS n_org_name FROM ({outer}) p", fields


def source_key_sql(mapping: SourceMapping, columns: Sequence[str]) -> str:
    """SQL of a record's `source_key` (its source_record_id is `<source>:<source_key>`): the
    row's key, or for a nested record (over `nested_rows_sql`, which gives `_part_index`)
    `<row key>/<part>[/<element key, else its index in the list>]`."""
    from pipelines.ingest.mapping import ValueExpr

    key_sql = value_sql(ValueExpr(refs=(mapping.native_key,)), columns)
    part = mapping.part
    if part is None:
        return key_sql
    element = (f"coalesce({value_sql(part.key, columns)}, CAST(_part_index AS VARCHAR))"
               if part.key else "CAST(_part_index AS VARCHAR)")
    return f"{key_sql} || '/' || {_literal(part.part)} || coalesce('/' || {element}, '')"


def build_canonical(con: duckdb.DuckDBPyConnection, mapping: SourceMapping, columns: list[str],
                    run_id: str) -> str:
    """Create the working tables for view `src` and return the SELECT of canonical rows."""
    working, fields = working_sql(mapping, columns, "src")
    addr = mapping.address
    con.execute(f"CREATE OR REPLACE TEMP TABLE b AS {working}")

    # Address first: its country decides the phone region and how romanised names are ordered.
    con.execute(f"ALTER TABLE b ADD COLUMN a_key VARCHAR; UPDATE b SET a_key = {ADDRESS_KEY_SQL}")
    address_lookup_table(con, "b", addr.default_country)
    email_lookup_table(con, "b")

    region = _literal(mapping.phone_default_region)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE phone_rows AS
        WITH c AS (
            SELECT b._rid, coalesce(a.country, {region}) AS region,
                   b.phone_candidates || CASE WHEN e.email_phone IS NULL THEN []
                        ELSE [struct_pack(v := e.email_phone, kind := NULL::VARCHAR)] END AS cands
              FROM b LEFT JOIN address_lookup a USING (a_key)
                     LEFT JOIN email_lookup e USING (email_raw))
        SELECT _rid, region, unnest(cands).v AS v, unnest(cands).kind AS kind,
               unnest(range(1, len(cands) + 1)) AS ord
          FROM c WHERE len(cands) > 0""")
    con.execute(f"""ALTER TABLE phone_rows ADD COLUMN v_clean VARCHAR;
                    UPDATE phone_rows SET v_clean = regexp_replace(
                        regexp_replace(v, {quote_literal(TRUNK_ZERO.pattern)}, '', 'g'),
                        {quote_literal(NOT_PHONE_CHAR.pattern)}, '', 'g')""")
    phone_lookup_table(con, "phone_rows")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE phones AS
        SELECT p._rid,
               arg_min(l.e164, p.ord) FILTER (WHERE l.phone_kind = 'mobile') AS phone_mobile,
               arg_min(l.e164, p.ord) FILTER (WHERE l.phone_kind = 'landline') AS phone_landline,
               bool_or(l.phone_flag = 'phone_invalid') AS phone_invalid,
               bool_or(l.phone_flag = 'phone_unverified') AS phone_unverified
          FROM phone_rows p JOIN phone_lookup l
            ON p.v_clean = l.v_clean AND p.region IS NOT DISTINCT FROM l.region
           AND p.kind IS NOT DISTINCT FROM l.kind
         GROUP BY p._rid""")

    id_selects = []
    for i, ident in enumerate(mapping.identifiers):
        python_lookup(con, f"id_lookup_{i}",
                     f"SELECT DISTINCT id_{i} AS value, party_type FROM b WHERE id_{i} IS NOT NULL",
                     lambda value, party, ident=ident: _identifier(ident, value, party),
                     [("id_value", pa.string()), ("id_type", pa.string()), ("id_valid", pa.bool_()),
                      ("id_canonical", pa.bool_())])
        id_selects.append(i)

    con.execute("""CREATE OR REPLACE TEMP TABLE persons AS
                   SELECT b._rid, b.n_full, b.n_given, b.n_family, b.n_native, b.n_suffix, a.country
                     FROM b LEFT JOIN address_lookup a USING (a_key)
                    WHERE b.party_type = 'person'""")
    con.execute(f"ALTER TABLE persons ADD COLUMN n_key VARCHAR; UPDATE persons SET n_key = "
                f"{_key('n_full', 'n_given', 'n_family', 'n_native', 'n_suffix', 'country')}")
    python_lookup(con, "name_lookup", "SELECT DISTINCT n_key FROM persons",
                 lambda key: _person_name(mapping, *_unkey(key)),
                 [("given_name", pa.string()), ("family_name", pa.string()),
                  ("name_suffix", pa.string()), ("name_script", pa.string()),
                  ("full_name", pa.string()), ("full_name_split", pa.bool_())])
    con.execute("""CREATE OR REPLACE TEMP TABLE person_names AS
                   SELECT p._rid, l.*, p.n_native FROM persons p JOIN name_lookup l USING (n_key)""")
    python_lookup(con, "given_lookup",
                 "SELECT DISTINCT given_name FROM person_names WHERE given_name IS NOT NULL",
                 _given, [("given_name_norm", pa.string()), ("given_name_canonical", pa.string()),
                          ("given_name_origin", pa.string())])
    python_lookup(con, "family_lookup",
                 "SELECT DISTINCT family_name FROM person_names WHERE family_name IS NOT NULL "
                 "UNION SELECT n_birth_family FROM b WHERE party_type = 'person' "
                 "AND n_birth_family IS NOT NULL",
                 _family, [("family_name_norm", pa.string()),
                           ("family_name_key", pa.list_(pa.string()))])
    python_lookup(con, "org_lookup",
                 "SELECT DISTINCT n_org_name AS org_name FROM b WHERE n_org_name IS NOT NULL",
                 split_legal_form, [("org_name_norm", pa.string()), ("org_legal_form", pa.string())])
    add_org_word_columns(con, "org_lookup", "org_name", "org_name_norm")
    python_lookup(con, "language_lookup",
                 "SELECT DISTINCT language_raw FROM b WHERE language_raw IS NOT NULL",
                 lambda raw: (normalise_language(raw),), [("language", pa.string())])

    return _final_select(mapping, run_id, fields, id_selects)


# address, e-mail, phones, names, given, family, birth family, org, language
LOOKUP_ALIASES = ("a", "e", "ph", "n", "g", "fa", "bf", "o", "lg")
CONSENT_CHANNELS = ("consent_email", "consent_sms", "consent_phone", "consent_post")


def _final_select(mapping: SourceMapping, run_id: str, fields: dict, id_selects: list[int],
                  one_lookup_row: str | None = None, org_names: bool = True) -> str:
    """Canonical columns in schema order, from b and the lookup tables.

    With `one_lookup_row`, every lookup alias reads that table instead: one row per b row (same
    _rid) holding what each lookup table has for it, NULL where the lookup has no row.
    """
    person_ids = [i for i in id_selects if _applies_to(mapping.identifiers[i], "person")]
    org_ids = [i for i in id_selects if _applies_to(mapping.identifiers[i], "organization")]

    def first_valid(indexes: list[int], column: str, party: str) -> str:
        if not indexes:
            return "NULL::VARCHAR"
        parts = [f"CASE WHEN b.party_type = {quote_literal(party)} AND i{i}.id_valid THEN i{i}.{column} END"
                 for i in indexes]
        return f"coalesce({', '.join(parts)})" if len(parts) > 1 else parts[0]

    def any_invalid(indexes: list[int], party: str) -> str:
        if not indexes:
            return "FALSE"
        parts = [f"coalesce(b.party_type = {quote_literal(party)} AND NOT i{i}.id_valid, FALSE)" for i in indexes]
        return " OR ".join(parts)

    not_canonical = " OR ".join(
        f"coalesce(i{i}.id_valid AND NOT i{i}.id_canonical, FALSE)" for i in id_selects) or "FALSE"
    flags = [
        "CASE WHEN b.birth_date_ambiguous THEN 'dob_ambiguous' END",
        "CASE WHEN b.party_type_defaulted THEN 'party_type_defaulted' END",
        "CASE WHEN b.party_type_inferred THEN 'party_type_inferred' END",
        "e.email_flag",
        "CASE WHEN b.phone_was_email THEN 'phone_was_email' END",
        "CASE WHEN ph.phone_invalid THEN 'phone_invalid' END",
        "CASE WHEN ph.phone_unverified THEN 'phone_unverified' END",
        f"CASE WHEN {any_invalid(person_ids, 'person')} THEN 'national_id_invalid' END",
        f"CASE WHEN {any_invalid(org_ids, 'organization')} THEN 'registration_id_invalid' END",
        f"CASE WHEN {not_canonical} THEN 'identifier_not_canonical' END",
        "CASE WHEN a.country_unknown THEN 'country_unknown' END",
        "CASE WHEN n.full_name_split THEN 'full_name_split' END",
        "CASE WHEN b.language_raw IS NOT NULL AND lg.language IS NULL THEN 'language_unknown' END",
    ]
    for name, (_typed, raw) in fields.items():
        if raw is not None:
            flags.append(f"CASE WHEN b.r_{name} IS NOT NULL AND b.f_{name} IS NULL "
                         f"THEN {quote_literal(name + '_invalid')} END")
    is_person = "b.party_type = 'person'"
    values = {
        "source_record_id": f"{_literal(mapping.name)} || ':' || b.source_key",
        "source_system": _literal(mapping.name),
        "source_key": "b.source_key",
        "source_file": "b._source_file",
        "source_row_number": "b._row_number",
        "source_part": "b.source_part",
        "run_id": _literal(run_id),
        "party_type": "b.party_type",
        "full_name": "n.full_name", "given_name": "n.given_name", "family_name": "n.family_name",
        "name_suffix": "n.name_suffix", "given_name_norm": "g.given_name_norm",
        "family_name_norm": "fa.family_name_norm", "family_name_key": "fa.family_name_key",
        "given_name_canonical": "g.given_name_canonical",
        "given_name_origin": "g.given_name_origin",
        "birth_family_name": f"CASE WHEN {is_person} THEN b.n_birth_family END",
        "birth_family_name_norm": "bf.birth_family_name_norm",
        "name_script": "n.name_script",
        "name_native": f"CASE WHEN {is_person} THEN coalesce(b.n_native, CASE WHEN n.name_script "
                       "= 'han' THEN n.full_name END) END",
        "birth_date_ambiguous": f"CASE WHEN {is_person} THEN b.birth_date_ambiguous END",
        "org_name": "b.n_org_name",
        "org_name_norm": "o.org_name_norm", "org_legal_form": "o.org_legal_form",
        # all three are NULL for a NULL org_name_norm: `org_names=False` (no row has one) spares
        # binding ~400 qualifier-stem expressions per real-time record
        "org_name_tokens": org_tokens_sql("o.org_name_norm") if org_names else "NULL",
        "org_name_qualifiers": org_qualifiers_sql("o.org_name_norm") if org_names else "NULL",
        "org_name_core": org_core_sql("o.org_name_norm") if org_names else "NULL",
    }
    if not one_lookup_row:  # the batch computed them once per distinct name (org_lookup)
        values |= {column: f"o.{column}" for column in
                   ("org_name_tokens", "org_name_qualifiers", "org_name_core")}
    values |= {
        "registration_id": first_valid(org_ids, "id_value", "organization"),
        "national_id": first_valid(person_ids, "id_value", "person"),
        "national_id_type": first_valid(person_ids, "id_type", "person"),
        "phone_mobile": "ph.phone_mobile", "phone_landline": "ph.phone_landline",
        "email": "e.email",
        "street": "a.street", "house_number": "a.house_number", "postcode": "a.postcode",
        "city": "a.city", "country": "a.country", "street_display": "a.street_display",
        "house_number_display": "a.house_number_display", "city_display": "a.city_display",
        "language": "lg.language",
        "policy_key": policy_key_sql("b.f_policy_number") if "policy_number" in fields else "NULL",
        "quality_flags": f"list_filter([{', '.join(flags)}], lambda x: x IS NOT NULL)",
    }
    channels = [c for c in CONSENT_CHANNELS if c in fields]
    if "marketing_consent" not in fields and channels:
        # Only per-channel consents given: consent to marketing is consent on any channel.
        given = ", ".join(f"b.f_{c}" for c in channels)
        values["marketing_consent"] = (f"CASE WHEN list_bool_or([{given}]) THEN TRUE "
                                       f"WHEN len(list_filter([{given}], lambda x: x IS NOT NULL)) "
                                       f"> 0 THEN FALSE END")
    canonical = canonical_fields()
    select = []
    for name, sql_type in canonical.items():
        if name in values:
            expr = values[name]
        elif name in fields:
            expr = f"b.f_{name}"
        else:
            expr = "NULL"
        if name in ("birth_date", "sex") and name in fields:
            expr = f"CASE WHEN {is_person} THEN {expr} END"
        select.append(f"CAST({expr} AS {sql_type}) AS {name}")
    joins = [
        "LEFT JOIN address_lookup a USING (a_key)",
        "LEFT JOIN email_lookup e ON e.email_raw = b.email_raw",
        "LEFT JOIN phones ph ON ph._rid = b._rid",
        "LEFT JOIN person_names n ON n._rid = b._rid",
        "LEFT JOIN given_lookup g ON g.given_name = n.given_name",
        "LEFT JOIN family_lookup fa ON fa.family_name = n.family_name",
        f"LEFT JOIN (SELECT family_name AS bf_name, family_name_norm AS birth_family_name_norm "
        f"FROM family_lookup) bf ON bf.bf_name = b.n_birth_family AND {is_person}",
        "LEFT JOIN org_lookup o ON o.org_name = b.n_org_name",
        "LEFT JOIN language_lookup lg ON lg.language_raw = b.language_raw",
    ]
    for i in id_selects:
        joins.append(f"LEFT JOIN id_lookup_{i} i{i} ON i{i}.value = b.id_{i} "
                     f"AND i{i}.party_type = b.party_type")
    if one_lookup_row:
        # One join, not one per alias: each alias is the lookup row as a struct, so `a.street`
        # reads a struct field where the batch reads a table column.
        aliases = [f"r AS {alias}" for alias in LOOKUP_ALIASES] + [
            f"struct_pack(id_value := r.id_{i}_value, id_type := r.id_{i}_type, "
            f"id_valid := r.id_{i}_valid, id_canonical := r.id_{i}_canonical) AS i{i}"
            for i in id_selects]
        joins = [f"JOIN (SELECT r._rid AS lookup_rid, {', '.join(aliases)} FROM {one_lookup_row} r) "
                 f"lookup ON lookup.lookup_rid = b._rid"]
    return f"SELECT {', '.join(select)} FROM b {' '.join(joins)}"
