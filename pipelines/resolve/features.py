"""The comparison table Splink reads: canonical source records, one party type, plus derived keys.

Derived columns are computed once here in SQL (not per pair inside Splink): the birth date as
text for typo distance, an address key, the e-mail's local part, and a household phone.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pipelines.resolve.config import max_block_records
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


# Blocking keys shared by chance (a name and a city): their blocks grow with the population, and
# Wang Wei in Shanghai is hundreds of records whose every pair would be compared while none is
# told apart by name and city alone. Such a key is NULL on a record whose block holds more than
# `block_keys.max_block_records` records (resolution.yaml); those records are found through the
# other rules (phone, e-mail, birth date, postcode), so the rule stays linear at any size.
# Measured at 1M source records: the name + city rule made 4.29M of 5.09M comparisons; capped at
# 20 it makes 1.45M, and 35 true pairs were found by no other rule.
CAPPED_KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    "person": {
        "name_city_key": ("given_name_canonical", "family_name_norm", "city"),
        # names written in the other order: l.name_city_key_gf = r.name_city_key_fg
        "name_city_key_gf": ("given_name_norm", "family_name_norm", "city"),
        "name_city_key_fg": ("family_name_norm", "given_name_norm", "city"),
        "name_sound_city_key": ("name_sound", "city"),
    },
    "organization": {"org_sound_city_key": ("org_name_sound", "city")},
}


def block_key_sql(party_type: str) -> list[str]:
    """The uncapped key columns (NULL when any part is), as SELECT items over the input columns."""
    items = []
    for name, parts in CAPPED_KEYS[party_type].items():
        present = " AND ".join(f"{p} IS NOT NULL" for p in parts)
        items.append(f"CASE WHEN {present} THEN concat_ws('|', {', '.join(parts)}) END AS {name}")
    return items


def phonetic_keys(words: list[str]) -> dict[str, str]:
    """Each word's American Soundex code (jellyfish): 'mueller' and 'muller', 'meier' and
    'meyer', 'zhang' and 'zhnag' share one. A blocking key, never evidence by itself."""
    import jellyfish

    codes = {word: jellyfish.soundex(word) for word in words}
    return {word: code for word, code in codes.items() if code}  # '' for a word without letters


def sounds_and_keys_of_one_record(party_type: str, row: dict) -> dict:
    """The phonetic codes and (uncapped) block keys of one record, in Python: what
    create_comparison_table derives in SQL for a table, for the real-time path that builds a
    single row without it (a block of one record is never capped)."""
    found = dict(row)
    if party_type == "person":
        name, family = found.get("given_name_first"), found.get("family_name_norm")
        codes = phonetic_keys([w for w in (name, family) if w is not None])
        found["name_sound"] = (f"{codes[name]} {codes[family]}"
                               if name in codes and family in codes else None)
    else:
        words = list(found.get("org_name_tokens") or [])
        codes = phonetic_keys(words)
        found["org_name_sound"] = " ".join(codes[w] for w in words if w in codes) or None
    for key, parts in CAPPED_KEYS[party_type].items():
        values = [found.get(p) for p in parts]
        found[key] = None if any(v is None for v in values) else "|".join(map(str, values))
    return found


def _distinct(con, sql: str) -> list[str]:
    return [r[0] for r in con.execute(sql).fetchall() if r[0] is not None]


def _lookup(con, name: str, key: str, values: dict, value_column: str, list_type: bool) -> str:
    """Register a Python look-up (distinct value -> derived value) as an Arrow table."""
    import pyarrow as pa

    value_type = pa.list_(pa.string()) if list_type else pa.string()
    con.register(name, pa.table({key: pa.array(list(values), pa.string()),
                                 value_column: pa.array(list(values.values()), value_type)}))
    return name


def create_comparison_table(con, records_path_or_source, party_type: str, table_name: str,
                            ordered: bool = True) -> int:
    """Materialise the Splink input table in DuckDB; returns its row count.

    `records_path_or_source` is a parquet path or the name of a table/view already in `con`.
    `ordered`: rows in record-id order, which training's seeded sampling needs to give the same
    bytes; scoring does not depend on row order (at 1M the sort costs ~4 s).
    Derived values that need a library of the field (nicknames, Cantonese readings, phonetic
    codes) are Python calls, one per distinct value, joined back in one statement.
    """
    if isinstance(records_path_or_source, Path) or str(records_path_or_source).endswith(".parquet"):
        source = f"read_parquet({quote_literal(records_path_or_source)})"
    else:
        source = str(records_path_or_source)
    available = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    base = f"{table_name}_base"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {base} AS "
                f"{comparison_input_sql(source, available, party_type)}")
    lookups: list[str] = []
    if party_type == "person":
        first = _distinct(con, f"SELECT DISTINCT given_name_first FROM {base}")
        givens = _distinct(con, f"SELECT DISTINCT given_name_norm FROM {base}")
        words = _distinct(con, f"SELECT DISTINCT given_name_first FROM {base} UNION "
                               f"SELECT DISTINCT family_name_norm FROM {base}")
        lookups = [
            _lookup(con, f"{table_name}_nick", "given_name_first", nickname_variants(first),
                    "given_name_variants", True),
            _lookup(con, f"{table_name}_cantonese", "given_name_norm",
                    cantonese_pinyin_forms(givens), "given_name_pinyin_forms", True),
            _lookup(con, f"{table_name}_sound", "word", phonetic_keys(words), "sound", False),
        ]
        select = f"""SELECT b.*, n.given_name_variants, c.given_name_pinyin_forms,
                CASE WHEN gs.sound IS NOT NULL AND fs.sound IS NOT NULL
                     THEN gs.sound || ' ' || fs.sound END AS name_sound
            FROM {base} b
            LEFT JOIN {lookups[0]} n USING (given_name_first)
            LEFT JOIN {lookups[1]} c USING (given_name_norm)
            LEFT JOIN {lookups[2]} gs ON gs.word = b.given_name_first
            LEFT JOIN {lookups[2]} fs ON fs.word = b.family_name_norm"""
    else:
        # the distinctive words of the name (qualifiers and legal form are separate columns),
        # each by its sound, in the name's order: 'boohnbach consulting' ~ 'bohnbach consulting'
        words = _distinct(con, f"SELECT DISTINCT unnest(org_name_tokens) FROM {base}")
        lookups = [_lookup(con, f"{table_name}_sound", "word", phonetic_keys(words), "sound",
                           False)]
        con.execute(f"""CREATE OR REPLACE TEMP TABLE {table_name}_org_sound AS
            SELECT unique_id, string_agg(s.sound, ' ' ORDER BY t.i) AS org_name_sound
            FROM (SELECT unique_id, unnest(org_name_tokens) AS word,
                         generate_subscripts(org_name_tokens, 1) AS i FROM {base}) t
            JOIN {lookups[0]} s USING (word) GROUP BY unique_id""")
        select = f"""SELECT b.*, o.org_name_sound FROM {base} b
            LEFT JOIN {table_name}_org_sound o USING (unique_id)"""
    keys = ", ".join(block_key_sql(party_type))
    order = "ORDER BY unique_id" if ordered else ""
    cap = max_block_records()
    if con.execute(f"SELECT count(*) FROM {base}").fetchall()[0][0] <= cap:
        # no block can exceed the cap (one record resolved in real time): one statement
        con.execute(f"CREATE OR REPLACE TABLE {table_name} AS SELECT *, {keys} FROM ({select}) {order}")
    else:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table_name}_keyed AS SELECT *, {keys} FROM ({select})")
        # the blocks too large to compare, by hash aggregation (a window per key sorts the table)
        capped = []
        for name in CAPPED_KEYS[party_type]:
            con.execute(f"""CREATE OR REPLACE TEMP TABLE {table_name}_big_{name} AS
                SELECT {name} AS k FROM {table_name}_keyed WHERE {name} IS NOT NULL
                GROUP BY 1 HAVING count(*) > {cap}""")
            capped.append(f"CASE WHEN {name} IN (SELECT k FROM {table_name}_big_{name}) "
                          f"THEN NULL ELSE {name} END AS {name}")
        con.execute(f"""CREATE OR REPLACE TABLE {table_name} AS
            SELECT * REPLACE ({", ".join(capped)}) FROM {table_name}_keyed {order}""")
        for name in CAPPED_KEYS[party_type]:
            con.execute(f"DROP TABLE {table_name}_big_{name}")
        con.execute(f"DROP TABLE {table_name}_keyed")
    for name in lookups:
        con.unregister(name)
    con.execute(f"DROP TABLE {base}")
    con.execute(f"DROP TABLE IF EXISTS {table_name}_org_sound")
    return con.execute(f"SELECT count(*) FROM {table_name}").fetchall()[0][0]
