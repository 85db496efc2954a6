"""The example queries of docs/example_queries.sql run on a published fixture warehouse and answer
what they promise."""

from __future__ import annotations

import re
from datetime import date

import duckdb
import pytest

from pipelines.golden import build_golden, publish_warehouse
from pipelines.golden.testing import small_portfolio
from pipelines.settings import PROJECT_ROOT, RunPaths

QUERIES_FILE = PROJECT_ROOT / "docs" / "example_queries.sql"


def example_queries() -> dict[str, str]:
    text = QUERIES_FILE.read_text(encoding="utf-8")
    blocks = re.split(r"^-- name: (\w+)\s*$", text, flags=re.M)
    return {name: sql.strip() for name, sql in zip(blocks[1::2], blocks[2::2], strict=True)}


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    base = tmp_path_factory.mktemp("queries")
    run = small_portfolio(RunPaths.for_run("2026-11-22", base=base / "runs"))
    build_golden(run, date(2026, 11, 22))
    path = publish_warehouse(run, base / "wh")
    with duckdb.connect(str(path), read_only=True) as connection:
        connection.execute("SET VARIABLE customer_id = 'C1'")
        yield connection


def answer(con, name):
    return con.execute(example_queries()[name]).fetchall()


def test_every_example_query_is_tested():
    tested = {n.removeprefix("test_") for n in globals() if n.startswith("test_")}
    assert set(example_queries()) <= tested


def test_what_does_this_customer_hold(con):
    rows = answer(con, "what_does_this_customer_hold")
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("P-DE-1", "applicant", "LIFE_TERM", "active"), ("P-DE-1", "claimant", "LIFE_TERM", "active"),
        ("P-DE-1", "policyholder", "LIFE_TERM", "active")]


def test_customers_in_more_than_two_systems(con):
    assert [(r[0], r[2]) for r in answer(con, "customers_in_more_than_two_systems")] == [("C1", 4)]


def test_renewals_due_next_month_by_product(con):
    assert answer(con, "renewals_due_next_month_by_product") == [("LIFE_TERM", "web", 1, 1250.0)]


def test_households_with_more_than_one_policyholder(con):
    rows = answer(con, "households_with_more_than_one_policyholder")
    assert [(r[1], r[2]) for r in rows] == [(2, ["C1", "C2"])]
    assert rows[0][3] == "hauptstrasse 12, 10115 berlin"


def test_where_does_each_golden_value_come_from(con):
    assert [r[:3] for r in answer(con, "where_does_each_golden_value_come_from")] == [
        ("C1", "tom@example.de", "sales")]


def test_least_certain_customers(con):
    assert [r[:2] for r in answer(con, "least_certain_customers")] == [("C4", 0.75), ("C5", 0.75)]
