"""Small hand-made upstream outputs (canonical records, customer map, match pairs) for tests and demos.

Lets the golden stage be exercised without running ingest, resolve and identify: a test states a
few records and which customer each belongs to, and gets a run folder shaped like the real one.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path

import duckdb
import pandas as pd

from pipelines.golden.build import canonical_select_sql
from pipelines.golden.config import canonical_fields
from pipelines.settings import RunPaths


def record(source_record_id: str, **fields) -> dict:
    """A canonical record; lineage filled from the id (`'<system>:<key>'`), the rest from fields."""
    system, key = source_record_id.split(":", 1)
    row: dict = {name: None for name in canonical_fields()}
    row.update(source_record_id=source_record_id, source_system=system, source_key=key,
               source_file=f"{system}.export", source_row_number=1, run_id="fixture",
               party_type="person", updated_at=datetime(2026, 1, 1))
    unknown = set(fields) - set(row)
    if unknown:
        raise KeyError(f"not canonical fields: {sorted(unknown)}")
    row.update(fields)
    return row


def write_run_inputs(run: RunPaths, records: list[dict], customer_of: dict[str, str],
                     pairs: Iterable[tuple[str, str, float]] = (), run_id: str | None = None,
                     ) -> RunPaths:
    """Write staged/source_records, identified/customer_map and resolved/match_pairs for `run`."""
    run.ensure()
    frame = pd.DataFrame(records).astype(object)
    frame["run_id"] = run_id or run.run_id
    pair_frame = pd.DataFrame(
        list(pairs), columns=["source_record_id_l", "source_record_id_r", "match_probability"])
    with duckdb.connect() as con:
        tmp = run.staged_dir / ".fixture_raw.parquet"
        con.register("frame", frame)
        con.execute(f"COPY frame TO '{tmp}' (FORMAT parquet)")
        con.execute(f"COPY ({canonical_select_sql(con, tmp)}) "
                    f"TO '{run.staged_dir / 'source_records.parquet'}' (FORMAT parquet)")
        tmp.unlink()
        con.register("customer_map", pd.DataFrame(
            [(r["source_record_id"], r["party_type"], customer_of[r["source_record_id"]])
             for r in records], columns=["source_record_id", "party_type", "customer_id"]))
        con.execute(f"COPY customer_map TO '{run.identified_dir / 'customer_map.parquet'}' "
                    "(FORMAT parquet)")
        con.register("pairs", pair_frame)
        con.execute(f"""COPY (SELECT source_record_id_l, source_record_id_r,
                                     'person' AS party_type,
                                     CAST(match_probability AS DOUBLE) AS match_probability,
                                     log2(greatest(match_probability, 1e-9)
                                          / greatest(1 - match_probability, 1e-9)) AS match_weight
                              FROM pairs)
                        TO '{run.resolved_dir / 'match_pairs.parquet'}' (FORMAT parquet)""")
    return run


def write_identify_extras(run: RunPaths, history: list[dict] | None = None,
                          review: list[dict] | None = None) -> None:
    """identified/customer_id_history.parquet and review_queue.parquet, as identify writes them."""
    history = history if history is not None else []
    history_frame = pd.DataFrame(history, columns=[
        "run_id", "event", "customer_id", "related_customer_id"]).astype(object)
    review_frame = pd.DataFrame(review or [], columns=[
        "source_record_id_l", "source_record_id_r", "match_probability", "reason"]).astype(object)
    with duckdb.connect() as con:
        con.register("h", history_frame)
        con.execute(f"""COPY (SELECT CAST(run_id AS VARCHAR) run_id, CAST(event AS VARCHAR) event,
                                     CAST(customer_id AS VARCHAR) customer_id,
                                     CAST(related_customer_id AS VARCHAR) related_customer_id
                              FROM h)
                        TO '{run.identified_dir / 'customer_id_history.parquet'}' (FORMAT parquet)""")
        con.register("q", review_frame)
        con.execute(f"""COPY (SELECT CAST(source_record_id_l AS VARCHAR) source_record_id_l,
                                     CAST(source_record_id_r AS VARCHAR) source_record_id_r,
                                     CAST(match_probability AS DOUBLE) match_probability,
                                     CAST(reason AS VARCHAR) reason FROM q)
                        TO '{run.identified_dir / 'review_queue.parquet'}' (FORMAT parquet)""")


def small_portfolio(run: RunPaths, extra_records: Iterable[tuple[dict, str]] = ()) -> RunPaths:
    """A ready run folder: five customers over all four sources, policies, a claim, a household,
    and two uncertain leads (plus `extra_records`, each with its customer ID)."""
    d = date.fromisoformat
    ts = datetime.fromisoformat
    records = [
        record("underwriting:UW-1", given_name="Thomas", family_name="Müller",
               full_name="Thomas Müller", given_name_norm="thomas", given_name_canonical="thomas",
               family_name_norm="mueller",
               birth_date=d("1985-03-14"), sex="M", national_id="12345678995",
               phone_mobile="+491512345678", email="t.mueller@example.de",
               street="hauptstrasse", house_number="12", postcode="10115", city="berlin",
               country="DE", policy_number="P-DE-1", role="applicant", product="LIFE_TERM",
               annual_premium=1200.0, currency="EUR", updated_at=ts("2025-01-10 09:00:00")),
        record("servicing:SV-1", given_name="Thomas", family_name="Müller",
               full_name="Müller, Thomas", given_name_norm="thomas", given_name_canonical="thomas",
               family_name_norm="mueller",
               birth_date=d("1985-03-14"), phone_mobile="+491512345678",
               street="hauptstrasse", house_number="12", postcode="10115", city="berlin",
               country="DE", policy_number="P-DE-1", role="policyholder", product="LIFE_TERM",
               annual_premium=1250.0, currency="EUR", policy_status="active",
               policy_start_date=d("2020-01-01"), policy_end_date=d("2026-12-01"),
               marketing_consent=True, updated_at=ts("2026-03-15 10:00:00")),
        record("sales:L-1", given_name="Tom", family_name="Mueller", given_name_norm="tom",
               given_name_canonical="thomas",
               family_name_norm="mueller", phone_mobile="+491512345678",
               email="tom@example.de", product="MOTOR", interaction_channel="web",
               interaction_date=d("2026-10-01"), marketing_consent=None,
               updated_at=ts("2026-10-01 12:00:00")),
        record("claims:C-1", given_name="Thomas", family_name="Müller",
               given_name_norm="thomas", given_name_canonical="thomas",
               family_name_norm="mueller",
               birth_date=d("1985-03-14"), policy_number="P-DE-1", role="claimant",
               claim_number="CLM-1", claim_date=d("2026-06-01"), claim_amount=500.0,
               claim_paid_amount=300.0, claim_status="paid", updated_at=ts("2026-06-10 08:00:00")),
        record("servicing:SV-2", given_name="Anna", family_name="Müller",
               full_name="Müller, Anna", given_name_norm="anna", family_name_norm="mueller",
               birth_date=d("1987-07-01"), street="Hauptstrasse", house_number="12",
               postcode="10115", city="berlin", country="DE", policy_number="P-DE-2",
               role="policyholder", product="HOME", annual_premium=300.0, currency="EUR",
               policy_status="active", policy_start_date=d("2022-05-01"),
               policy_end_date=d("2027-05-01"), marketing_consent=False,
               email="anna@example.de", updated_at=ts("2026-02-01 10:00:00")),
        record("servicing:SV-3", given_name="Anna", family_name="Müller",
               given_name_norm="anna", family_name_norm="mueller", policy_number="P-DE-1",
               role="beneficiary", product="LIFE_TERM", policy_status="active",
               updated_at=ts("2026-02-01 10:00:00")),
        record("sales:L-2", party_type="organization", org_name="Müller Bau GmbH",
               org_name_norm="mueller bau", org_legal_form="GMBH", email="info@muellerbau.de",
               phone_landline="+49301234567", street="industriestr", house_number="5",
               postcode="10117", city="berlin", country="DE", marketing_consent=True,
               interaction_channel="agent", interaction_date=d("2026-09-01"),
               updated_at=ts("2026-09-01 10:00:00")),
        # two leads that may be one person (p = 0.25): kept apart, neither is certain
        record("sales:L-3", given_name="Li", family_name="Wang", given_name_norm="li",
               family_name_norm="wang", name_script="latin", email="li.wang@example.cn",
               phone_mobile="+8613812345678", city="beijing", country="CN",
               marketing_consent=True, updated_at=ts("2026-08-01 10:00:00")),
        record("sales:L-4", given_name="丽", family_name="王", name_native="王丽",
               given_name_norm="li", family_name_norm="wang", name_script="han",
               phone_mobile="+8613812345679", city="beijing", country="CN",
               marketing_consent=True, updated_at=ts("2026-08-02 10:00:00")),
    ]
    customer_of = {"underwriting:UW-1": "C1", "servicing:SV-1": "C1", "sales:L-1": "C1",
                   "claims:C-1": "C1", "servicing:SV-2": "C2", "servicing:SV-3": "C2",
                   "sales:L-2": "C3", "sales:L-3": "C4", "sales:L-4": "C5"}
    pairs = [("underwriting:UW-1", "servicing:SV-1", 0.999), ("servicing:SV-1", "sales:L-1", 0.97),
             ("underwriting:UW-1", "claims:C-1", 0.995), ("servicing:SV-2", "servicing:SV-3", 0.98),
             ("servicing:SV-1", "servicing:SV-2", 0.02), ("sales:L-3", "sales:L-4", 0.25)]
    for extra, customer_id in extra_records:
        records.append(extra)
        customer_of[extra["source_record_id"]] = customer_id
    return write_run_inputs(run, records, customer_of, pairs)


def write_records_file(path: Path, records: list[dict]) -> Path:
    """Canonical records to a Parquet file (for tests that need one outside a run folder)."""
    frame = pd.DataFrame(records).astype(object)
    with duckdb.connect() as con:
        con.register("frame", frame)
        con.execute(f"COPY frame TO '{path}' (FORMAT parquet)")
    return path
