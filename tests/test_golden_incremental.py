"""Incremental golden: reusing the base night's golden records gives what computing every customer
gives, on a second night with every kind of change (pipelines/golden/incremental.py)."""

from __future__ import annotations

import copy
from datetime import datetime

import duckdb
import pytest
from golden_builders import record, write_run_inputs

from pipelines.golden import incremental
from pipelines.golden.build import GOLDEN_TABLES, build_golden
from pipelines.golden.config import survivorship_config
from pipelines.settings import RunPaths

T1, T2 = datetime(2026, 1, 1), datetime(2026, 2, 1)
NIGHT_1, NIGHT_2 = "2026-11-22", "2026-11-23"


def person(rid: str, given: str, family: str, **fields) -> dict:
    return record(rid, given_name=given.title(), family_name=family.title(),
                  full_name=f"{given.title()} {family.title()}", given_name_norm=given,
                  given_name_canonical=given, family_name_norm=family, **fields)


# customer -> records, night 1
NIGHT_1_RECORDS = {
    # X: a trusted record with a typo and a right one, one each: at equal counts the value other
    # customers share wins, and on night 1 nobody else is a Beier, so trust keeps "beire"
    "X": [person("underwriting:X1", "milan", "beire", phone_mobile="+4915100000001"),
          person("servicing:X1", "milan", "beier", phone_mobile="+4915100000001")],
    "A": [person("underwriting:A1", "anna", "schmidt", email="anna@example.de"),
          person("sales:A1", "anna", "schmidt", updated_at=T2)],
    "B": [person("underwriting:B1", "bernd", "wolf", city="berlin"),
          person("servicing:B1", "bernd", "wolf", city="berlin")],
    "D": [person("underwriting:D1", "dora", "klein", city="koeln"),
          person("claims:D1", "dora", "klein", city="koeln")],
    "E": [person("underwriting:E1", "emil", "braun", city="bonn"),
          person("claims:E1", "emil", "braun", city="bonn")],
    "G": [person("underwriting:G1", "gerd", "lang")],
}


def night_2_records() -> dict[str, list[dict]]:
    night = {c: [dict(r) for r in rs] for c, rs in NIGHT_1_RECORDS.items()}
    night["A"][1]["email"] = "anna.schmidt@example.de"  # changed record
    night["B"].append(person("sales:B2", "bernd", "wolf", city="potsdam", updated_at=T2))  # new
    night["E"].append(night["D"].pop())  # moved: D keeps one record, E gains one
    del night["G"]  # gone (erased, or its only record left the export)
    night["N"] = [person("sales:N1", "nina", "beier")]  # new customer, another Beier
    # the one new value that reaches X: only the commonness closure recomputes it
    return night


def write_night(run: RunPaths, customers: dict[str, list[dict]]) -> RunPaths:
    records = [r for rs in customers.values() for r in rs]
    customer_of = {r["source_record_id"]: c for c, rs in customers.items() for r in rs}
    pairs = [(rs[0]["source_record_id"], r["source_record_id"], 0.97)
             for rs in customers.values() for r in rs[1:]]
    return write_run_inputs(run, records, customer_of, pairs)


def golden_tables(run: RunPaths) -> dict[str, list[tuple]]:
    with duckdb.connect() as con:
        return {t: sorted(con.execute(f"SELECT * FROM read_parquet('{run.golden_dir / t}.parquet')")
                          .fetchall(), key=repr) for t in GOLDEN_TABLES}


@pytest.fixture
def two_nights(tmp_path, monkeypatch):
    monkeypatch.setenv("UCV_HOME", str(tmp_path))
    night_1 = write_night(RunPaths(run_id=NIGHT_1, root=tmp_path / NIGHT_1), NIGHT_1_RECORDS)
    build_golden(night_1)
    full = write_night(RunPaths(run_id=NIGHT_2, root=tmp_path / "full" / NIGHT_2), night_2_records())
    incr = write_night(RunPaths(run_id=NIGHT_2, root=tmp_path / "incr" / NIGHT_2), night_2_records())
    return night_1, full, incr


