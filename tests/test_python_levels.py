"""Splink's comparison levels compiled to Python give DuckDB's levels (pipelines/resolve/python_levels.py)."""

from __future__ import annotations

import random

import duckdb
import pytest

from pipelines.resolve import load_model
from pipelines.resolve.features import create_comparison_table
from pipelines.resolve.python_levels import NearTie, compile_levels
from pipelines.resolve.realtime import compile_scorer
from pipelines.resolve.sample import write_sample

ALPHABET = list("abcdeéüß王伟 -'") + ["", "Ł"]


def _edited(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randint(0, 3)):
        op = rng.random()
        if op < 0.3 and chars:
            chars[rng.randrange(len(chars))] = rng.choice(ALPHABET)
        elif op < 0.6 and len(chars) > 1:
            i = rng.randrange(len(chars) - 1)
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        elif op < 0.8:
            chars.insert(rng.randint(0, len(chars)), rng.choice(ALPHABET))
        elif chars:
            chars.pop(rng.randrange(len(chars)))
    return "".join(chars)


def test_string_functions_equal_duckdbs_on_unicode_and_edge_values():
    rng = random.Random(3)
    lefts = ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 8))) for _ in range(2500)]
    rights = [_edited(rng, a) for a in lefts]
    lefts += ["", "", None, "a"]
    rights += ["", "a", "a", None]
    sql = ("CASE WHEN jaro_winkler_similarity(x_l, x_r) >= 0.92 THEN 4 "
           "WHEN damerau_levenshtein(x_l, x_r) <= 1 THEN 3 WHEN levenshtein(x_l, x_r) <= 2 THEN 2 "
           "WHEN jaro_winkler_similarity(x_l, x_r) >= 0.7 THEN 1 ELSE 0 END AS gamma_x, "
           "CASE WHEN contains(x_l, x_r) THEN 2 WHEN replace(x_l, ' ', '') = replace(x_r, ' ', '') THEN 1 "
           "WHEN len(x_l) > len(x_r) THEN -1 ELSE 0 END AS gamma_y")
    compiled, why = compile_levels(sql)
    assert compiled is not None, why
    con = duckdb.connect()
    expected = con.execute(f"SELECT {sql}, jaro_winkler_similarity(x_l, x_r), damerau_levenshtein(x_l, x_r) "
                           "FROM (SELECT unnest(?::varchar[]) AS x_l, unnest(?::varchar[]) AS x_r)",
                           [lefts, rights]).fetchall()
    decided = 0
    for a, b, row in zip(lefts, rights, expected, strict=True):
        try:
            level = compiled.levels({"x": a}, {"x": b})
        except NearTie:  # at a threshold: left to DuckDB (real-time falls back for that query)
            continue
        decided += 1
        assert (level["gamma_x"], level["gamma_y"]) == row[:2], (a, b)
    assert decided > 0.95 * len(lefts)
    # and the similarity figures themselves (UTF-8 bytes, as DuckDB counts them): the same to
    # the last bit or two (another order of the same operations), distances exactly
    from pipelines.resolve.python_levels import _damerau_levenshtein, _jaro_winkler

    for (a, b), row in zip(zip(lefts, rights, strict=True), expected, strict=True):
        if a is not None and b is not None:
            assert abs(_jaro_winkler(a, b) - row[2]) < 1e-12, (a, b)
            assert _damerau_levenshtein(a, b) == row[3], (a, b)


def test_a_similarity_at_a_threshold_is_left_to_duckdb():
    compiled, _ = compile_levels("CASE WHEN jaro_winkler_similarity(x_l, x_r) >= 0.8 THEN 1 "
                                 "ELSE 0 END AS gamma_x")
    # jaro("abcde", "abcxy") = (3/5 + 3/5 + 1) / 3 = 0.7333..; +0.3 prefix boost: 0.8133..
    assert compiled.levels({"x": "abcde"}, {"x": "abcxy"}) == {"gamma_x": 1}
    tie, _ = compile_levels("CASE WHEN jaro_winkler_similarity(x_l, x_r) >= 0.8133333333333334 "
                            "THEN 1 ELSE 0 END AS gamma_x")
    with pytest.raises(NearTie):
        tie.levels({"x": "abcde"}, {"x": "abcxy"})


