"""build_golden on a small hand-made portfolio: links, 360° profile rules, failure modes."""

from __future__ import annotations

from datetime import date

import duckdb
import pytest
from golden_builders import record, small_portfolio, write_run_inputs

from pipelines.golden import build_golden
from pipelines.golden.config import survivorship_config, survivorship_groups
from pipelines.settings import RunPaths

EXPORT_DATE = date(2026, 11, 22)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    run = small_portfolio(RunPaths.for_run("2026-11-22", base=tmp_path_factory.mktemp("runs")))
    result = build_golden(run, EXPORT_DATE)
    con = duckdb.connect()
    for table, path in result.paths.items():
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{path}')")
    return result, con


def rows(con, sql):
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


def profile(con, customer_id):
    return rows(con, f"SELECT * FROM customer_360 WHERE customer_id = '{customer_id}'")[0]


def test_golden_writes_its_four_tables_with_counts(built):
    result, _ = built
    assert result.counts == {"source_records": 9, "customers": 5, "customer_policy_links": 5,
                             "customer_360": 5, "policies": 2, "claims": 1, "currency_rates": 5}
    assert all(p.exists() and p.parent.name == "golden" for p in result.paths.values())


def test_every_golden_value_traces_to_its_source_record(built):
    _, con = built
    columns = [r[0] for r in con.execute("DESCRIBE customers").fetchall()]
    fields = [c.removesuffix("_source_record_id") for c in columns if c.endswith("_source_record_id")]
    assert {"given_name", "birth_date", "email", "street", "marketing_consent",
            "street_display", "family_name_display"} <= set(fields)
    # a display column's value is its display expression over the record it names
    displays = {column: spec["value"] for group in survivorship_groups(survivorship_config())
                for column, spec in (group.display or {}).items()}
    for field in fields:
        wrong = con.execute(f"""
            SELECT count(*) FROM customers c
            LEFT JOIN (SELECT source_record_id, customer_id, ({displays.get(field, field)}) AS value
                       FROM source_records) s ON s.source_record_id = c.{field}_source_record_id
            WHERE (c.{field} IS NOT NULL AND c.{field}_source_record_id IS NULL)
               OR c.{field} IS DISTINCT FROM s.value
               OR (s.source_record_id IS NOT NULL AND s.customer_id <> c.customer_id)
        """).fetchall()[0][0]
        assert wrong == 0, field


def test_links_hold_every_customer_policy_role_with_sources_and_dates(built):
    _, con = built
    links = rows(con, "SELECT * FROM customer_policy_links ORDER BY customer_id, policy_number, role")
    assert [(r["customer_id"], r["policy_number"], r["role"]) for r in links] == [
        ("C1", "P-DE-1", "applicant"), ("C1", "P-DE-1", "claimant"),
        ("C1", "P-DE-1", "policyholder"), ("C2", "P-DE-1", "beneficiary"),
        ("C2", "P-DE-2", "policyholder")]
    holder = links[2]
    assert holder["source_system"] == "servicing" and holder["source_record_ids"] == ["servicing:SV-1"]
    assert holder["first_seen"] == date(2020, 1, 1)  # the policy start
    assert holder["last_seen"] == date(2026, 3, 15)  # the record's last update
    assert holder["product"] == "LIFE_TERM" and holder["policy_status"] == "active"


def test_360_policies_premium_claims_and_rating(built):
    _, con = built
    thomas = profile(con, "C1")
    assert thomas["active_policies"] == ["P-DE-1"] and thomas["lapsed_policies"] == []
    assert thomas["products_held"] == ["LIFE_TERM"]
    assert thomas["total_annual_premium_eur"] == 1250.0  # servicing's premium, not underwriting's
    assert (thomas["claims_count"], thomas["claims_paid_amount_eur"]) == (1, 300.0)
    assert thomas["loss_ratio_12m"] == pytest.approx(300 / 1250, abs=1e-4)
    assert thomas["value_tier"] == "silver" and thomas["rating"] == "A"
    assert thomas["source_systems"] == ["claims", "sales", "servicing", "underwriting"]
    assert (thomas["last_interaction_date"], thomas["last_interaction_channel"]) == (
        date(2026, 10, 1), "web")
    assert thomas["customer_since"] == date(2020, 1, 1) and thomas["tenure_years"] == 6
    anna = profile(con, "C2")
    assert anna["covered_on_policies"] == ["P-DE-1"] and anna["active_policies"] == ["P-DE-2"]
    company = profile(con, "C3")
    assert company["value_tier"] == "prospect" and company["rating"] == "unrated"


