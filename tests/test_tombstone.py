"""Tombstones at extract, on exports shaped unlike the samples: a cp1252 CSV with CRLF, `;`
delimiters and a quoted field spanning lines, JSON Lines with blank lines, Parquet. Erased rows are
dropped, counted, and removed from the landed file; every other record keeps its exact bytes.
The landed file is redacted by extract's own row numbering (a runaway quote split back into one
row per line, undecodable lines a quarantine policy keeps; a property over random files checks
it for every row number). A person nested in other people's rows (`records:`, the broker export)
is taken out of them alone; a row whose own person is erased stays for the people nested in it."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import random
import re
import stat
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from canary import (
    BROKER_OTHERS,
    EMAIL,
    FAMILY,
    broker_notifications,
    canary_hits,
    write_broker_export,
)

from pipelines.identify import tombstone
from pipelines.ingest import extract_source, ingest, load_mappings
from pipelines.ingest.mapping import DeclaredRows, load_mapping
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


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_a_person_nested_in_other_peoples_rows_is_taken_out_of_them_and_the_rows_stay(home, fmt):
    mapping = dataclasses.replace(BROKER, format=fmt, file_pattern=f"broker_claims*.{fmt}")
    folder, path = landed(home, f"broker_claims.{fmt}")
    write_broker_export(path, fmt)
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
    write_broker_export(path, "jsonl")
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


# --------------------------------------------------------------------------------------------
# The landed file is redacted by extract's own row numbering

CLEAN_SALES = Path(__file__).parent / "fixtures" / "broken" / "phone_in_email" / "sales_leads.csv"


def runaway_quote_sales(path) -> bytes:
    """The 30-row sales export with a quote opened on line 4 (data row 3) that runs to line 7,
    where the next quote closes it: extract reads lines 4-7 as four malformed rows of their own."""
    lines = CLEAN_SALES.read_text(encoding="utf-8").splitlines(keepends=True)
    fields = lines[3].split(",")
    fields[4] = '"' + fields[4]
    lines[3] = ",".join(fields)
    lines[6] = lines[6].replace("Hauptstraße", 'Haupt"straße', 1)
    path.write_text("".join(lines), encoding="utf-8")
    return path.read_bytes()


def without_lines(data: bytes, *starts: bytes) -> bytes:
    return b"".join(ln for ln in data.splitlines(keepends=True) if not ln.startswith(starts))


def test_the_row_redacted_after_an_unbalanced_quote_is_the_erased_one(home):
    folder, path = landed(home, "sales_leads.csv")
    original = runaway_quote_sales(path)
    tombstone.add_tombstones([("record", "sales:L00000010")])
    run = RunPaths.for_run("2026-11-22", base=home / "runs")

    result = extract_source(SALES, folder, run)

    assert (result.rows_read, result.erased_rows, result.malformed_rows) == (30, 1, 4)
    assert path.read_bytes() == without_lines(original, b"L00000010,")  # all else byte for byte
    keys = pq.read_table(run.raw_dir / "sales.parquet")["lead_id"].to_pylist()
    assert "L00000010" not in keys and "L00000013" in keys
    again = extract_source(SALES, folder, run)
    assert (again.rows_read, again.erased_rows) == (30, 1)
    assert path.read_bytes() == without_lines(original, b"L00000010,")


def _bad_byte(line: bytes) -> bytes:
    return line[:5] + b"\xff" + line[5:]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_undecodable_line_a_quarantine_policy_keeps_survives_the_redaction(home, fmt):
    """Redaction reads the file with the source's own `on_bad_line`: the quarantined line is a
    row (numbered), and it is copied as its bytes, not as the text extract quarantined."""
    if fmt == "csv":
        mapping = dataclasses.replace(SALES, on_bad_line="quarantine")
        folder, path = landed(home, "sales_leads.csv")
        lines = CLEAN_SALES.read_bytes().splitlines(keepends=True)
        lines[5] = _bad_byte(lines[5])  # data row 5
        erased, key = b"L00000010,", ("record", "sales:L00000010")
    else:
        mapping = dataclasses.replace(load_mappings()["servicing"], on_bad_line="quarantine")
        folder, path = landed(home, "policy_servicing.jsonl")
        lines = [json.dumps({"record_id": f"S{i}", "email_address": f"p{i}@x.de",
                             "phone_numbers": [], "id_number": None}).encode() + b"\n"
                 for i in range(1, 6)]
        lines[1] = _bad_byte(lines[1])
        lines.insert(3, b"\n")
        erased, key = b'{"record_id": "S4"', ("email", "p4@x.de")
    original = b"".join(lines)
    path.write_bytes(original)
    tombstone.add_tombstones([key])
    run = RunPaths.for_run("2026-11-22", base=home / "runs")

    result = extract_source(mapping, folder, run)

    assert (result.erased_rows, result.malformed_rows) == (1, 1)
    assert path.read_bytes() == without_lines(original, erased)
    assert b"\xff" in path.read_bytes()


# A property over random files: for every row number extract gives, redacting that number
# removes exactly the lines of the record extract read under it, and nothing else.

CSV_HEADER = ["id", "given", "family", "email", "notes"]
CSV_KINDS = ["clean"] * 6 + ["multiline", "quoted_delimiter", "short", "long", "runaway",
                             "runaway", "bad_quote", "blank", "spaces", "undecodable"]
JSONL_KINDS = ["clean"] * 6 + ["blank", "spaces", "bad_json", "not_object", "undecodable"]


def random_csv(rng, encoding: str) -> bytes:
    bad = b"\xff" if encoding == "utf-8" else b"\x81"  # not valid in either
    lines = [",".join(CSV_HEADER).encode() + b"\n"]
    for i in range(rng.randint(3, 25)):
        k = f"K{i:03d}"
        kind = rng.choice(CSV_KINDS)
        text = {"clean": f"{k},Gi{i},Fä{i},e{i}@x.de,note {i}",
                "multiline": f'{k},Gi{i},Fa{i},e{i}@x.de,"two\nlines {i}"',
                "quoted_delimiter": f'{k},"Gi, {i}",Fa{i},e{i}@x.de,n{i}',
                "short": f"{k},Gi{i},Fa{i}",
                "long": f"{k},Gi{i},Fa{i},e{i}@x.de,n{i},more{i}",
                "runaway": f'{k},"Gi{i},Fa{i},e{i}@x.de,n{i}',
                "bad_quote": f'{k},"Gi{i}"x,Fa{i},e{i}@x.de,n{i}',
                "blank": "", "spaces": " " * (i + 1), "undecodable": f"{k},G@{i},Fa{i},e,n"}[kind]
        data = text.encode(encoding)
        lines.append(data.replace(b"@", bad) if kind == "undecodable" else data)
    if encoding == "utf-8" and rng.random() < 0.3:
        lines[0] = b"\xef\xbb\xbf" + lines[0]
    ending = rng.choice([b"\n", b"\r\n"])
    body = ending.join(line.rstrip(b"\n") for line in lines)
    return body + (ending if rng.random() < 0.8 else b"")


def random_jsonl(rng) -> bytes:
    lines = []
    only_clean = rng.random() < 0.4  # DuckDB's reader takes such files whole
    for i in range(rng.randint(3, 25)):
        kind = rng.choice(["clean"] * 5 + ["blank", "spaces"] if only_clean else JSONL_KINDS)
        obj = {"record_id": f"S{i}", "email_address": f"p{i}@x.de", "name": f"Zoë {i}"}
        lines.append({"clean": json.dumps(obj, ensure_ascii=rng.random() < 0.5).encode(),
                      "blank": b"", "spaces": b" \t" * (i + 1),
                      "bad_json": f'{{"record_id": "S{i}", "name": '.encode(),
                      "not_object": f'["S{i}"]'.encode(),
                      "undecodable": f'{{"record_id": "S{i}\xff"}}'.encode("latin-1")}[kind])
    ending = rng.choice([b"\n", b"\r\n"])
    return ending.join(lines) + (ending if rng.random() < 0.8 else b"")


def removed_block(original: list[bytes], redacted: bytes) -> tuple[int, list[bytes]]:
    """(first line number, lines) of the one contiguous run of whole lines the redaction took
    out; fails if the rest of the file changed."""
    out = redacted.splitlines(keepends=True)
    start = next((i for i, (a, b) in enumerate(zip(original, out, strict=False)) if a != b),
                 len(out))
    end = start + len(original) - len(out)
    assert end > start and original[:start] + original[end:] == out, "other lines changed"
    return start + 1, original[start:end]


def lines_named(problem: str) -> list[int]:
    """The physical lines a malformed row's `_malformed` says it was read from."""
    if match := re.search(r"line (\d+) quarantined on its own", problem):
        return [int(match.group(1))]
    if match := re.search(r"JSON line (\d+)", problem):
        return [int(match.group(1))]
    match = re.search(r"\(lines? (\d+)(?:-(\d+))?", problem)
    assert match, problem
    return list(range(int(match.group(1)), int(match.group(2) or match.group(1)) + 1))


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("seed", range(6))
def test_redacting_a_row_number_removes_the_record_extract_read_under_it(home, fmt, seed):
    rng = random.Random(seed)
    folder, path = landed(home, f"export.{fmt}")
    base = SALES if fmt == "csv" else load_mappings()["servicing"]
    for case in range(4):
        encoding = rng.choice(["utf-8", "cp1252"]) if fmt == "csv" else "utf-8"
        data = random_csv(rng, encoding) if fmt == "csv" else random_jsonl(rng)
        mapping = dataclasses.replace(base, file_pattern=path.name, on_bad_line="quarantine",
                                      encoding=encoding, columns=tuple(CSV_HEADER)
                                      if fmt == "csv" else base.columns, optional_columns=())
        path.write_bytes(data)
        run = RunPaths.for_run("2026-11-22", base=home / "runs")
        extracted = extract_source(mapping, folder, run)
        if rng.random() < 0.5:  # with a declared trailer: it is no row, and is kept
            trailer = f"TRAILER|{extracted.rows_read}\n".encode()
            data = data + (b"" if data.endswith(b"\n") else b"\n") + trailer
            mapping = dataclasses.replace(mapping, declared_rows=DeclaredRows(
                trailer=r"^TRAILER\|(\d+)"))
            path.write_bytes(data)
            assert extract_source(mapping, folder, run).rows_read == extracted.rows_read
        rows = pq.read_table(run.raw_dir / f"{mapping.name}.parquet").to_pylist()
        original = data.splitlines(keepends=True)
        blocks = []
        for row in rows:
            path.write_bytes(data)
            assert tombstone.redact_landed_file(mapping, path, {row["_row_number"]})
            first, block = removed_block(original, path.read_bytes())
            numbers = list(range(first, first + len(block)))
            text = b"".join(block).decode(encoding, "backslashreplace").removeprefix("\ufeff")
            where = (case, row["_row_number"], text)
            if row["_malformed"]:
                assert numbers == lines_named(row["_malformed"]), where
            elif fmt == "csv":
                record = list(csv.reader(io.StringIO(text, newline="")))
                assert record == [[row[c] for c in CSV_HEADER]], where
            else:
                assert json.loads(text)["record_id"] == row["record_id"], where
            blocks.append(numbers)
            tombstone.sidecar(path).unlink()
        # the rows' lines partition the file but for its header, blank lines and trailer
        assert [n for b in blocks for n in b] == sorted({n for b in blocks for n in b})
        rest = [original[n - 1] for n in range(1, len(original) + 1)
                if n not in {m for b in blocks for m in b}]
        assert all(not line.strip() for line in rest[1 if fmt == "csv" else 0:]
                   if not line.startswith(b"TRAILER|")), rest


