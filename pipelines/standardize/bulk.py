"""Set-based forms of the address and e-mail standardizers, for a million rows.

Street lines and e-mail addresses are nearly unique per row, so calling Python once per distinct
value is still too slow. The plain cases are decided in DuckDB with the same regular expressions
the Python standardizers use (house number split off a Latin street line, the simple e-mail
shape); only what is left over — one-line and hanzi addresses, unusual e-mails — goes through
the Python functions, and the folding runs over the few distinct street and city names.
Tests check that both paths give the same results.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from typing import Any

import duckdb
import pyarrow as pa
from email_validator import SPECIAL_USE_DOMAIN_NAMES

from pipelines.sql import quote_literal
from pipelines.standardize.addresses import (
    GERMAN_STREET,
    LEADING_NUMBER_STREET,
    fold_city,
    fold_street,
    normalise_country,
    standardize_address,
)
from pipelines.standardize.contact import SIMPLE_EMAIL, standardize_email
from pipelines.standardize.text import nfkc

HAN_SQL = r"'[\x{3400}-\x{4dbf}\x{4e00}-\x{9fff}\x{f900}-\x{faff}\x{20000}-\x{2ebef}]'"  # as text.HAN_RUN
ADDRESS_PARTS = ("street_line", "one_line", "street", "house_number", "postcode", "city", "country")


def _literal(text: str) -> str:
    return quote_literal(text)


# The per-distinct-value library calls (addresses, names, identifiers, ...) are pure Python and
# were half of standardization at 1M on one core while DuckDB waited. From this many distinct
# values they run in forked worker processes, one per core; fewer are not worth a fork.
POOL_MIN_VALUES = 5_000
PROCESSES_ENV = "UCV_STANDARDIZE_PROCESSES"  # 1: no worker processes
_job: tuple[Callable[..., tuple], list[list[Any]]] | None = None  # read by forked workers


def standardize_processes() -> int:
    """Worker processes for per-value calls: UCV_STANDARDIZE_PROCESSES, else the usable cores."""
    configured = os.environ.get(PROCESSES_ENV, "").strip()
    if configured:
        try:
            return max(1, int(configured))
        except ValueError:
            raise ValueError(f"{PROCESSES_ENV}={configured!r} is not a whole number") from None
    return max(1, len(os.sched_getaffinity(0)))


def _apply(fn: Callable[..., tuple], columns: Sequence[list[Any]], lo: int, hi: int) -> list[tuple]:
    return [fn(*args) for args in zip(*(c[lo:hi] for c in columns), strict=True)]


def _worker_start() -> None:
    # Forked workers inherit the parent's signal handlers. Airflow's task runner handles SIGTERM
    # with a function that returns without doing anything outside its own process, so a worker
    # stopped with SIGTERM never stopped and the pool waited for it for ever (a hung `make run`).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _apply_job(bounds: tuple[int, int]) -> list[tuple]:
    assert _job is not None  # set by the parent before the fork
    return _apply(_job[0], _job[1], *bounds)


def map_distinct(fn: Callable[..., tuple], columns: list[list[Any]], n: int) -> list[tuple]:
    """`fn(*row)` for each of the n rows of `columns`, in order; over the cores when n is large.

    Workers are forked, so `fn` (often a closure over the mapping) and the values are inherited,
    not pickled; only results travel back. The first value is computed here first, so lazy
    imports and caches are warm before the fork."""
    processes = min(standardize_processes(), max(1, n // (POOL_MIN_VALUES // 2)))
    if n < POOL_MIN_VALUES or processes < 2:
        return _apply(fn, columns, 0, n)
    global _job
    first = _apply(fn, columns, 0, 1)
    step = -(-(n - 1) // (processes * 4))  # a few chunks per worker evens out slow values
    bounds = [(lo, min(lo + step, n)) for lo in range(1, n, step)]
    _job = (fn, columns)
    pool = multiprocessing.get_context("fork").Pool(processes, initializer=_worker_start)
    try:
        parts = pool.map(_apply_job, bounds, chunksize=1)
        pool.close()  # workers leave on their own once the queue is drained; no signal needed
        pool.join()
    finally:
        pool.terminate()  # only does something if map raised
        _job = None
    return first + [r for part in parts for r in part]


def python_lookup(con: duckdb.DuckDBPyConnection, name: str, distinct_sql: str,
                  fn: Callable[..., tuple], outputs: list[tuple[str, pa.DataType]]) -> None:
    """Table `name`: the key columns of `distinct_sql` plus `fn(*keys)` once per distinct row."""
    keys = con.sql(distinct_sql).to_arrow_table()
    key_columns = [keys.column(i).to_pylist() for i in range(keys.num_columns)]
    results = map_distinct(fn, key_columns, keys.num_rows) if keys.num_rows else []
    arrays = {keys.column_names[i]: keys.column(i) for i in range(keys.num_columns)}
    for j, (out_name, out_type) in enumerate(outputs):
        arrays[out_name] = pa.array([r[j] for r in results], out_type)
    con.register(f"{name}_arrow", pa.table(arrays))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_arrow")
    con.unregister(f"{name}_arrow")


def email_lookup_table(con: duckdb.DuckDBPyConnection, source: str) -> None:
    """Table `email_lookup` (email_raw -> email, email_flag, email_phone) for `source`.email_raw."""
    special = ", ".join(_literal(d) for d in SPECIAL_USE_DOMAIN_NAMES)
    e = "lower(email_raw)"
    domain = f"split_part({e}, '@', 2)"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE email_fast AS
        SELECT email_raw, {e} AS email, NULL::VARCHAR AS email_flag, NULL::VARCHAR AS email_phone
          FROM (SELECT DISTINCT email_raw FROM {source} WHERE email_raw IS NOT NULL)
         WHERE regexp_full_match({e}, {_literal(SIMPLE_EMAIL.pattern.strip('^$'))})
           AND length({e}) <= 254 AND length(split_part({e}, '@', 1)) <= 64
           AND list_max(list_transform(string_split({domain}, '.'), lambda x: length(x))) <= 63
           AND split_part({domain}, '.', -1) NOT IN ({special})
           AND split_part({domain}, '.', -2) NOT IN ({special})""")
    python_lookup(con, "email_slow",
                  f"""SELECT DISTINCT email_raw FROM {source} s WHERE email_raw IS NOT NULL
                      AND NOT EXISTS (SELECT 1 FROM email_fast f WHERE f.email_raw = s.email_raw)""",
                  standardize_email,
                  [("email", pa.string()), ("email_flag", pa.string()), ("email_phone", pa.string())])
    con.execute("""CREATE OR REPLACE TEMP TABLE email_lookup AS
                   SELECT * FROM email_fast UNION ALL SELECT * FROM email_slow""")


