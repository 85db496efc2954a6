"""Standardize accepted source rows to the canonical record (schemas/canonical.yaml).

Set-based: one DuckDB pass maps the mapping's columns to working columns; every standardizer that
needs a Python library (names, phones, e-mails, addresses, IDs, legal forms) runs once per
DISTINCT value and is joined back; a last SELECT assembles the canonical columns in schema order.
`standardize_frame` runs the same code on a pandas frame of source-shaped rows (real time).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from pipelines.ingest.mapping import FieldSpec, SourceMapping, canonical_fields
from pipelines.settings import RunPaths
from pipelines.standardize.bulk import address_lookup_table, email_lookup_table, python_lookup
from pipelines.standardize.names import (
    canonical_given_name,
    family_name_norm,
    given_name_norm,
    name_script,
    parse_full_name,
)
from pipelines.standardize.organizations import check_identifier, split_legal_form
from pipelines.standardize.phones import phone_lookup_table

NO_VALUE = "\x1e"   # stands for NULL inside composite lookup keys
KEY_SEPARATOR = "\x1f"


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
        con.execute(f"CREATE TEMP VIEW src AS SELECT * FROM read_parquet('{_path_sql(accepted)}')")
        columns = [r[0] for r in con.execute("DESCRIBE src").fetchall()]
        final_sql = build_canonical(con, mapping, columns, run.run_id)
        con.execute(f"COPY ({final_sql} ORDER BY source_file, source_row_number) "
                    f"TO '{_path_sql(tmp)}' (FORMAT parquet, COMPRESSION zstd)")
    tmp.replace(out)
    return out


def standardize_frame(mapping: SourceMapping, df: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """Raw source-shaped rows (export column names) -> canonical rows, as in the batch run."""
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
    table = pa.table(arrays)
    with duckdb.connect() as con:
        con.register("src_frame", table)
        con.execute("CREATE TEMP VIEW src AS SELECT * FROM src_frame")
        final_sql = build_canonical(con, mapping, list(table.column_names), run_id)
        return con.execute(f"{final_sql} ORDER BY source_row_number").df()


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


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _path_sql(path: Path) -> str:
    return str(path).replace("'", "''")


def column_sql(path: str | None, columns: Sequence[str]) -> str:
    """Text of a mapped column; `a.b` reads key b of the JSON object in column a. Blank -> NULL."""
    if path is None:
        return "NULL::VARCHAR"
    if path in columns:
        return f"NULLIF(trim({_quote(path)}), '')"
    root, _, rest = path.partition(".")
    if root not in columns:
        return "NULL::VARCHAR"  # an optional column this export does not have
    json_path = "$." + ".".join(f'"{part}"' for part in rest.split("."))
    return (f"NULLIF(trim(CASE WHEN json_valid({_quote(root)}) THEN "
            f"json_extract_string({_quote(root)}, {_literal(json_path)}) END), '')")


def list_column_sql(path: str, columns: Sequence[str]) -> str:
    """A JSON list column as VARCHAR[]; a plain value becomes a one-element list."""
    value = column_sql(path, columns)
    return (f"CASE WHEN {value} IS NULL THEN []::VARCHAR[] "
            f"WHEN json_valid({value}) AND json_type({value}) = 'ARRAY' "
            f"THEN json_extract_string({value}, '$[*]') ELSE [{value}] END")


def _value_map_sql(value: str, values: dict, target_type: str) -> str:
    cases = " ".join(f"WHEN {_literal(raw)} THEN CAST({_literal(mapped)} AS VARCHAR)"
                     for raw, mapped in values.items())
    return f"CASE {value} {cases} ELSE {value} END"


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


def field_sql(name: str, spec: FieldSpec, columns: Sequence[str]) -> tuple[str, str | None]:
    """(typed SQL expression, raw text expression for the 'invalid' check) of one plain field."""
    target_type = canonical_fields()[name]
    if spec.column is None:
        return f"CAST({_literal(spec.value)} AS {target_type})", None
    value = column_sql(spec.column, columns)
    if spec.values:
        value = _value_map_sql(value, spec.values, target_type)
    if target_type in ("DATE", "TIMESTAMP"):
        return _date_sql(value, spec.formats, target_type), value
    if target_type == "DOUBLE" and spec.decimal == ",":
        value = f"replace(replace({value}, '.', ''), ',', '.')"
    if target_type == "VARCHAR":
        return f"CAST({value} AS VARCHAR)", None
    return f"TRY_CAST({value} AS {target_type})", value


# --------------------------------------------------------------------------------------------
# Python standardizers over distinct values


def _key(*parts: str) -> str:
    return "concat_ws(chr(31), " + ", ".join(f"coalesce({p}, chr(30))" for p in parts) + ")"


def _unkey(key: str) -> list[str | None]:
    return [None if p == NO_VALUE else p for p in key.split(KEY_SEPARATOR)]


def _person_name(full: str | None, given: str | None, family: str | None, native: str | None,
                 country: str | None) -> tuple:
    """(given, family, suffix, script, full_name) for one distinct combination."""
    suffix = None
    if full and not (given or family):
        parsed = parse_full_name(full, country)
        given, family, suffix = parsed.given, parsed.family, parsed.suffix
    script = name_script(given, family, full if not (given or family) else None)
    if full is None:
        parts = [family, given] if script == "han" else [given, family]
        full = ("" if script == "han" else " ").join(p for p in parts if p) or None
    return given, family, suffix, script, full


def _given(given: str) -> tuple:
    norm = given_name_norm(given)
    return norm, canonical_given_name(norm)


# --------------------------------------------------------------------------------------------
# The canonical SELECT


def build_canonical(con: duckdb.DuckDBPyConnection, mapping: SourceMapping, columns: list[str],
                    run_id: str) -> str:
    """Create the working tables for view `src` and return the SELECT of canonical rows."""
    col = lambda path: column_sql(path, columns)  # noqa: E731
    spec, addr = mapping.name_spec, mapping.address
    party = mapping.party_type
    if party.column:
        cases = " ".join(f"WHEN {_literal(raw)} THEN {_literal(p)}" for raw, p in party.values.items())
        party_sql = f"CASE {col(party.column)} {cases} ELSE {_literal(party.default)} END"
    else:
        party_sql = _literal(party.default)

    phone_parts = []
    for phone in mapping.phones:
        kind = _literal(phone.kind)
        if phone.is_list:
            phone_parts.append(f"list_transform({list_column_sql(phone.column, columns)}, "
                               f"lambda x: struct_pack(v := NULLIF(trim(x), ''), kind := {kind}::VARCHAR))")
        else:
            phone_parts.append(f"[struct_pack(v := {col(phone.column)}, kind := {kind}::VARCHAR)]")
    phones_sql = " || ".join(phone_parts) if phone_parts else \
        "[]::STRUCT(v VARCHAR, kind VARCHAR)[]"

    fields = {name: field_sql(name, fs, columns) for name, fs in mapping.fields.items()}
    id_columns = [f"{col(ident.column)} AS id_{i}" for i, ident in enumerate(mapping.identifiers)]
    select = [
        "row_number() OVER (ORDER BY _source_file, _row_number) AS _rid",
        "_source_file", "_row_number",
        f"{col(mapping.native_key)} AS source_key",
        f"coalesce({party_sql}, 'person') AS party_type",
        f"({party_sql}) IS NULL AS party_type_defaulted",
        f"{col(spec.given)} AS n_given", f"{col(spec.family)} AS n_family",
        f"{col(spec.full)} AS n_full", f"{col(spec.native)} AS n_native",
        f"{col(spec.organization)} AS n_org",
        f"{col(mapping.email)} AS email_raw",
        f"list_filter({phones_sql}, lambda p: p.v IS NOT NULL) AS phone_candidates",
        *[f"{col(getattr(addr, k))} AS a_{k}" for k in
          ("street_line", "one_line", "street", "house_number", "postcode", "city", "country")],
        *id_columns,
    ]
    for name, (typed, raw) in fields.items():
        select.append(f"{typed} AS f_{name}")
        if raw is not None:
            select.append(f"{raw} AS r_{name}")
    if "birth_date" in mapping.fields and mapping.fields["birth_date"].column:
        fs = mapping.fields["birth_date"]
        raw = column_sql(fs.column, columns)
        select.append(f"{_ambiguous_sql(raw, fs.formats)} AS birth_date_ambiguous")
    else:
        select.append("NULL::BOOLEAN AS birth_date_ambiguous")
    con.execute(f"CREATE OR REPLACE TEMP TABLE b AS SELECT {', '.join(select)} FROM src")

    # Address first: its country decides the phone region and how romanised names are ordered.
    address_parts = ["a_street_line", "a_one_line", "a_street", "a_house_number", "a_postcode",
                     "a_city", "a_country"]
    con.execute(f"ALTER TABLE b ADD COLUMN a_key VARCHAR; UPDATE b SET a_key = {_key(*address_parts)}")
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
    con.execute(r"""ALTER TABLE phone_rows ADD COLUMN v_clean VARCHAR;
                    UPDATE phone_rows SET v_clean = regexp_replace(
                        regexp_replace(v, '\(0\)', '', 'g'), '[^0-9+]', '', 'g')""")
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
        person, org, patterns = ident.person, ident.organization, ident.patterns

        def check(value, party, person=person, org=org, patterns=patterns):
            modules = person if party == "person" else org
            if not modules:
                return None, None, True
            return check_identifier(value, modules, patterns if party == "organization" else ())

        python_lookup(con, f"id_lookup_{i}",
                     f"SELECT DISTINCT id_{i} AS value, party_type FROM b WHERE id_{i} IS NOT NULL",
                     check, [("id_value", pa.string()), ("id_type", pa.string()),
                             ("id_valid", pa.bool_())])
        id_selects.append(i)

    con.execute("""CREATE OR REPLACE TEMP TABLE persons AS
                   SELECT b._rid, b.n_full, b.n_given, b.n_family, b.n_native, a.country
                     FROM b LEFT JOIN address_lookup a USING (a_key)
                    WHERE b.party_type = 'person'""")
    con.execute(f"ALTER TABLE persons ADD COLUMN n_key VARCHAR; UPDATE persons SET n_key = "
                f"{_key('n_full', 'n_given', 'n_family', 'n_native', 'country')}")
    python_lookup(con, "name_lookup", "SELECT DISTINCT n_key FROM persons",
                 lambda key: _person_name(*_unkey(key)),
                 [("given_name", pa.string()), ("family_name", pa.string()),
                  ("name_suffix", pa.string()), ("name_script", pa.string()),
                  ("full_name", pa.string())])
    con.execute("""CREATE OR REPLACE TEMP TABLE person_names AS
                   SELECT p._rid, l.*, p.n_native FROM persons p JOIN name_lookup l USING (n_key)""")
    python_lookup(con, "given_lookup",
                 "SELECT DISTINCT given_name FROM person_names WHERE given_name IS NOT NULL",
                 _given, [("given_name_norm", pa.string()), ("given_name_canonical", pa.string())])
    python_lookup(con, "family_lookup",
                 "SELECT DISTINCT family_name FROM person_names WHERE family_name IS NOT NULL",
                 lambda f: (family_name_norm(f),), [("family_name_norm", pa.string())])
    python_lookup(con, "org_lookup",
                 "SELECT DISTINCT coalesce(n_org, n_full) AS org_name FROM b "
                 "WHERE party_type = 'organization' AND coalesce(n_org, n_full) IS NOT NULL",
                 split_legal_form, [("org_name_norm", pa.string()), ("org_legal_form", pa.string())])

    return _final_select(mapping, run_id, fields, id_selects)


def _final_select(mapping: SourceMapping, run_id: str, fields: dict, id_selects: list[int]) -> str:
    """Canonical columns in schema order, from b and the lookup tables."""
    person_ids = [i for i in id_selects if mapping.identifiers[i].person]
    org_ids = [i for i in id_selects if mapping.identifiers[i].organization]

    def first_valid(indexes: list[int], column: str, party: str) -> str:
        if not indexes:
            return "NULL::VARCHAR"
        parts = [f"CASE WHEN b.party_type = '{party}' AND i{i}.id_valid THEN i{i}.{column} END"
                 for i in indexes]
        return f"coalesce({', '.join(parts)})" if len(parts) > 1 else parts[0]

    def any_invalid(indexes: list[int], party: str) -> str:
        if not indexes:
            return "FALSE"
        parts = [f"coalesce(b.party_type = '{party}' AND NOT i{i}.id_valid, FALSE)" for i in indexes]
        return " OR ".join(parts)

    flags = [
        "CASE WHEN b.birth_date_ambiguous THEN 'dob_ambiguous' END",
        "CASE WHEN b.party_type_defaulted THEN 'party_type_defaulted' END",
        "e.email_flag",
        "CASE WHEN ph.phone_invalid THEN 'phone_invalid' END",
        "CASE WHEN ph.phone_unverified THEN 'phone_unverified' END",
        f"CASE WHEN {any_invalid(person_ids, 'person')} THEN 'national_id_invalid' END",
        f"CASE WHEN {any_invalid(org_ids, 'organization')} THEN 'registration_id_invalid' END",
    ]
    for name, (_typed, raw) in fields.items():
        if raw is not None:
            flags.append(f"CASE WHEN b.r_{name} IS NOT NULL AND b.f_{name} IS NULL "
                         f"THEN '{name}_invalid' END")
    is_person = "b.party_type = 'person'"
    values = {
        "source_record_id": f"{_literal(mapping.name)} || ':' || b.source_key",
        "source_system": _literal(mapping.name),
        "source_key": "b.source_key",
        "source_file": "b._source_file",
        "source_row_number": "b._row_number",
        "run_id": _literal(run_id),
        "party_type": "b.party_type",
        "full_name": "n.full_name", "given_name": "n.given_name", "family_name": "n.family_name",
        "name_suffix": "n.name_suffix", "given_name_norm": "g.given_name_norm",
        "family_name_norm": "fa.family_name_norm",
        "given_name_canonical": "g.given_name_canonical",
        "name_script": "n.name_script",
        "name_native": f"CASE WHEN {is_person} THEN coalesce(b.n_native, CASE WHEN n.name_script "
                       "= 'han' THEN n.full_name END) END",
        "birth_date_ambiguous": f"CASE WHEN {is_person} THEN b.birth_date_ambiguous END",
        "org_name": "CASE WHEN b.party_type = 'organization' THEN coalesce(b.n_org, b.n_full) END",
        "org_name_norm": "o.org_name_norm", "org_legal_form": "o.org_legal_form",
        "registration_id": first_valid(org_ids, "id_value", "organization"),
        "national_id": first_valid(person_ids, "id_value", "person"),
        "national_id_type": first_valid(person_ids, "id_type", "person"),
        "phone_mobile": "ph.phone_mobile", "phone_landline": "ph.phone_landline",
        "email": "e.email",
        "street": "a.street", "house_number": "a.house_number", "postcode": "a.postcode",
        "city": "a.city", "country": "a.country",
        "quality_flags": f"list_filter([{', '.join(flags)}], lambda x: x IS NOT NULL)",
    }
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
        "LEFT JOIN org_lookup o ON o.org_name = coalesce(b.n_org, b.n_full) "
        "AND b.party_type = 'organization'",
    ]
    for i in id_selects:
        joins.append(f"LEFT JOIN id_lookup_{i} i{i} ON i{i}.value = b.id_{i} "
                     f"AND i{i}.party_type = b.party_type")
    return f"SELECT {', '.join(select)} FROM b {' '.join(joins)}"
