"""policies and claims: one row per policy across sources (however each writes the number), and
amounts in their own and the reporting currency at the configured rate table."""

from __future__ import annotations

from datetime import date, datetime

import duckdb

from pipelines.golden import build_golden
from pipelines.golden.config import survivorship_config
from pipelines.golden.testing import record, write_run_inputs
from pipelines.settings import RunPaths


def rows(path, sql="SELECT * FROM t"):
    with duckdb.connect() as con:
        con.execute(f"CREATE VIEW t AS SELECT * FROM '{path}'")
        cursor = con.execute(sql)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


def test_one_policy_across_sources_and_reporting_amounts(tmp_path):
    person = dict(given_name="伟", family_name="王", given_name_norm="wei", family_name_norm="wang",
                  name_script="han", country="CN")
    records = [
        record("servicing:S-1", **person, policy_number="P-CN-0007", role="policyholder",
               product="HEALTH", annual_premium=10000.0, currency="CNY", policy_status="active",
               policy_start_date=date(2025, 3, 1), policy_end_date=date(2027, 3, 1),
               updated_at=datetime(2026, 3, 1)),
        record("underwriting:U-1", **person, policy_number="p-cn 0007", role="applicant",
               product="HEALTH", annual_premium=9000.0, currency="CNY",
               updated_at=datetime(2025, 2, 1)),
        # the claim carries no currency: it is in its policy's (CNY)
        record("claims:K-1", **person, policy_number="PCN0007", role="claimant",
               claim_number="K-1", claim_date=date(2026, 10, 1), claim_amount=2000.0,
               claim_paid_amount=1000.0, claim_status="paid", updated_at=datetime(2026, 10, 2)),
        record("claims:K-2", party_type="organization", org_name="未知", policy_number="X-9",
               claim_number="K-2", claim_amount=5.0, updated_at=datetime(2026, 10, 2)),
    ]
    run = write_run_inputs(RunPaths.for_run("2026-11-22", base=tmp_path), records,
                           {"servicing:S-1": "C1", "underwriting:U-1": "C1", "claims:K-1": "C1",
                            "claims:K-2": "C2"})
    build_golden(run, date(2026, 11, 22))
    rate = survivorship_config()["customer_360"]["currency_rates"]["to_reporting"]["CNY"]
    policies = rows(run.golden_dir / "policies.parquet", "SELECT * FROM t ORDER BY policy_key")
    assert [p["policy_key"] for p in policies] == ["PCN0007", "X9"]
    health = policies[0]
    assert (health["policy_number"], health["line_of_business"], health["annual_premium"],
            health["currency"], health["holder_customer_id"], health["n_source_records"]) == (
        "P-CN-0007", "health", 10000.0, "CNY", "C1", 3)  # servicing is trusted for policy facts
    assert health["annual_premium_reporting"] == round(10000.0 * rate, 2)
    assert (health["reporting_currency"], str(health["rates_as_of"])) == ("EUR", "2026-11-01")
    assert policies[1]["line_of_business"] == "other" and policies[1]["holder_customer_id"] is None
    claims = rows(run.golden_dir / "claims.parquet", "SELECT * FROM t ORDER BY claim_id")
    assert [(c["claim_id"], c["policy_key"], c["claimant_customer_id"], c["currency"])
            for c in claims] == [("K-1", "PCN0007", "C1", "CNY"), ("K-2", "X9", "C2", None)]
    assert claims[0]["claim_paid_amount_reporting"] == round(1000.0 * rate, 2)
    assert claims[1]["claim_amount_reporting"] is None  # no currency known: not converted
    links = rows(run.golden_dir / "customer_policy_links.parquet")
    assert {link["policy_key"] for link in links} == {"PCN0007", "X9"}