def test_renewals_due_in_the_month_after_the_export_date(built):
    _, con = built
    assert [r["policy_number"] for r in profile(con, "C1")["renewals_due"]] == ["P-DE-1"]
    assert profile(con, "C2")["renewals_due"] == []  # ends 2027-05-01


def test_persons_at_one_address_share_a_household(built):
    _, con = built
    thomas, anna, company = profile(con, "C1"), profile(con, "C2"), profile(con, "C3")
    # 'hauptstrasse' and 'Hauptstrasse' are one address
    assert thomas["household_id"] == anna["household_id"] is not None
    assert thomas["household_size"] == anna["household_size"] == 2
    assert company["household_id"] is None and company["household_size"] is None
    assert profile(con, "C4")["household_size"] is None  # a person without a street


def test_premium_and_claim_sums_add_in_key_order_whatever_order_records_come_in(tmp_path):
    # (10.405 + 6.31) + 0.21 = 16.925 -> 16.93, but (0.21 + 6.31) + 10.405 = 16.924999.. -> 16.92:
    # a float sum in the order rows happen to arrive differs by a cent from one run to the next
    amounts = {"A": 10.405, "B": 6.31, "C": 0.21}
    records = []
    for key in ("C", "B", "A"):  # neither the key order nor its reverse
        records.append(record(f"servicing:SV-{key}", given_name="Eva", family_name="Roth",
                              policy_number=f"P-{key}", role="policyholder", product="HOME",
                              annual_premium=amounts[key], currency="EUR",
                              policy_status="active", policy_start_date=date(2020, 1, 1),
                              policy_end_date=date(2030, 1, 1)))
        records.append(record(f"claims:CL-{key}", given_name="Eva", family_name="Roth",
                              policy_number=f"P-{key}", role="claimant", claim_number=f"CLM-{key}",
                              claim_date=date(2026, 6, 1), claim_amount=amounts[key],
                              claim_paid_amount=amounts[key], currency="EUR"))
    run = write_run_inputs(RunPaths.for_run("2026-11-22", base=tmp_path), records,
                           {r["source_record_id"]: "C1" for r in records})
    result = build_golden(run, EXPORT_DATE)
    with duckdb.connect() as con:
        row = con.execute("SELECT total_annual_premium_eur, claims_paid_amount_eur, loss_ratio_12m "
                          f"FROM read_parquet('{result.paths['customer_360']}')").fetchall()[0]
    assert row == (16.93, 16.93, 1.0)


def test_confidence_reaches_the_profile(built):
    _, con = built
    assert profile(con, "C1")["confidence"] == pytest.approx(0.97)
    assert profile(con, "C4")["confidence"] == pytest.approx(0.75)


def test_a_record_without_customer_stops_the_build(tmp_path):
    run = RunPaths.for_run("2026-11-22", base=tmp_path)
    records = [record("sales:1", email="a@x.de"), record("sales:2", email="b@x.de")]
    write_run_inputs(run, records, {"sales:1": "C1", "sales:2": "C2"})
    # identify's map lost a record
    con = duckdb.connect()
    path = run.identified_dir / "customer_map.parquet"
    con.execute(f"COPY (SELECT * FROM '{path}' WHERE source_record_id = 'sales:1') TO '{path}.x' (FORMAT parquet)")
    (run.identified_dir / "customer_map.parquet.x").replace(path)
    with pytest.raises(ValueError, match="1 staged records have no customer_id"):
        build_golden(run, EXPORT_DATE)


def test_missing_upstream_outputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="customer_map.parquet"):
        build_golden(RunPaths.for_run("2026-11-22", base=tmp_path).ensure(), EXPORT_DATE)
