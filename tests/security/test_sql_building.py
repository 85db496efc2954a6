"""SQL never carries a value by string formatting (issue 15, finding 5: `--run-id` parsed as SQL).

One quoting helper (`pipelines.sql`) or parameters; a scan of every module's f-string SQL finds
values put inside quotes by formatting, SQL quoted by hand, and run ids formatted in unquoted.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sql_scan import formatted_sql

from pipelines.settings import PROJECT_ROOT
from pipelines.sql import quote_ident, quote_list, quote_literal, quote_path

HOSTILE = ["2026-11-24' OR '1'='1", "x'; DROP TABLE t; --", "a\\'b", "\\", "''", "line\nbreak",
           'double " quote', "ü王'\u2028", "$1", "?"]


def test_no_module_formats_values_into_sql():
    findings = [str(f) for path in sorted((PROJECT_ROOT / "pipelines").rglob("*.py"))
                if path.name != "sql.py" for f in formatted_sql(path, PROJECT_ROOT)]
    assert findings == []


def test_the_scan_finds_what_the_issue_found(tmp_path):
    module = tmp_path / "publish_like.py"
    module.write_text(
        "def q(con, run_id, path):\n"
        "    con.execute(f\"SELECT * FROM t WHERE run_id = '{run_id}'\")\n"
        "    con.execute(f\"SELECT * FROM read_parquet('{path}')\")\n"
        "    literal = \"'\" + str(path).replace(\"'\", \"''\") + \"'\"\n"
        "    con.execute(f\"SELECT {run_id} AS r\")\n"
        "    con.execute(f\"SELECT {quote_literal(run_id)} AS fine\")\n", encoding="utf-8")
    found = sorted((f.line, f.expression) for f in formatted_sql(module, tmp_path))
    assert found == [(2, "run_id"), (3, "path"), (4, "replace(\"'\", \"''\")"), (5, "run_id")]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_quoted_literal_is_exactly_its_value(value):
    con = duckdb.connect()
    assert con.execute(f"SELECT {quote_literal(value)}").fetchall() == [(value,)]
    assert con.execute(f"SELECT [{quote_list([value, value])}]").fetchall() == [([value, value],)]


ROUND_TRIP = duckdb.connect()


@settings(deadline=None, max_examples=200)
@given(st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
               min_size=1))
def test_quoting_round_trips_any_text(value):
    con = ROUND_TRIP
    assert con.execute(f"SELECT {quote_literal(value)}").fetchall() == [(value,)]
    con.execute(f"CREATE OR REPLACE TABLE {quote_ident(value)} AS SELECT 1 AS {quote_ident(value)}")
    assert con.execute(f"SELECT {quote_ident(value)} FROM {quote_ident(value)}").fetchall() == [(1,)]


def test_a_path_with_quotes_is_read_and_written(tmp_path):
    folder = tmp_path / "it's a \"folder\""
    folder.mkdir()
    path = folder / "x'; DROP TABLE t; --.parquet"
    con = duckdb.connect()
    con.execute(f"COPY (SELECT 42 AS a) TO {quote_path(path)} (FORMAT parquet)")
    assert con.execute(f"SELECT a FROM read_parquet({quote_path(path)})").fetchall() == [(42,)]


def test_nul_and_lone_surrogates_are_refused():
    with pytest.raises(ValueError):
        quote_literal("a\x00b")
    with pytest.raises(ValueError):
        quote_literal("a\ud800b")
    with pytest.raises(ValueError):
        quote_ident("")


@pytest.mark.parametrize("run_id", HOSTILE[:3])
def test_publish_treats_a_hostile_run_id_as_data(run_id, tmp_path: Path):
    from pipelines.golden.publish import WarehouseAuditFailed, audit_warehouse, with_run_id_sql

    parquet = tmp_path / "pairs.parquet"
    duckdb.connect().execute(f"COPY (SELECT 1 AS a) TO {quote_path(parquet)} (FORMAT parquet)")
    con = duckdb.connect()
    con.execute(f"CREATE TABLE match_pairs AS {with_run_id_sql(con, parquet, run_id)}")
    assert con.execute("SELECT run_id FROM match_pairs").fetchall() == [(run_id,)]
    # a warehouse whose every table carries the hostile id passes the audit; one row from
    # another run fails it: the id is compared as a value, never parsed
    con.execute("CREATE TABLE customers AS SELECT 'C1' AS customer_id, $r AS run_id", {"r": run_id})
    for table in ("source_records", "customer_policy_links", "customer_360", "review_queue"):
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM customers")
    audit_warehouse(con, run_id)
    con.execute("UPDATE match_pairs SET run_id = '2026-11-22'")
    with pytest.raises(WarehouseAuditFailed, match="match_pairs comes from run"):
        audit_warehouse(con, run_id)