# --------------------------------------------------------------------------------------------
# A row whose own person is erased stays for the other people nested in it

ANNA = ("Altmann", "anna.altmann")  # BN-1's insured: the row's own person
BN1_NESTED = {"broker:BN-1/claimant/C1": FAMILY, "broker:BN-1/co_insured/K1": "Bunte",
              "broker:BN-1/co_insured/2": FAMILY, "broker:BN-1/co_insured/3": "Cyanfeld"}


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_a_row_whose_own_person_is_erased_stays_for_the_people_nested_in_it(home, fmt):
    mapping = dataclasses.replace(BROKER, format=fmt, file_pattern=f"broker_claims*.{fmt}")
    folder, path = landed(home, f"broker_claims.{fmt}")
    write_broker_export(path, fmt)
    second_row = path.read_bytes().splitlines(keepends=True)[-1] if fmt != "parquet" else None
    assert canary_hits(folder, values=ANNA) == [str(path)]
    tombstone.add_tombstones([("record", "broker:BN-1"), ("email", "anna.altmann@example.de")])
    run = RunPaths.for_run("2026-11-22", base=home / "runs")

    summary = ingest(folder, run, {"broker": mapping})

    staged = pq.read_table(summary.source_records_path,
                           columns=["source_record_id", "family_name"]).to_pylist()
    assert {r["source_record_id"]: r["family_name"] for r in staged} == {
        **BN1_NESTED, "broker:BN-2": "Dunkelberg", "broker:BN-2/claimant/C2": "Ehrenfeld"}
    counts = json.loads(summary.counts_path.read_text())["sources"]["broker"]
    figures = ("rows_read", "rows_accepted", "rows_quarantined", "rows_erased", "rows_redacted",
               "rows_staged", "records_staged", "records_erased")
    assert [counts[k] for k in figures] == [2, 1, 0, 1, 1, 1, 6, 0]
    assert counts["rows_read"] == (counts["rows_accepted"] + counts["rows_quarantined"]
                                   + counts["rows_erased"])
    assert canary_hits(home, values=ANNA) == []  # not in the landed file, raw, accepted, staged
    raw = pq.read_table(run.raw_dir / "broker.parquet").to_pylist()
    assert [(r["notification_id"], r["_redacted"]) for r in raw] == [("BN-1", True), ("BN-2", None)]
    assert raw[0]["insured"] is None and raw[0]["policy_ref"] == "P-DE-0000001"  # theirs too
    if second_row is not None:  # the other row keeps its bytes
        assert path.read_bytes().splitlines(keepends=True)[-1] == second_row
    assert json.loads(tombstone.sidecar(path).read_text()) == {"rows": 0, "redacted": 1}
    landed_bytes = path.read_bytes()

    again = ingest(folder, run, {"broker": mapping})  # a rerun: the file is left as it is

    assert json.loads(again.counts_path.read_text())["sources"]["broker"] == counts
    assert path.read_bytes() == landed_bytes
    assert json.loads(tombstone.sidecar(path).read_text()) == {"rows": 0, "redacted": 1}


