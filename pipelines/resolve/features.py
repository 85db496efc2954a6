"""The comparison table Splink reads: canonical source records, one party type, plus derived keys.

Derived columns are computed once here in SQL (not per pair inside Splink): the birth date as
text for typo distance, an address key, the e-mail's local part, and a household phone.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pipelines.sql import quote_literal

# Canonical columns a party type's model may use; missing ones are filled with NULL so that a
# source set without, say, any national IDs still runs. Which of them a model actually compares
# is decided by `ucv train` from the field profile (model.py), never assumed here.
PERSON_COLUMNS = [
    "source_system", "given_name_norm", "family_name_norm", "given_name_canonical",
    "given_name_origin", "name_native", "birth_family_name_norm", "name_suffix", "sex", "birth_date",
    "national_id", "national_id_type", "passport_number", "customer_number",
    "phone_mobile", "phone_landline", "email", "street", "house_number", "postcode", "city",
    "country",
]
ORGANIZATION_COLUMNS = [
    "source_system", "org_name_norm", "org_name_tokens", "org_name_qualifiers", "org_name_core",
    "org_legal_form",
    "registration_id", "tax_id", "phone_mobile", "phone_landline", "email", "street",
    "house_number", "postcode", "city", "country",
]
COLUMNS = {"person": PERSON_COLUMNS, "organization": ORGANIZATION_COLUMNS}
# columns that are not trimmed text
COLUMN_TYPES = {"birth_date": "DATE", "org_name_tokens": "VARCHAR[]",
                "org_name_qualifiers": "VARCHAR[]"}


def _select_list(available: set[str], party_type: str) -> str:
    parts = []
    for column in COLUMNS[party_type]:
        if column in available:
            parts.append(f"TRY_CAST({column} AS {COLUMN_TYPES[column]}) AS {column}"
                         if column in COLUMN_TYPES else
                         f"nullif(trim({column}::VARCHAR), '') AS {column}")
        else:
            parts.append(f"CAST(NULL AS {COLUMN_TYPES.get(column, 'VARCHAR')}) AS {column}")
    return ",\n        ".join(parts)


def comparison_input_sql(source: str, available_columns: set[str], party_type: str) -> str:
    """SELECT giving the Splink input rows of one party type from `source` (a table or scan)."""
    person = party_type == "person"
    derived = [
        "strftime(birth_date, '%Y-%m-%d') AS birth_date_text" if person else None,
        # all name parts sorted: equal when the order or the given/family split differs
        "nullif(array_to_string(list_sort(list_filter(string_split(concat_ws(' ', "
        "given_name_norm, family_name_norm), ' '), lambda t: t <> '')), ' '), '') AS name_tokens"
        if person else None,
        "split_part(given_name_norm, ' ', 1) AS given_name_first" if person else None,
        "nullif(concat_ws(' ', street, house_number), '') AS street_house",
        # street without spaces: 'shangchengquhuanghejie' (from hanzi) contains 'huanghejie'
        "nullif(replace(street, ' ', ''), '') AS street_key",
        "split_part(email, '@', 1) AS email_local",
        "split_part(email, '@', 2) AS email_domain",
        # any number of the record: organizations often give one line under either kind
        "coalesce(phone_landline, phone_mobile) AS phone_any" if party_type == "organization"
        else None,
    ]
    derived_sql = ",\n        ".join(d for d in derived if d)
    return f"""
    WITH base AS (
        SELECT source_record_id AS unique_id,
        {_select_list(available_columns, party_type)}
        FROM {source}
        {f"WHERE party_type = {quote_literal(party_type)}" if "party_type" in available_columns else ""}
    )
    SELECT *, {derived_sql}
    FROM base
    """


@functools.cache
def _nick_namer():
    """The nickname table, loaded once per process (loading it costs more than a look-up)."""
    from nicknames import NickNamer

    return NickNamer()


def nickname_variants(names: list[str]) -> dict[str, list[str]]:
    """Each given name with every name it may be a nickname or formal form of (Ronny: Ronald)."""
    namer = _nick_namer()
    return {name: sorted({name} | namer.canonicals_of(name) | namer.nicknames_of(name))
            for name in names}


def cantonese_pinyin_forms(givens: list[str]) -> dict[str, list[str]]:
    """Each given name that is Cantonese romanisation with the pinyin spellings it can stand for
    (names.pinyin_forms_of_cantonese); others are left out (NULL in the table)."""
    from pipelines.standardize.names import pinyin_forms_of_cantonese

    found = {given: pinyin_forms_of_cantonese(given) for given in givens}
    return {given: list(forms) for given, forms in found.items() if forms}


def create_comparison_table(con, records_path_or_source, party_type: str, table_name: str) -> int:
    """Materialise the Splink input table in DuckDB; returns its row count.

    `records_path_or_source` is a parquet path or the name of a table/view already in `con`.
    """
    if isinstance(records_path_or_source, Path) or str(records_path_or_source).endswith(".parquet"):
        source = f"read_parquet({quote_literal(records_path_or_source)})"
    else:
        source = str(records_path_or_source)
    available = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table_name}_base AS "
                f"{comparison_input_sql(source, available, party_type)}")
    if party_type == "person":
        import pyarrow as pa

        # nickname look-ups are Python calls: one per distinct first given name, joined back
        names = [r[0] for r in con.execute(
            f"SELECT DISTINCT given_name_first FROM {table_name}_base "
            "WHERE given_name_first IS NOT NULL").fetchall()]
        variants = nickname_variants(names)
        nick = pa.table({"given_name_first": pa.array(list(variants), pa.string()),
                         "given_name_variants": pa.array(list(variants.values()),
                                                         pa.list_(pa.string()))})
        # and, per distinct given name, the pinyin it stands for if it is Cantonese ("Fong")
        givens = [r[0] for r in con.execute(
            f"SELECT DISTINCT given_name_norm FROM {table_name}_base "
            "WHERE given_name_norm IS NOT NULL").fetchall()]
        forms = cantonese_pinyin_forms(givens)
        sound = pa.table({"given_name_norm": pa.array(list(forms), pa.string()),
                          "given_name_pinyin_forms": pa.array(list(forms.values()),
                                                              pa.list_(pa.string()))})
        con.register(f"{table_name}_nick", nick)
        con.register(f"{table_name}_sound", sound)
        con.execute(f"""CREATE OR REPLACE TABLE {table_name} AS
            SELECT b.*, n.given_name_variants, s.given_name_pinyin_forms FROM {table_name}_base b
            LEFT JOIN {table_name}_nick n USING (given_name_first)
            LEFT JOIN {table_name}_sound s USING (given_name_norm) ORDER BY unique_id""")
        con.unregister(f"{table_name}_nick")
        con.unregister(f"{table_name}_sound")
    else:
        con.execute(f"CREATE OR REPLACE TABLE {table_name} AS "
                    f"SELECT * FROM {table_name}_base ORDER BY unique_id")
    con.execute(f"DROP TABLE {table_name}_base")
    return con.execute(f"SELECT count(*) FROM {table_name}").fetchall()[0][0]
