"""Source mappings: the shipped ones load; broken ones fail at load naming file and key; a fifth
source is added by a YAML mapping and a suite alone, without code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml

from pipelines.ingest import MappingError, ingest, load_mapping, load_mappings
from pipelines.ingest.mapping import canonical_fields
from pipelines.settings import EXPECTATIONS_DIR, SOURCES_DIR, RunPaths

SALES = yaml.safe_load((SOURCES_DIR / "sales.yaml").read_text(encoding="utf-8"))


def test_shipped_mappings_load() -> None:
    mappings = load_mappings()
    assert set(mappings) == {"sales", "underwriting", "servicing", "claims"}
    assert mappings["claims"].encoding == "gb18030" and mappings["claims"].delimiter == ";"
    assert mappings["servicing"].address.street_line.refs == ("address.street",)
    assert mappings["servicing"].phones[0].is_list
    for mapping in mappings.values():
        assert mapping.validation.suite_file == EXPECTATIONS_DIR / f"{mapping.name}.json"
        assert set(mapping.fields) <= set(canonical_fields())


def write_mapping(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "sales.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize("change, key, words", [
    (lambda d: d["fields"].update(product="no_such_column"), "fields.product.column",
     "no_such_column"),
    (lambda d: d["name"].update(given="vorname"), "name.given", "vorname"),
    (lambda d: d["fields"].update(shoe_size="notes"), "fields.shoe_size", "unknown canonical field"),
    (lambda d: d.update(format="xlsx"), "format", "unknown format 'xlsx'"),
    (lambda d: d.update(encoding="klingon-8"), "encoding", "unknown encoding"),
    (lambda d: d.update(colums=[]), "colums", "unknown key"),
    (lambda d: d["phones"].append({"column": "mobile", "kind": "pager"}), "phones[2].kind", "pager"),
    (lambda d: d["fields"].update(email="email"), "fields.email", "section of its own"),
    (lambda d: d["party_type"]["values"].update(company="corporation"), "party_type.values.company",
     "corporation"),
    (lambda d: d.update(identifiers=[{"column": "notes", "person": ["xx.nothing"]}]),
     "identifiers[0].person", "python-stdnum"),
    (lambda d: d["validation"].update(suite="missing.json"), "validation.suite", "does not exist"),
    (lambda d: d.update(identifiers=[{"column": "notes", "organization": ["cn.uscc"],
                                      "organization_patterns": {"de_hr": "HR[AB"}}]),
     "identifiers[0].organization_patterns.de_hr", "not a regular expression"),
])
def test_broken_mapping_fails_at_load_naming_file_and_key(tmp_path, change, key, words) -> None:
    doc = json.loads(json.dumps(SALES))
    change(doc)
    path = write_mapping(tmp_path, doc)
    with pytest.raises(MappingError) as err:
        load_mapping(path)
    assert err.value.key == key and err.value.file == str(path)
    assert str(path) in str(err.value) and key in str(err.value) and words in str(err.value)


def test_suite_naming_an_unknown_column_fails_at_load(tmp_path: Path) -> None:
    suite = {"name": "x", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "vorname"}}]}
    (tmp_path / "sales.json").write_text(json.dumps(suite))
    with pytest.raises(MappingError, match="vorname"):
        load_mapping(SOURCES_DIR / "sales.yaml", expectations_dir=tmp_path)


BROKER_MAPPING = """
# A fifth source: an insurance broker's portfolio export, its own names, ';' and cp1252.
source: broker
file_pattern: "broker_*.csv"
format: csv
encoding: cp1252
delimiter: ";"
native_key: Vertrag
columns: [Vertrag, Kunde, Geburtstag, Telefon, Mail, Anschrift, Beitrag, Kundenart, Firma]
party_type:
  column: Kundenart
  values: {privat: person, gewerblich: organization}
name: {style: full, full: Kunde, organization: Firma}
phones: [{column: Telefon}]
phone_default_region: DE
email: Mail
address: {one_line: Anschrift, default_country: DE}
fields:
  policy_number: Vertrag
  birth_date: {column: Geburtstag, formats: ["%d/%m/%Y"]}
  annual_premium: {column: Beitrag, decimal: ","}
  role: {value: policyholder}
validation: {suite: broker_suite.json, max_bad_row_share: 0.5}
"""

BROKER_SUITE = {"name": "broker_rows", "expectations": [
    {"type": "expect_column_values_to_match_strftime_format",
     "kwargs": {"column": "Geburtstag", "strftime_format": "%d/%m/%Y"}, "meta": {"rule": "geburtstag_format"}},
    {"type": "expect_column_values_to_be_in_set",
     "kwargs": {"column": "Kundenart", "value_set": ["privat", "gewerblich"]}},
]}

BROKER_ROWS = """Vertrag;Kunde;Geburtstag;Telefon;Mail;Anschrift;Beitrag;Kundenart;Firma
BR-1;Müller, Thomas;14/03/1985;0151 23456789;T.Mueller@example.de;Hauptstraße 12, 10115 Berlin;1.234,50;privat;
BR-2;;;030 1234567;info@bau.de;Industriestraße 5, 12099 Berlin;99,00;gewerblich;Müller Bau GmbH
BR-3;Jörg Weiß;1985-03-14;;;Am Markt 3, 80331 München;10,00;privat;
"""


def test_fifth_source_by_yaml_and_suite_alone(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    shutil.copy(SOURCES_DIR / "claims.yaml", sources / "claims.yaml")
    (sources / "broker.yaml").write_text(BROKER_MAPPING, encoding="utf-8")
    (sources / "broker_suite.json").write_text(json.dumps(BROKER_SUITE), encoding="utf-8")
    mappings = load_mappings(sources)
    assert set(mappings) == {"broker", "claims"}

    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "broker_2026-03-16.csv").write_bytes(BROKER_ROWS.encode("cp1252"))
    run = RunPaths.for_run("2026-03-16", base=tmp_path / "runs")
    summary = ingest(landing, run, {"broker": mappings["broker"]})
    counts = summary.sources["broker"]
    assert (counts.rows_read, counts.rows_accepted, counts.rows_quarantined) == (3, 2, 1)
    assert counts.failed_checks == {"geburtstag_format": 1}
    with duckdb.connect() as con:
        rows = con.execute(f"""SELECT source_record_id, party_type, given_name, family_name_norm,
                                      birth_date::VARCHAR, phone_mobile, email, annual_premium,
                                      org_name_norm, org_legal_form, street, city, country
                                 FROM read_parquet('{summary.source_records_path}')
                                ORDER BY 1""").fetchall()
    assert rows == [
        ("broker:BR-1", "person", "Thomas", "mueller", "1985-03-14", "+4915123456789",
         "t.mueller@example.de", 1234.5, None, None, "hauptstrasse", "berlin", "DE"),
        ("broker:BR-2", "organization", None, None, None, None, "info@bau.de", 99.0,
         "mueller bau", "GMBH", "industriestrasse", "berlin", "DE"),
    ]