def test_incremental_golden_equals_computing_every_customer(two_nights):
    night_1, full, incr = two_nights
    build_golden(full)
    result = build_golden(incr, incremental=True, base=night_1)
    assert result.reuse.reason is None
    assert golden_tables(incr) == golden_tables(full)
    # X's own records did not change, but a new Beier moved its name: it was computed again
    with duckdb.connect() as con:
        names = dict(con.execute(f"SELECT customer_id, family_name_norm FROM read_parquet("
                                 f"'{incr.golden_dir / 'customers.parquet'}')").fetchall())
    assert names["X"] == "beier"
    assert "G" not in names
    reuse = result.reuse
    # touched: A (changed), B (new record), D (lost one), E (gained one), N (new), X (commonness)
    assert (reuse.customers, reuse.customers_recomputed, reuse.customers_reused) == (6, 6, 0)
    assert reuse.touched_by_commonness == 1
    assert reuse.changed_records == 5  # A's changed, B's new, D→E moved, G's gone, N's new


def test_untouched_customers_keep_the_base_row_with_tonights_run_and_confidence(tmp_path, monkeypatch):
    monkeypatch.setenv("UCV_HOME", str(tmp_path))
    night_1 = write_night(RunPaths(run_id=NIGHT_1, root=tmp_path / NIGHT_1), NIGHT_1_RECORDS)
    build_golden(night_1)
    same = {c: rs for c, rs in NIGHT_1_RECORDS.items()}
    incr = write_night(RunPaths(run_id=NIGHT_2, root=tmp_path / "incr" / NIGHT_2), same)
    full = write_night(RunPaths(run_id=NIGHT_2, root=tmp_path / "full" / NIGHT_2), same)
    result = build_golden(incr, incremental=True, base=night_1)
    build_golden(full)
    assert (result.reuse.customers_recomputed, result.reuse.customers_reused) == (0, 6)
    assert golden_tables(incr) == golden_tables(full)
    with duckdb.connect() as con:
        assert con.execute(f"SELECT DISTINCT run_id FROM read_parquet("
                           f"'{incr.golden_dir / 'customers.parquet'}')").fetchall() == [(NIGHT_2,)]


def test_without_the_commonness_closure_a_customer_would_keep_a_stale_name(two_nights, monkeypatch):
    """The closure is needed: with it switched off, X keeps night 1's "beire"."""
    night_1, _, incr = two_nights
    monkeypatch.setattr(incremental, "touch_by_commonness", lambda *args: 0)
    build_golden(incr, incremental=True, base=night_1)
    with duckdb.connect() as con:
        name = con.execute(f"SELECT family_name_norm FROM read_parquet("
                           f"'{incr.golden_dir / 'customers.parquet'}') WHERE customer_id = 'X'"
                           ).fetchall()
    assert name == [("beire",)]


def test_a_base_night_is_not_reused_without_its_version_or_with_other_rules(two_nights):
    night_1, _, incr = two_nights
    config = survivorship_config()
    version = incremental.golden_version(config)
    assert incremental.base_unusable(night_1, version, config) is None
    assert "other golden rules" in incremental.base_unusable(night_1, version + "x", config)
    assert incremental.base_unusable(None, version, config) == "no earlier successful night"
    reads_lineage = copy.deepcopy(config)
    group = next(iter(reads_lineage["groups"].values()))
    group["rules"] = [{"prefer": "source_file LIKE '%crm%'"}, *group["rules"]]
    assert "source_file" in incremental.rules_not_reusable(reads_lineage)
    assert "source_file" in incremental.base_unusable(night_1, version, reads_lineage)
    (night_1.golden_dir / incremental.VERSION_FILE).unlink()
    result = build_golden(incr, incremental=True, base=night_1)
    assert "golden_version.json" in result.reuse.reason
    assert result.reuse.customers_recomputed == result.reuse.customers == 6