def test_lists_nulls_and_three_valued_logic_as_duckdb():
    sql = ("CASE WHEN list_has_any(a_l, a_r) AND NOT (b_l IS NULL) THEN 3 "
           "WHEN list_has_all(a_l, a_r) OR b_l = b_r THEN 2 "
           "WHEN list_contains(a_l, b_r) OR coalesce(list_sort(a_l) = list_sort(a_r), false) THEN 1 "
           "WHEN 'x' IN (b_l, b_r) THEN -1 ELSE 0 END AS gamma_z")
    compiled, why = compile_levels(sql)
    assert compiled is not None, why
    values = [None, [], ["x"], ["x", "y"], ["y", "x"], ["x", None], [None]]
    scalars = [None, "x", "y"]
    cases = [(a, b, c, d) for a in values for b in values for c in scalars for d in scalars]
    con = duckdb.connect()
    con.execute("CREATE TABLE t (a_l VARCHAR[], a_r VARCHAR[], b_l VARCHAR, b_r VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", cases)
    expected = [g for (g,) in con.execute(f"SELECT {sql} FROM t ORDER BY rowid").fetchall()]
    got = [compiled.levels({"a": a, "b": c}, {"a": b, "b": d})["gamma_z"] for a, b, c, d in cases]
    assert got == expected


def test_unsupported_sql_is_refused_with_the_reason():
    compiled, why = compile_levels("CASE WHEN regexp_matches(x_l, x_r) THEN 1 ELSE 0 END AS gamma_x")
    assert compiled is None and "regexp" in why.lower()
    compiled, why = compile_levels("CASE WHEN l.x = r.x THEN 1 ELSE 0 END AS gamma_x")
    assert compiled is None and "qualified" in why


@pytest.fixture(scope="module")
def comparison_rows(tmp_path_factory):
    records, _ = write_sample(tmp_path_factory.mktemp("levels"), seed=5)
    con = duckdb.connect()
    for party in ("person", "organization"):
        create_comparison_table(con, records, party, f"input_{party}")
    return con


@pytest.mark.parametrize(("party", "min_pairs"), [("person", 2000), ("organization", 300)])
def test_the_shipped_models_levels_equal_splinks_sql_on_many_pairs(comparison_rows, party, min_pairs):
    """Every gamma of the shipped model, Python vs Splink's own comparison SQL in DuckDB, on
    pairs sharing a city (near and far pairs, nulls, households)."""
    con = comparison_rows
    scorer = compile_scorer(load_model(party))
    compiled, why = compile_levels(scorer.comparison_columns)
    assert compiled is not None, why
    tf = sorted({n.strip('"')[:-2] for n in scorer.tf_columns})
    table = f"scored_{party}"
    con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT *"
                + "".join(f", NULL::DOUBLE AS {c}" for c in tf) + f" FROM input_{party}")
    cursor = con.execute(
        f"WITH blocked AS (SELECT {scorer.blocking_columns}, 0 AS match_key FROM {table} l JOIN {table} r "
        f"ON l.city = r.city AND l.unique_id < r.unique_id) "
        f"SELECT unique_id_l, unique_id_r, {scorer.comparison_columns} FROM blocked")
    names = [d[0] for d in cursor.description]
    expected = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    assert len(expected) > min_pairs
    cursor = con.execute(f"SELECT * FROM {table}")
    columns = [d[0] for d in cursor.description]
    rows = {r[0]: dict(zip(columns, r, strict=True)) for r in cursor.fetchall()}
    mismatched = []
    for pair in expected:
        try:
            got = compiled.levels(rows[pair["unique_id_l"]], rows[pair["unique_id_r"]])
        except NearTie:
            continue
        wrong = {g: (pair[g], v) for g, v in got.items() if pair[g] != v}
        if wrong:
            mismatched.append((pair["unique_id_l"], pair["unique_id_r"], wrong))
    assert not mismatched, mismatched[:5]
    levels_seen = {g: {p[g] for p in expected} for g in scorer.gamma_columns}
    assert sum(len(v) for v in levels_seen.values()) > 2 * len(levels_seen)  # not all ELSE


@pytest.mark.parametrize("party", ["person", "organization"])
def test_the_model_input_row_in_python_equals_duckdbs(tmp_path, party):
    """resolve's input SQL (features.comparison_input_sql) run on one record at a time in Python:
    the same row as DuckDB gives, or a refusal (Unsupported) that sends the record to DuckDB."""
    import pandas as pd

    from pipelines.resolve.features import COLUMN_TYPES, COLUMNS, comparison_input_sql
    from pipelines.resolve.python_levels import Unsupported, compile_row_query

    records_path, _ = write_sample(tmp_path, seed=9)
    frame = pd.read_parquet(records_path)
    frame = frame[frame["party_type"] == party].head(300)
    columns = ["source_record_id", *COLUMNS[party]]
    rows = []
    for record in frame.to_dict("records"):
        row = {}
        for c in columns:
            v = record.get(c)
            if COLUMN_TYPES.get(c, "").endswith("[]"):
                row[c] = None if v is None else [str(x) for x in v]
            else:
                row[c] = None if v is None or (isinstance(v, float) and v != v) else str(v)
        rows.append(row)
    # hostile spellings: padded, tabbed, NBSP, empty, impossible and other date spellings
    odd = ["  x ", "\tx", "x\u00a0", "", " ", None, "2020-02-30", "2020-1-5", " 2020-01-05", "05.01.2020"]
    for i, value in enumerate(odd):
        row = dict(rows[i])
        row["source_record_id"] = f"odd:{i}"
        for c in columns[1:]:
            if not COLUMN_TYPES.get(c, "").endswith("[]"):
                row[c] = value if (c != "birth_date" or i >= 6 or value is None) else row[c]
        rows.append(row)
    sql = comparison_input_sql("src", set(columns), party)
    compiled, why = compile_row_query(sql, "src")
    assert compiled is not None, why
    con = duckdb.connect()
    types = ["VARCHAR[]" if COLUMN_TYPES.get(c, "").endswith("[]") else "VARCHAR" for c in columns]
    con.execute("CREATE TABLE src (" + ", ".join(f'"{c}" {t}' for c, t in zip(columns, types, strict=True)) + ")")
    con.executemany(f"INSERT INTO src VALUES ({', '.join('?' for _ in columns)})",
                    [[r[c] for c in columns] for r in rows])
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    expected = {r[0]: dict(zip(names, r, strict=True)) for r in cursor.fetchall()}
    decided = 0
    for row in rows:
        try:
            got = compiled(row)
        except Unsupported:
            continue
        decided += 1
        assert got == expected[row["source_record_id"]], row["source_record_id"]
    assert decided >= len(frame) > 20  # every ordinary record decided in Python


