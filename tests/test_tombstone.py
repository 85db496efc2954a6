"""Tombstones at extract, on exports shaped unlike the samples: a cp1252 CSV with CRLF, `;`
delimiters and a quoted field spanning lines, JSON Lines with blank lines, Parquet. Erased rows are
dropped, counted, and removed from the landed file; every other record keeps its exact bytes."""

from __future__ import annotations

import dataclasses
import json
import os
import stat

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.identify import tombstone
from pipelines.ingest import extract_source, load_mappings
from pipelines.settings import RunPaths

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