def test_a_row_whose_own_person_is_erased_and_holds_no_one_else_goes_whole(home):
    folder, path = landed(home, "broker_claims.jsonl")
    rows = broker_notifications()
    rows[1]["claimant"] = None  # BN-2: Dora alone
    write_broker_export(path, "jsonl", rows)
    tombstone.add_tombstones([("record", "broker:BN-2")])
    run = RunPaths.for_run("2026-11-22", base=home / "runs")

    summary = ingest(folder, run, {"broker": BROKER})

    counts = json.loads(summary.counts_path.read_text())["sources"]["broker"]
    assert [counts[k] for k in ("rows_read", "rows_accepted", "rows_erased", "rows_redacted")] \
        == [2, 1, 1, 0]
    assert [json.loads(line)["notification_id"] for line in path.read_text().splitlines()] \
        == ["BN-1"]


def test_a_row_key_read_from_the_erased_persons_object_is_all_that_stays_of_it(home):
    # the export keys its rows by the insured's own reference: `native_key: insured.ref`
    text = (SOURCES_DIR / "optional" / "broker.yaml").read_text(encoding="utf-8")
    variant = home / "broker.yaml"
    variant.write_text(text.replace("native_key: notification_id", "native_key: insured.ref"),
                       encoding="utf-8")
    mapping = load_mapping(variant, EXPECTATIONS_DIR)
    assert "insured" in tombstone.emptied_columns(mapping, mapping.all_columns)
    folder, path = landed(home, "broker_claims.jsonl")
    write_broker_export(path, "jsonl")
    tombstone.add_tombstones([("record", "broker:I1")])  # Anna, by her row's key
    run = RunPaths.for_run("2026-11-22", base=home / "runs")

    summary = ingest(folder, run, {"broker": mapping})

    staged = set(pq.read_table(summary.source_records_path)["source_record_id"].to_pylist())
    assert staged == {"broker:I1/claimant/C1", "broker:I1/co_insured/K1", "broker:I1/co_insured/2",
                      "broker:I1/co_insured/3", "broker:I2", "broker:I2/claimant/C2"}
    assert json.loads(path.read_text().splitlines()[0])["insured"] == {"ref": "I1"}
    assert canary_hits(home, values=ANNA) == []
