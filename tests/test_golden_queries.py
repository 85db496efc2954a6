"""The example queries of docs/example_queries.sql run on a published fixture warehouse and answer
what they promise."""

from __future__ import annotations

import re
from datetime import date, datetime

import duckdb
import pytest

from pipelines.golden import build_golden, publish_warehouse
from pipelines.golden.testing import record, small_portfolio
from pipelines.settings import PROJECT_ROOT, RunPaths

QUERIES_FILE = PROJECT_ROOT / "docs" / "example_queries.sql"
# Beside the small portfolio: C1 also holds a motor policy (renewing in December), and the claims
# system writes C2's home policy number differently ("pde-2"): still one policy.
EXTRA_RECORDS = [
    (record("servicing:SV-4", given_name="Thomas", family_name="Müller",
            given_name_norm="thomas", given_name_canonical="thomas", family_name_norm="mueller",
            policy_number="P-DE-3", role="policyholder", product="MOTOR", annual_premium=400.0,
            currency="EUR", policy_status="active", policy_start_date=date(2024, 12, 10),
            policy_end_date=date(2026, 12, 10), updated_at=datetime(2026, 3, 1)), "C1"),
    (record("claims:C-2", given_name="Anna", family_name="Müller", given_name_norm="anna",
            family_name_norm="mueller", policy_number="pde-2", role="claimant",
            claim_number="CLM-2", claim_date=date(2026, 9, 1), claim_amount=200.0,
            claim_paid_amount=150.0, claim_status="paid", updated_at=datetime(2026, 9, 5)), "C2"),
]


def example_queries() -> dict[str, str]:
    text = QUERIES_FILE.read_text(encoding="utf-8")
    blocks = re.split(r"^-- name: (\w+)\s*$", text, flags=re.M)
    return {name: sql.strip() for name, sql in zip(blocks[1::2], blocks[2::2], strict=True)}


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    base = tmp_path_factory.mktemp("queries")
    run = small_portfolio(RunPaths.for_run("2026-11-22", base=base / "runs"), EXTRA_RECORDS)
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
        ("P-DE-1", "policyholder", "LIFE_TERM", "active"),
        ("P-DE-3", "policyholder", "MOTOR", "active")]


def test_customers_in_more_than_two_systems(con):
    assert [(r[0], r[2]) for r in answer(con, "customers_in_more_than_two_systems")] == [("C1", 4)]


def test_renewals_due_next_month_by_product(con):
    assert answer(con, "renewals_due_next_month_by_product") == [
        ("LIFE_TERM", "web", 1, 1250.0), ("MOTOR", "web", 1, 400.0)]


def test_households_with_more_than_one_policyholder(con):
    rows = answer(con, "households_with_more_than_one_policyholder")
    assert [(r[1], r[2]) for r in rows] == [(2, ["C1", "C2"])]
    assert rows[0][3] == "hauptstrasse 12, 10115 berlin"


def test_where_does_each_golden_value_come_from(con):
    assert [r[:3] for r in answer(con, "where_does_each_golden_value_come_from")] == [
        ("C1", "tom@example.de", "sales")]


def test_least_certain_customers(con):
    assert [r[:2] for r in answer(con, "least_certain_customers")] == [("C4", 0.75), ("C5", 0.75)]


def test_customers_with_two_or_more_lines_of_business(con):
    assert answer(con, "customers_with_two_or_more_lines_of_business") == [
        ("C1", "Thomas Müller", ["life", "motor"], 2, 1650.0)]


def test_loss_ratio_by_tier_and_product(con):
    # C1 (silver, 1,650 EUR): 300 paid on the life policy; C2 (bronze): 150 paid on "pde-2"
    assert answer(con, "loss_ratio_by_tier_and_product") == [
        ("bronze", "HOME", 1, 300.0, 1, 150.0, 0.5),
        ("silver", "LIFE_TERM", 1, 1250.0, 1, 300.0, 0.24),
        ("silver", "MOTOR", 1, 400.0, 0, 0.0, 0.0)]
    assert con.execute("SELECT count(*) FROM policies").fetchall() == [(3,)]  # pde-2 = P-DE-2


def test_renewals_next_month(con):
    assert [(r[0], r[1], str(r[2]), r[5]) for r in answer(con, "renewals_next_month")] == [
        ("P-DE-1", "LIFE_TERM", "2026-12-01", "C1"), ("P-DE-3", "MOTOR", "2026-12-10", "C1")]


def test_households_and_what_they_hold(con):
    rows = answer(con, "households_and_what_they_hold")
    assert [r[1:] for r in rows] == [(2, ["Thomas Müller", "Anna Müller"],
                                      "hauptstrasse 12, 10115 berlin", 3,
                                      ["HOME", "LIFE_TERM", "MOTOR"])]


def test_why_are_these_records_one_customer(con):
    rows = answer(con, "why_are_these_records_one_customer")
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("underwriting:UW-1", "servicing:SV-1", 0.999), ("underwriting:UW-1", "claims:C-1", 0.995),
        ("servicing:SV-1", "sales:L-1", 0.97), ("servicing:SV-1", "servicing:SV-2", 0.02)]
    assert rows[0][3:] == ("Thomas Müller", "Müller, Thomas", date(1985, 3, 14),
                           date(1985, 3, 14), "+491512345678", "+491512345678")
