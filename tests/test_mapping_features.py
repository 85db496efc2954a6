"""Shapes real exports have (issue 13's table), expressed by a mapping alone: a fifth source of our
own making (tests/fixtures/mapping/broker*) is ingested once, and one test per row of the table
shows the record, field or flag that comes out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipelines.ingest import SourceRejected, ingest, load_mapping, standardize_frame
from pipelines.settings import RunPaths

FIXTURES = Path(__file__).parent / "fixtures" / "mapping"
MAPPING = load_mapping(FIXTURES / "broker.yaml")


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    root = tmp_path_factory.mktemp("broker")
    landing = root / "landing"
    landing.mkdir()
    shutil.copy(FIXTURES / "broker_2026-03-16.jsonl", landing)
    run = RunPaths.for_run("2026-03-16", base=root / "runs")
    summary = ingest(landing, run, {"broker": MAPPING})
    with duckdb.connect() as con:
        df = con.execute("SELECT * FROM read_parquet(?)", [str(summary.source_records_path)]).df()
    records = {row["source_record_id"]: row for row in df.astype(object).where(df.notna(), None)
               .to_dict("records")}
    return summary, run, records


def flags(record: dict) -> list[str]:
    return list(record["quality_flags"])


# --- row 1: one row, several records ----------------------------------------------------------

def test_nested_objects_and_list_elements_become_records_of_their_own(broker) -> None:
    summary, run, records = broker
    counts = summary.sources["broker"]
    assert (counts.rows_read, counts.rows_accepted, counts.rows_quarantined) == (11, 10, 1)
    assert counts.rows_staged == 10 and counts.records_staged == 14
    claimant = records["broker:BR-1/claimant/C-1"]
    assert (claimant["role"], claimant["source_part"], claimant["policy_number"]) == \
        ("claimant", "claimant", "DE-MOT-00412345")
    assert (claimant["source_file"], claimant["source_row_number"]) == ("broker_2026-03-16.jsonl", 1)
    assert str(claimant["birth_date"])[:10] == "1990-04-02"
    assert claimant["phone_mobile"] == "+491712345678"
    insured = records["broker:BR-1/coinsured/I-2"]
    assert (insured["role"], insured["source_part"], insured["given_name"]) == \
        ("insured", "coinsured[2]", "Paul")
    # rows without the nested part (BR-2 has an empty list, BR-3 no claimant) emit nothing for it
    assert not [k for k in records if k.startswith(("broker:BR-2/coinsured", "broker:BR-3/"))]
    assert len(records) == 14  # source_record_id unique
    report = json.loads(summary.counts_path.read_text())["sources"]["broker"]
    assert report["rows_read"] == report["rows_accepted"] + report["rows_quarantined"]
    assert report["records_staged"] == 14


def test_nested_record_ids_are_stable_across_runs(broker, tmp_path) -> None:
    _, _, records = broker
    landing = tmp_path / "landing"
    landing.mkdir()
    shutil.copy(FIXTURES / "broker_2026-03-16.jsonl", landing / "broker_2026-03-17.jsonl")
    summary = ingest(landing, RunPaths.for_run("2026-03-17", base=tmp_path / "runs"),
                     {"broker": MAPPING})
    with duckdb.connect() as con:
        ids = {r[0] for r in con.execute("SELECT source_record_id FROM read_parquet(?)",
                                         [str(summary.source_records_path)]).fetchall()}
    assert ids == set(records)


def test_duplicate_nested_keys_in_one_row_are_quarantined(tmp_path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    row = {"record_id": "D-1", "policy_no": "DE-MOT-00412345", "party": "natural",
           "first_name": "A", "last_name": "B",
           "coinsured": [{"id": "X", "given": "C", "family": "D"}, {"id": "X", "given": "E",
                                                                  "family": "F"}]}
    good = {"record_id": "D-2", "policy_no": "DE-MOT-00412346", "party": "natural",
            "first_name": "G", "last_name": "H"}
    columns = MAPPING.columns
    (landing / "broker_1.jsonl").write_text("\n".join(
        json.dumps({c: r.get(c) for c in columns}) for r in (row, good)) + "\n")
    summary = ingest(landing, RunPaths.for_run("2026-03-16", base=tmp_path / "runs"),
                     {"broker": MAPPING})
    assert summary.sources["broker"].failed_checks == {"record_key_unique:coinsured": 1}
    assert summary.sources["broker"].records_staged == 1


def test_frame_path_gives_the_batch_records(broker) -> None:
    summary, run, records = broker
    with duckdb.connect() as con:
        accepted = con.execute("SELECT * FROM read_parquet(?)",
                               [str(run.accepted_dir / "broker.parquet")]).df()
    frame = standardize_frame(MAPPING, accepted, run.run_id)
    frame = frame.astype(object).where(frame.notna(), None)
    assert list(frame["source_record_id"]) == list(records)
    for row in frame.to_dict("records"):
        batch = records[row["source_record_id"]]
        for key, value in row.items():
            if isinstance(value, list) or hasattr(value, "tolist"):
                value, expected = list(value), list(batch[key]) if batch[key] is not None else None
            else:
                expected = batch[key]
            assert value == expected or (pd.isna(value) and pd.isna(expected)), (key, row)


# --- row 2: name suffixes -----------------------------------------------------------------------

def test_suffix_from_its_column_and_out_of_the_family_name(broker) -> None:
    _, _, records = broker
    assert (records["broker:BR-1"]["family_name"], records["broker:BR-1"]["name_suffix"]) == \
        ("Müller", "SR")  # column "sen."
    assert (records["broker:BR-6"]["family_name"], records["broker:BR-6"]["name_suffix"]) == \
        ("Smith", "JR")  # "Smith Jr."
    assert records["broker:BR-1/coinsured/I-2"]["name_suffix"] == "JR"


# --- row 3: upper-case FAMILY GIVEN beside given-first rows ----------------------------------

def test_upper_case_family_given_is_read_family_first(broker) -> None:
    _, _, records = broker
    upper = records["broker:BR-1/claimant/C-1"]  # "MUELLER ANNA"
    mixed = records["broker:BR-2/claimant/C-2"]  # "Anna Schmidt"
    assert (upper["given_name"], upper["family_name"]) == ("Anna", "Mueller")
    assert (mixed["given_name"], mixed["family_name"]) == ("Anna", "Schmidt")
    assert upper["family_name_norm"] == records["broker:BR-1"]["family_name_norm"] == "mueller"


# --- row 4: a Chinese full name in the family field ------------------------------------------

def test_chinese_full_name_in_the_family_field_is_split(broker) -> None:
    _, _, records = broker
    record = records["broker:BR-2"]
    assert (record["family_name"], record["given_name"]) == ("王", "敏红")
    assert record["given_name_norm"] == "minhong" and record["given_name_origin"] == "han"
    assert "full_name_split" in flags(record)


# --- row 5: company name and legal form in two columns ---------------------------------------

def test_name_and_legal_form_columns_are_combined(broker) -> None:
    _, _, records = broker
    record = records["broker:BR-3"]
    assert (record["org_name"], record["org_name_norm"], record["org_legal_form"]) == \
        ("Hövel Druckerei GmbH", "hoevel druckerei", "GMBH")
    related = records["broker:BR-4"]
    assert related["org_legal_form"] == "GMBH"
    assert list(related["org_name_qualifiers"]) == ["beteiligung"]
    assert list(record["org_name_qualifiers"]) == []
    assert list(record["org_name_tokens"]) == ["druckerei", "hoevel"]


# --- row 6: country names in another language ---------------------------------------------------

def test_country_in_any_language_and_phone_region_follows(broker) -> None:
    _, _, records = broker
    uk = records["broker:BR-6"]  # "Großbritannien", mobile "07911 123456"
    assert uk["country"] == "GB" and uk["phone_mobile"] == "+447911123456"
    assert records["broker:BR-2"]["country"] == "CN"  # 中国
    unknown = records["broker:BR-10"]  # "Atlantis"
    assert unknown["country"] is None and "country_unknown" in flags(unknown)


# --- row 7: register numbers in one canonical form -------------------------------------------

def test_register_number_variants_compare_equal(broker) -> None:
    _, _, records = broker
    # "Hamburg HRB 012345" and "HR B 12345"
    assert records["broker:BR-3"]["registration_id"] == records["broker:BR-4"]["registration_id"] \
        == "HRB 12345"
    # UK company numbers with and without the leading zero
    assert records["broker:BR-7"]["registration_id"] == records["broker:BR-8"]["registration_id"] \
        == "01234567"


def test_pattern_identifier_names_its_kind(broker) -> None:
    _, _, records = broker
    record = records["broker:BR-9"]  # US SSN "123-45-6789": no checksum, a declared pattern
    assert (record["national_id"], record["national_id_type"]) == ("123456789", "us_ssn")


# --- row 8: a company typed as a person -------------------------------------------------------

def test_company_typed_as_person_becomes_organization(broker) -> None:
    _, _, records = broker
    record = records["broker:BR-5"]  # party "natural", last_name "Meier Bau GmbH"
    assert record["party_type"] == "organization" and "party_type_inferred" in flags(record)
    assert (record["org_name"], record["org_legal_form"]) == ("Meier Bau GmbH", "GMBH")
    assert record["given_name"] is None and record["family_name"] is None
    kaufmann = records["broker:BR-10"]  # a surname that holds "Kauf" stays a person
    assert kaufmann["party_type"] == "person" and "party_type_inferred" not in flags(kaufmann)


# --- row 9: an e-mail in the phone field ------------------------------------------------------

def test_email_in_a_phone_column_becomes_the_email(broker) -> None:
    _, _, records = broker
    record = records["broker:BR-6"]
    assert record["email"] == "oliver.smith@example.co.uk"
    assert record["phone_landline"] is None and "phone_was_email" in flags(record)
    assert "phone_invalid" not in flags(record)


# --- row 10: value transforms, policy numbers --------------------------------------------------

def test_regex_rewrite_and_policy_key(broker) -> None:
    _, _, records = broker
    assert records["broker:BR-2"]["house_number"] == "56"  # "56号" rewritten by the mapping
    keys = {records[f"broker:BR-{i}"]["policy_key"] for i in (1, 2, 3)}
    # DE-MOT-00412345, DEMOT00412345, DE MOT 412345
    assert keys == {"DEMOT412345"}
    assert records["broker:BR-1/claimant/C-1"]["policy_key"] == "DEMOT412345"
    assert records["broker:BR-1"]["salutation"] == "Herr"  # value map "Hr." -> "Herr"


# --- row 11: birth surname and consent per channel --------------------------------------------

def test_birth_surname_and_consent_per_channel(broker) -> None:
    _, _, records = broker
    record = records["broker:BR-1"]
    assert (record["birth_family_name"], record["birth_family_name_norm"]) == ("Schmidt", "schmidt")
    assert (record["consent_email"], record["consent_phone"]) == (True, False)
    assert str(record["consent_email_at"]) == "2026-01-05 10:00:00"
    assert record["marketing_consent"] is True  # derived: consent on a channel
    assert record["language"] == "de" and records["broker:BR-2"]["language"] == "zh"
    assert records["broker:BR-3"]["marketing_consent"] is None  # the source did not say


# --- rows 12 and 13 are load/run checks: tests/test_mapping_checks.py --------------------------

def test_display_forms_keep_what_was_written(broker) -> None:
    _, _, records = broker
    record = records["broker:BR-1"]
    assert (record["street"], record["street_display"]) == ("hauptstrasse", "Hauptstraße")
    assert (record["city"], record["city_display"]) == ("berlin", "Berlin")


def test_wrong_delimiter_names_the_likely_one(tmp_path) -> None:
    sales = load_mapping(Path(__file__).parents[1] / "schemas" / "sources" / "sales.yaml")
    landing = tmp_path / "landing"
    landing.mkdir()
    header = ";".join(sales.columns)
    (landing / "sales_leads.csv").write_text(header + "\n" + ";".join("x" * len(sales.columns))
                                             + "\n", encoding="utf-8")
    with pytest.raises(SourceRejected) as err:
        ingest(landing, RunPaths.for_run("2026-03-16", base=tmp_path / "runs"), {"sales": sales})
    assert err.value.rule == "header"
    assert "';'-delimited" in str(err.value) and "one field" in str(err.value)


def test_compiled_canonical_select_gives_duckdbs_rows_for_this_source(broker, monkeypatch) -> None:
    """Real time assembles the canonical row in Python (records.compile_canonical_select); on this
    source's shapes (consent per channel, rewrites, policy keys, nested parts) every row goes both
    ways and the compiled SELECT is never switched off."""
    from pipelines.standardize import records as std

    monkeypatch.setattr(std, "SHADOW_CHECKS", 10**9)
    summary, run, _ = broker
    with duckdb.connect() as con:
        accepted = con.execute("SELECT * FROM read_parquet(?)",
                               [str(run.accepted_dir / "broker.parquet")]).df()
    for mapping in [MAPPING, *(r.mapping for r in MAPPING.records)]:
        rows = accepted if mapping.part is None else std.expand_part_rows(mapping, accepted)
        if not len(rows):
            continue
        warm = std.RecordStandardizer(mapping)
        for i in range(len(rows)):
            warm.standardize_rows(rows.iloc[[i]], run.run_id)
        warm.standardize_rows(rows, run.run_id)
        assert all(f is not None for f in warm._compiled.values()), mapping.name
        assert warm.paths["checked"] >= 0.9 * warm.paths["duckdb"], (mapping.name, warm.paths)
