"""Ingest end to end on hand-made exports, and every broken export in tests/fixtures/broken.

Each broken export ends either in quarantine with the right rule names or in a SourceRejected
naming source, file, column and rule; never a bare traceback, never a lost row.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipelines.ingest import (
    SourceRejected,
    combine_staged,
    extract_source,
    ingest,
    load_mappings,
    standardize_frame,
    standardize_source,
    validate_source,
)
from pipelines.settings import RunPaths

FIXTURES = Path(__file__).parent / "fixtures"
EXPORTS = FIXTURES / "exports"
BROKEN = FIXTURES / "broken"
MAPPINGS = load_mappings()


def write_underwriting(rows_json: Path, out: Path) -> None:
    """The underwriting fixture is kept as JSON; write it as the typed Parquet export."""
    rows = json.loads(rows_json.read_text(encoding="utf-8"))
    table = pa.Table.from_pylist(rows)
    dob = [None if r["dob"] is None else dt.date.fromisoformat(r["dob"]) for r in rows]
    table = table.set_column(table.schema.get_field_index("dob"), "dob", pa.array(dob, pa.date32()))
    for column in ("submitted_at", "updated_at"):
        stamps = [dt.datetime.fromisoformat(r[column]) for r in rows]
        table = table.set_column(table.schema.get_field_index(column), column,
                                 pa.array(stamps, pa.timestamp("us")))
    pq.write_table(table, out)


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    folder = tmp_path / "landing"
    folder.mkdir()
    for name in ("sales_leads.csv", "claims.csv", "policy_servicing.jsonl"):
        shutil.copy(EXPORTS / name, folder / name)
    write_underwriting(EXPORTS / "underwriting_applications.json",
                       folder / "underwriting_applications.parquet")
    return folder


@pytest.fixture
def run(tmp_path: Path) -> RunPaths:
    return RunPaths.for_run("2026-03-16", base=tmp_path / "runs").ensure()


def read(path: Path) -> pd.DataFrame:
    with duckdb.connect() as con:
        df = con.execute(f"SELECT * FROM read_parquet('{path}')").df()
    return df.astype(object).where(df.notna(), None)


def test_ingest_all_sources_reconciles_and_standardizes(landing: Path, run: RunPaths) -> None:
    summary = ingest(landing, run)
    counts = json.loads(summary.counts_path.read_text())
    assert counts["status"] == "ok"
    for name, entry in counts["sources"].items():
        assert entry["rows_read"] == entry["rows_accepted"] + entry["rows_quarantined"], name
        assert entry["rows_staged"] == entry["rows_accepted"]
    records = read(summary.source_records_path).set_index("source_record_id")
    assert len(records) == 16 and records.index.is_unique
    assert combine_staged(run) == summary.source_records_path  # default: every staged source
    thomas = records.loc["servicing:SV-00000001"]
    assert (thomas.given_name, thomas.family_name, thomas.family_name_norm) == ("Thomas", "Müller", "mueller")
    assert thomas.phone_mobile is None or thomas.phone_mobile.startswith("+49")
    assert thomas.street == "hauptstrasse" and thomas.house_number == "12" and thomas.country == "DE"
    wang = records.loc["claims:CLM-0000001"]
    assert (wang.family_name, wang.given_name, wang.family_name_norm, wang.given_name_norm) == \
        ("王", "伟", "wang", "wei")
    assert wang.city == "beijing" and wang.postcode == "100022" and wang.country == "CN"
    assert wang.national_id == "11010519491231002X" and wang.national_id_type == "cn_ric"
    assert wang.claim_amount == 1234.5
    romanised = records.loc["claims:CLM-0000003"]  # "Wang Wei" from a Chinese address
    assert (romanised.family_name_norm, romanised.given_name_norm) == ("wang", "wei")
    tom = records.loc["sales:L00000002"]
    assert tom.given_name_canonical == "thomas" and tom.birth_date_ambiguous
    assert tom.birth_date == pd.Timestamp("1985-04-03")
    company = records.loc["sales:L00000003"]
    assert company.party_type == "organization" and company.org_legal_form == "GMBH"
    assert company.org_name_norm == "mueller bau" and company.given_name is None
    acme = records.loc["servicing:SV-00000003"]
    assert acme.org_legal_form == "CO_LTD" and acme.registration_id == "91110000600037341L"
    cn_org = records.loc["underwriting:UW-2026-000003"]
    assert cn_org.org_legal_form == "CO_LTD" and cn_org.org_name_norm == "beijingmoumou technology"
    bill = records.loc["sales:L00000005"]
    assert bill.email is None and "email_was_phone" in list(bill.quality_flags)
    assert bill.phone_mobile == "+491709876543" and bill.given_name_canonical == "william"
    invalid_id = records.loc["underwriting:UW-2026-000004"]
    assert invalid_id.national_id is None and "national_id_invalid" in list(invalid_id.quality_flags)
    assert records.loc["underwriting:UW-2026-000001"].updated_at == pd.Timestamp("2021-05-01 10:00:00")


def test_raw_keeps_values_as_written_with_lineage(landing: Path, run: RunPaths) -> None:
    result = extract_source(MAPPINGS["sales"], landing, run)
    raw = read(result.raw_path)
    assert result.rows_read == 5 and list(raw["_row_number"]) == [1, 2, 3, 4, 5]
    assert set(raw["_source_file"]) == {"sales_leads.csv"} and set(raw["_run_id"]) == {run.run_id}
    assert raw.loc[1, "notes"] == "two lines\nof notes"
    assert raw.loc[0, "email"] == "T.Mueller@Example.de"  # not lower-cased in raw
    claims = read(extract_source(MAPPINGS["claims"], landing, run).raw_path)
    assert claims.loc[0, "claimant_name"] == "王伟" and claims.loc[0, "claim_amount"] == "1234,50"
    servicing = read(extract_source(MAPPINGS["servicing"], landing, run).raw_path)
    assert json.loads(servicing.loc[0, "address"])["street"] == "Hauptstraße 12"


def test_standardize_frame_matches_batch(landing: Path, run: RunPaths) -> None:
    mapping = MAPPINGS["servicing"]
    extract_source(mapping, landing, run)
    validate_source(mapping, run)
    batch = read(standardize_source(mapping, run)).drop(columns=["source_file"])
    rows = [json.loads(line) for line in (landing / "policy_servicing.jsonl").read_text().splitlines()]
    frame = standardize_frame(mapping, pd.DataFrame(rows), run.run_id).drop(columns=["source_file"])
    frame = frame.astype(object).where(frame.notna(), None)

    def as_json(df: pd.DataFrame) -> str:
        return json.dumps(df.to_dict("records"), default=lambda v: list(v) if hasattr(v, "tolist")
                          else str(v), ensure_ascii=False)

    assert as_json(batch) == as_json(frame)


def test_run_level_row_count_change(landing: Path, run: RunPaths) -> None:
    mapping = MAPPINGS["sales"]
    extract_source(mapping, landing, run)
    with pytest.raises(SourceRejected) as err:
        validate_source(mapping, run, previous_row_count=100)
    assert err.value.rule == "row_count_change" and "sales_leads.csv" in str(err.value)
    assert validate_source(mapping, run, previous_row_count=6).rows_read == 5


def test_combine_needs_every_source(landing: Path, run: RunPaths) -> None:
    with pytest.raises(FileNotFoundError):
        combine_staged(run, ["sales"])


# --------------------------------------------------------------------------------------------
# Broken exports


def ingest_broken(case: str, run: RunPaths, tmp_path: Path, mapping=None):
    landing = tmp_path / case
    shutil.copytree(BROKEN / case, landing)
    mapping = mapping or MAPPINGS["sales"]
    return ingest(landing, run, {"sales": mapping})


def quarantined(run: RunPaths) -> pd.DataFrame:
    return read(run.quarantine_dir / "sales.parquet")


def assert_reconciles(run: RunPaths) -> dict:
    entry = json.loads((run.report_dir / "ingest_counts.json").read_text())["sources"]["sales"]
    assert entry["rows_read"] == entry["rows_accepted"] + entry["rows_quarantined"]
    return entry


@pytest.mark.parametrize("case, rule, column", [
    ("wrong_encoding", "encoding", None),
    ("missing_column", "required_columns", "zip"),
    ("extra_column", "unexpected_columns", "fax"),
    ("empty", "empty_file", None),
    ("zero_bytes", "empty_file", None),
    ("many_bad_dates", "bad_row_share", "birth_date"),
])
def test_broken_export_fails_the_run_with_a_clear_message(case, rule, column, run, tmp_path) -> None:
    (run.staged_dir / "source_records.parquet").write_bytes(b"stale output of an earlier attempt")
    with pytest.raises(SourceRejected) as err:
        ingest_broken(case, run, tmp_path)
    exc = err.value
    assert (exc.source, exc.rule, exc.column) == ("sales", rule, column)
    assert "sales_leads.csv" in str(exc) and rule in str(exc)
    report = json.loads((run.report_dir / "ingest_counts.json").read_text())
    assert report["status"] == "rejected" and report["rejections"][0]["rule"] == rule
    assert not (run.staged_dir / "source_records.parquet").exists()
    if case == "wrong_encoding":
        raw = (BROKEN / case / "sales_leads.csv").read_bytes()
        offset = int(str(exc).split("byte offset ")[1].split(":")[0])
        assert raw[offset] >= 0x80 and raw[:offset].decode("utf-8")  # the first bad byte


@pytest.mark.parametrize("case, quarantined_rules, accepted", [
    ("truncated", {"malformed_row"}, 29),
    ("wrong_dates", {"birth_date_format"}, 29),
    ("bad_keys", {"native_key_unique", "native_key_present"}, 28),
    ("quoted_newlines", set(), 30),
    ("bom", set(), 30),
    ("phone_in_email", set(), 30),
])
def test_broken_rows_are_quarantined_with_reasons(case, quarantined_rules, accepted, run, tmp_path):
    # Two bad rows in 30 pass the 5 % limit; a 10 % limit keeps these runs going.
    sales = MAPPINGS["sales"]
    relaxed = dataclasses.replace(sales, validation=dataclasses.replace(sales.validation,
                                                                         max_bad_row_share=0.1))
    summary = ingest_broken(case, run, tmp_path, relaxed)
    entry = assert_reconciles(run)
    assert entry["rows_read"] == 30 and entry["rows_accepted"] == accepted
    bad = quarantined(run)
    assert {rule for checks in bad["failed_checks"] for rule in checks} == quarantined_rules
    assert list(bad.columns) == ["run_id", "source_system", "source_file", "row_number", "raw",
                                 "failed_checks"]
    for raw in bad["raw"]:
        assert isinstance(json.loads(raw), dict)  # original values, as JSON
    staged = read(summary.source_records_path)
    assert len(staged) == accepted
    if case == "quoted_newlines":
        notes = read(run.accepted_dir / "sales.parquet")["notes"]
        assert "first line\nsecond line, with comma\nthird" in set(notes)
        assert 'quoted "word"\r\nCRLF line' in set(notes)
    if case == "bom":
        assert staged["source_key"].str.startswith("L").all()
    if case == "phone_in_email":
        row = staged.set_index("source_key").loc["L00000005"]
        assert row.email is None and row.phone_mobile == "+491709876543"
        assert "email_was_phone" in list(row.quality_flags)
    if case == "wrong_dates":
        # The wrong format is quarantined; an impossible date in the right format is kept,
        # nulled and flagged (like an invalid ID).
        assert [json.loads(r)["birth_date"] for r in bad["raw"]] == ["1985-03-14"]
        row = staged.set_index("source_key").loc["L00000006"]
        assert row.birth_date is None and "birth_date_invalid" in list(row.quality_flags)
    if case == "truncated":
        assert bad["row_number"].tolist() == [30]


def test_malformed_json_line_is_quarantined(landing: Path, run: RunPaths, tmp_path: Path) -> None:
    path = landing / "policy_servicing.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.insert(2, '{"record_id": "SV-9", "name": "cut off')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    mapping = dataclasses.replace(MAPPINGS["servicing"], validation=dataclasses.replace(
        MAPPINGS["servicing"].validation, max_bad_row_share=0.5))
    result = ingest(landing, run, {"servicing": mapping})
    counts = result.sources["servicing"]
    assert (counts.rows_read, counts.rows_accepted, counts.rows_quarantined) == (5, 4, 1)
    bad = read(run.quarantine_dir / "servicing.parquet")
    assert list(bad["failed_checks"][0]) == ["malformed_row"]
    assert "cut off" in json.loads(bad["raw"][0])["_extra_values"][0]


def test_cli_prints_one_line_error_and_exits_non_zero(tmp_path: Path, monkeypatch) -> None:
    from pipelines.ingest.commands import app

    monkeypatch.setenv("UCV_HOME", str(tmp_path / "home"))
    landing = tmp_path / "landing"
    shutil.copytree(BROKEN / "missing_column", landing)
    result = CliRunner().invoke(app, ["ingest", "--landing", str(landing), "--run-id",
                                      "2026-03-16", "--source", "sales"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "required_columns" in result.output and "zip" in result.output


def test_undecodable_gb18030_names_file_and_byte_offset(landing: Path, run: RunPaths) -> None:
    good = (EXPORTS / "claims.csv").read_bytes()
    offset = good.index(b"\n") + 5  # inside the first data row
    (landing / "claims.csv").write_bytes(good[:offset] + b"\x81\x20" + good[offset:])
    with pytest.raises(SourceRejected) as err:
        extract_source(MAPPINGS["claims"], landing, run)
    assert (err.value.rule, err.value.file) == ("encoding", "claims.csv")
    assert f"byte offset {offset}:" in str(err.value) and "gb18030" in str(err.value)


def test_standardizing_one_source_again_keeps_the_others_in_the_combined_file(
        landing: Path, tmp_path: Path, monkeypatch) -> None:
    from pipelines.cli import app as ucv

    monkeypatch.setenv("UCV_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    first = runner.invoke(ucv, ["ingest", "--landing", str(landing), "--run-id", "2026-03-16"])
    assert first.exit_code == 0, first.output
    combined = tmp_path / "home" / "runs" / "2026-03-16" / "staged" / "source_records.parquet"
    before = read(combined)
    again = runner.invoke(ucv, ["standardize", "--run-id", "2026-03-16", "--source", "sales"])
    assert again.exit_code == 0, again.output
    after = read(combined)
    assert len(after) == len(before) == 16
    assert set(after["source_system"]) == {"sales", "claims", "servicing", "underwriting"}
