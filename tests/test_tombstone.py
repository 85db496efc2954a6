"""Tombstones at extract, on exports shaped unlike the samples: a cp1252 CSV with CRLF, `;`
delimiters and a quoted field spanning lines, JSON Lines with blank lines, Parquet. Erased rows are
dropped, counted, and removed from the landed file; every other record keeps its exact bytes.
A person nested in other people's rows (`records:`, the broker export) is taken out of them alone."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import stat

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from canary import BROKER_OTHERS, EMAIL, broker_notifications, canary_hits

from pipelines.identify import tombstone
from pipelines.ingest import extract_source, ingest, load_mappings
from pipelines.ingest.mapping import load_mapping
from pipelines.settings import EXPECTATIONS_DIR, SOURCES_DIR, RunPaths

SALES = load_mappings()["sales"]
HEADER = ["lead_id", "first_name", "last_name", "email", "mobile", "notes"]
CP1252_SALES = dataclasses.replace(SALES, encoding="cp1252", delimiter=";", columns=tuple(HEADER),
                                   optional_columns=())


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("UCV_HOME", str(tmp_path))
    return tmp_path


def landed(home, name: str) -> tuple:
    folder = home / "landing" / "2026-11-22"
    folder.mkdir(parents=True, exist_ok=True)
    return folder, folder / name


ROWS = [
    '"L1";"Zoë";"Müller";"zoe@example.de";"0151 1111111";"ruft zurück"\r\n',
    '"L2";"Hans";"Groß";"HANS.GROSS@Example.DE ";"";"Notiz über\r\nzwei Zeilen"\r\n',
    '"L3";"Anna";"Weiß";"anna@example.de";"+49 (151) 2222-222";""\r\n',
    '"L4";"Otto";"Kühn";"otto@example.de";"";""\r\n',
]


def write_cp1252(path) -> None:
    text = ";".join(f'"{h}"' for h in HEADER) + "\r\n" + "".join(ROWS)
    path.write_bytes(text.encode("cp1252"))


def test_erased_rows_leave_raw_and_the_landed_file_and_are_counted(home):
    folder, path = landed(home, "sales_leads.csv")
    write_cp1252(path)
    mapping = dataclasses.replace(CP1252_SALES, phones=SALES.phones[:1])
    assert tombstone.add_tombstones([("email", "hans.gross@example.de"),
                                     ("phone", "+49 151 2222222"), ("record", "sales:L4")]) == 3
    salt_file = home / "registry" / "erasure.salt"
    assert stat.S_IMODE(os.stat(salt_file).st_mode) == 0o600

    run = RunPaths.for_run("2026-11-22", base=home / "runs")
    result = extract_source(mapping, folder, run)

    raw = pq.read_table(run.raw_dir / "sales.parquet")
    assert raw["lead_id"].to_pylist() == ["L1"]
    assert result.erased_rows == 3 and result.rows_read == 4
    header = ";".join(f'"{h}"' for h in HEADER) + "\r\n"
    assert path.read_bytes() == (header + ROWS[0]).encode("cp1252")  # others byte for byte
    assert json.loads(tombstone.sidecar(path).read_text()) == {"rows": 3}
    assert not list(folder.glob(".*.redacting"))

    again = extract_source(mapping, folder, run)  # a rerun of the date: same accounting
    assert (again.rows_read, again.erased_rows) == (4, 3)


def test_json_lines_and_parquet_exports_are_redacted_too(home):
    servicing = load_mappings()["servicing"]
    folder, path = landed(home, "policy_servicing.jsonl")
    lines = [json.dumps({"record_id": f"S{i}", "email_address": f"p{i}@x.de",
                         "phone_numbers": ["+49 30 1234567" if i == 2 else "+49 30 7654321"],
                         "id_number": None}) for i in range(1, 4)]
    path.write_text(lines[0] + "\n\n" + lines[1] + "\n" + lines[2] + "\n", encoding="utf-8")
    tombstone.add_tombstones([("phone", "030 1234567")])
    run = RunPaths.for_run("2026-11-22", base=home / "runs")
    result = extract_source(servicing, folder, run)
    assert result.erased_rows == 1
    assert path.read_text(encoding="utf-8") == lines[0] + "\n\n" + lines[2] + "\n"

    underwriting = load_mappings()["underwriting"]
    folder, path = landed(home, "underwriting_applications.parquet")
    pq.write_table(pa.table({"application_no": ["U1", "U2"], "national_id": ["12 345 678 901", None],
                             "email": [None, "u2@x.de"]}), path)
    tombstone.add_tombstones([("national_id", "12345678901")])
    result = extract_source(underwriting, folder, run)
    assert result.erased_rows == 1
    assert pq.read_table(path)["application_no"].to_pylist() == ["U2"]


def test_no_tombstones_means_no_change_and_no_salt(home):
    folder, path = landed(home, "sales_leads.csv")
    write_cp1252(path)
    before = path.read_bytes()
    run = RunPaths.for_run("2026-11-22", base=home / "runs")
    result = extract_source(CP1252_SALES, folder, run)
    assert (result.rows_read, result.erased_rows) == (4, 0)
    assert path.read_bytes() == before and not (home / "registry").exists()


def test_landing_outside_the_data_root_is_not_rewritten(home, tmp_path_factory):
    outside = tmp_path_factory.mktemp("dropzone")
    path = outside / "sales_leads.csv"
    write_cp1252(path)
    before = path.read_bytes()
    tombstone.add_tombstones([("record", "sales:L1")])
    run = RunPaths.for_run("2026-11-22", base=home / "runs")
    result = extract_source(CP1252_SALES, outside, run)
    assert result.erased_rows == 1 and path.read_bytes() == before
    assert pq.read_table(run.raw_dir / "sales.parquet")["lead_id"].to_pylist() == ["L2", "L3", "L4"]


BROKER = load_mapping(SOURCES_DIR / "optional" / "broker.yaml", EXPECTATIONS_DIR)


def write_broker(path, fmt: str) -> None:
    rows = broker_notifications()
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    elif fmt == "csv":  # the nested parties as JSON text in their cells
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({k: json.dumps(v) if isinstance(v, dict | list) else v
                              for k, v in r.items()} for r in rows)
    else:  # Parquet: a struct column and a list-of-structs column
        pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_a_person_nested_in_other_peoples_rows_is_taken_out_of_them_and_the_rows_stay(home, fmt):
    mapping = dataclasses.replace(BROKER, format=fmt, file_pattern=f"broker_claims*.{fmt}")
    folder, path = landed(home, f"broker_claims.{fmt}")
    write_broker(path, fmt)
    assert canary_hits(folder) == [str(path)]
    tombstone.add_tombstones([("email", EMAIL)])  # the claimant and the co-insured carry it
    run = RunPaths.for_run("2026-11-22", base=home / "runs")

    result = extract_source(mapping, folder, run)

    assert (result.rows_read, result.erased_rows, result.erased_records) == (2, 0, 2)
    raw = pq.read_table(run.raw_dir / "broker.parquet")
    assert raw["notification_id"].to_pylist() == ["BN-1", "BN-2"]  # both rows stay
    assert canary_hits(run.raw_dir, folder) == []  # gone from raw and from the landed file
    for table in (raw, pq.read_table(path) if fmt == "parquet" else None):
        text = json.dumps(table.to_pylist() if table is not None else path.read_text())
        assert all(family in text for family in BROKER_OTHERS.values())
    first = json.loads(raw["co_insured"][0].as_py())
    assert first[1] is None and first[2]["last_name"] == "Cyanfeld"  # Carl keeps his place
    assert json.loads(tombstone.sidecar(path).read_text()) == {"rows": 0, "records": 2}
    landed_bytes = path.read_bytes()

    again = extract_source(mapping, folder, run)  # a rerun of the date: same accounting
    assert (again.rows_read, again.erased_rows, again.erased_records) == (2, 0, 2)
    assert path.read_bytes() == landed_bytes


def test_nested_records_are_matched_by_their_own_record_keys_and_the_others_keep_theirs(home):
    folder, path = landed(home, "broker_claims_2026-11-22.jsonl")
    write_broker(path, "jsonl")
    other_lines = path.read_text().splitlines()[1:]
    # the record keys standardize gives them: the claimant's key, the co-insured's list index
    tombstone.add_tombstones([("record", "broker:BN-1/claimant/C1"),
                              ("record", "broker:BN-1/co_insured/2")])
    summary = ingest(folder, RunPaths.for_run("2026-11-22", base=home / "runs"), {"broker": BROKER})

    staged = pq.read_table(summary.source_records_path, columns=["source_record_id", "family_name"])
    assert dict(zip(*staged.to_pydict().values(), strict=True)) == BROKER_OTHERS
    assert summary.sources["broker"].records_staged == len(BROKER_OTHERS)
    counts = json.loads(summary.counts_path.read_text())["sources"]["broker"]
    assert (counts["rows_read"], counts["rows_erased"], counts["records_erased"]) == (2, 0, 2)
    assert canary_hits(folder) == []
    assert path.read_text().splitlines()[1:] == other_lines  # other lines keep their bytes