def address_lookup_table(con: duckdb.DuckDBPyConnection, source: str,
                         default_country: str | None) -> None:
    """Table `address_lookup` (a_key -> street, house_number, postcode, city, country).

    `source` has a_key and the raw parts a_street_line, a_one_line, a_street, a_house_number,
    a_postcode, a_city, a_country.
    """
    cols = ", ".join(f"a_{p}" for p in ADDRESS_PARTS)
    con.execute(f"CREATE OR REPLACE TEMP TABLE addr AS SELECT DISTINCT a_key, {cols} FROM {source}")
    needs_python = (f"a_one_line IS NOT NULL OR (a_street IS NULL AND "
                    f"regexp_matches(a_street_line, {HAN_SQL}))")

    def full_parse(*parts) -> tuple:
        a = standardize_address(**dict(zip(ADDRESS_PARTS, parts, strict=True)),
                                default_country=default_country)
        return (a.street, a.house_number, a.postcode, a.city, a.country, a.street_display,
                a.house_number_display, a.city_display, a.country_unknown)

    outputs = [("street", pa.string()), ("house_number", pa.string()), ("postcode", pa.string()),
               ("city", pa.string()), ("country", pa.string()), ("street_display", pa.string()),
               ("house_number_display", pa.string()), ("city_display", pa.string()),
               ("country_unknown", pa.bool_())]
    python_lookup(con, "addr_python", f"SELECT a_key, {cols} FROM addr WHERE {needs_python}",
                  lambda key, *parts: full_parse(*parts), outputs)

    german = _literal(GERMAN_STREET.pattern)
    leading = _literal(LEADING_NUMBER_STREET.pattern)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE addr_split AS
        SELECT a_key, a_postcode, a_city, a_country,
               CASE WHEN a_street IS NOT NULL OR a_street_line IS NULL THEN a_street
                    WHEN g.street IS NOT NULL AND g.street <> '' THEN trim(g.street, ' ,')
                    WHEN l.street IS NOT NULL AND l.street <> '' THEN trim(l.street, ' ,')
                    ELSE a_street_line END AS street_raw,
               coalesce(a_house_number,
                        CASE WHEN a_street IS NULL AND g.street <> ''
                             THEN regexp_replace(g.number, '\\s+', '', 'g')
                             WHEN a_street IS NULL AND l.street <> '' THEN l.number END)
                   AS house_number
          FROM (SELECT *, regexp_extract(a_street_line, {german}, ['street', 'number']) AS g,
                          regexp_extract(a_street_line, {leading}, ['number', 'street']) AS l
                  FROM addr WHERE ({needs_python}) IS NOT TRUE)""")
    python_lookup(con, "street_fold", "SELECT DISTINCT street_raw FROM addr_split "
                  "WHERE street_raw IS NOT NULL", lambda s: (fold_street(s), nfkc(s)),
                  [("street", pa.string()), ("street_display", pa.string())])
    python_lookup(con, "city_fold", "SELECT DISTINCT a_city FROM addr_split WHERE a_city IS NOT NULL",
                  lambda c: (fold_city(c), nfkc(c)),
                  [("city", pa.string()), ("city_display", pa.string())])
    python_lookup(con, "country_code", "SELECT DISTINCT a_country FROM addr_split "
                  "WHERE a_country IS NOT NULL", lambda c: (normalise_country(c),),
                  [("country", pa.string())])
    default = _literal(default_country) if default_country else "NULL"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE address_lookup AS
        SELECT s.a_key, sf.street, s.house_number,
               NULLIF(upper(replace(trim(s.a_postcode), ' ', '')), '') AS postcode,
               cf.city,
               coalesce(cc.country,
                        CASE WHEN regexp_matches(coalesce(s.street_raw, '') || coalesce(s.a_city, ''),
                                                 {HAN_SQL}) THEN 'CN' END,
                        {default}) AS country,
               sf.street_display, s.house_number AS house_number_display, cf.city_display,
               s.a_country IS NOT NULL AND cc.country IS NULL AS country_unknown
          FROM addr_split s
          LEFT JOIN street_fold sf ON sf.street_raw = s.street_raw
          LEFT JOIN city_fold cf ON cf.a_city = s.a_city
          LEFT JOIN country_code cc ON cc.a_country = s.a_country
        UNION ALL
        SELECT a_key, street, house_number, postcode, city, country, street_display,
               house_number_display, city_display, country_unknown FROM addr_python""")