def test_the_key_hash_is_duckdbs_md5_number_lower():
    from pipelines.identify.realtime import _key_hash

    keys = ["0\x1fwang\x1fwei", "3\x1f2001-02-03", "", "Müller 王伟", "x" * 300]
    expected = duckdb.connect().execute("SELECT md5_number_lower(unnest(?::VARCHAR[]))", [keys]).fetchall()
    assert [_key_hash(k) for k in keys] == [int(v) for (v,) in expected]


def test_projections_for_the_canonical_select_equal_duckdbs():
    """What the standardizer's canonical SELECT needs (records.compile_canonical_select): casts
    that pin a type, ||, regexp_replace through RE2, list_transform / list_distinct / starts_with
    / left, list_bool_or; upper and lower only where Python's case mapping is DuckDB's."""
    from pipelines.resolve.python_levels import Unsupported, compile_projections

    sql = ("SELECT CAST(b AS BOOLEAN) AS c_bool, CAST(n AS BIGINT) AS c_int, CAST(n AS DOUBLE) AS c_double, "
           "CAST(d AS TIMESTAMP) AS c_ts, 'k:' || s AS c_pipe, "
           "NULLIF(regexp_replace(regexp_replace(upper(s), '[^A-Z0-9]', '', 'g'), "
           "'(^|[^0-9])0+([0-9])', '\\1\\2', 'g'), '') AS c_key, regexp_replace(s, '0', 'o') AS c_first, "
           "list_sort(list_distinct(list_filter(string_split(s, ' '), lambda t: t <> ''))) AS c_tokens, "
           "list_transform(string_split(s, ' '), lambda t: CASE WHEN starts_with(t, 'ab') OR left(t, 2) = 'zz' "
           "THEN 'x' END) AS c_marks, list_bool_or([b, NOT b, NULL]) AS c_any, lower(s) AS c_lower FROM t")
    rows = [(True, 7, "2024-02-29", "ab 00012 ab  zz9 DE-00-7"), (False, -3, None, "Straße 0"),
            (None, None, "1999-12-31", None), (True, 0, "2000-01-01", ""), (False, 2**40, None, "ΟΔΟΣ")]
    con = duckdb.connect()
    con.execute("CREATE TABLE t (b BOOLEAN, n BIGINT, d DATE, s VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", rows)
    cursor = con.execute(sql + " ORDER BY rowid")
    names = [c[0] for c in cursor.description]
    expected = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    projections, why = compile_projections(sql, lambda node: (lambda left, right: left[node.name]))
    assert projections is not None, why
    decided = 0
    for values, want in zip(con.execute("SELECT * FROM t ORDER BY rowid").fetchall(), expected, strict=True):
        row = dict(zip("bnds", values, strict=True))
        got = {}
        for name, fn in projections:
            try:
                got[name] = fn(row, row)
            except Unsupported:
                got[name] = "<DuckDB decides>"
        for name in names:
            if got[name] != "<DuckDB decides>":
                assert got[name] == want[name], (name, row, got[name], want[name])
                decided += 1
    # refused, and only those: ß upper-cases to 'SS' in Python, 'ẞ' in DuckDB; a final Σ
    # lower-cases to 'ς' and 'σ'; left() of non-ASCII text (DuckDB counts grapheme clusters)
    assert decided == len(rows) * len(names) - 4
    refused, why = compile_projections("SELECT regexp_replace(s, 'a.b', '') AS x FROM t",
                                       lambda node: (lambda left, right: left[node.name]))
    assert refused is None and "regexp_replace" in why
