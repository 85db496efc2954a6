"""Declared row counts (issue 15): an export that says how many data rows it holds, in a trailer
line or in a control file beside it, must hold exactly that many as the parser reads them (the
header and the trailer not counted, malformed rows counted), or the source fails with rule
`declared_row_count` naming the file and both counts. The trailer is no row: rows read = accepted
+ quarantined (+ erased) still holds."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.identify import tombstone
from pipelines.ingest import SourceRejected, extract, extract_source, ingest, load_mappings
from pipelines.ingest.mapping import DeclaredRows
from pipelines.orchestration.landing import check_landing
from pipelines.settings import RunPaths

FIXTURES = Path(__file__).parent / "fixtures"
CLEAN_SALES = FIXTURES / "broken" / "phone_in_email" / "sales_leads.csv"  # header + 30 good rows
SERVICING = FIXTURES / "exports" / "policy_servicing.jsonl"  # 4 lines
MAPPINGS = load_mappings()
TRAILER = r"^TRAILER\|(\d+)"


@pytest.fixture
def run(tmp_path: Path) -> RunPaths:
    return RunPaths.for_run("2026-11-22", base=tmp_path / "runs").ensure()


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    folder = tmp_path / "landing"
    folder.mkdir()
    shutil.copy(CLEAN_SALES, folder / "sales_leads.csv")
    return folder


def declaring(source: str, **declared) -> object:
    """The shipped mapping of `source`, declaring its row counts as given, bad rows tolerated."""
    mapping = MAPPINGS[source]
    validation = dataclasses.replace(mapping.validation, max_bad_row_share=0.5)
    return dataclasses.replace(mapping, validation=validation,
                               declared_rows=DeclaredRows(**declared))


def append(path: Path, text: str) -> None:
    path.write_bytes(path.read_bytes() + text.encode("utf-8"))


def rejection(mapping, landing: Path, run: RunPaths) -> SourceRejected:
    with pytest.raises(SourceRejected) as err:
        extract_source(mapping, landing, run)
    return err.value


# --------------------------------------------------------------------------------------------
# Trailer lines


@pytest.mark.parametrize("trailer, pattern", [
    ("TRAILER|30\n", TRAILER),
    ("TRAILER|30", TRAILER),                       # no newline at the end
    ("TRAILER|30|2026-11-22\n\n\n", TRAILER),      # blank lines after it
    ("T,30,2026-11-22\r\n", r"^T,(\d+),"),
])
def test_a_trailer_with_the_right_count_passes_and_is_not_a_row(landing, run, trailer, pattern):
    append(landing / "sales_leads.csv", trailer)
    summary = ingest(landing, run, {"sales": declaring("sales", trailer=pattern)})
    counts = summary.sources["sales"]
    assert (counts.rows_read, counts.rows_accepted, counts.rows_quarantined) == (30, 30, 0)
    report = json.loads(summary.counts_path.read_text(encoding="utf-8"))
    assert report["sources"]["sales"]["declared_rows"] == {"sales_leads.csv": 30}
    raw = pq.read_table(run.raw_dir / "sales.parquet")
    assert not any("30" == v or "T" == v for v in raw["lead_id"].to_pylist())
    assert raw["_malformed"].null_count == raw.num_rows


def test_without_a_declaration_the_same_trailer_is_a_malformed_row(landing, run):
    """The control case: the trailer is held back only because the mapping declares it."""
    append(landing / "sales_leads.csv", "TRAILER|30\n")
    result = extract_source(declaring("sales", trailer=TRAILER), landing, run)
    plain = dataclasses.replace(MAPPINGS["sales"], declared_rows=None)
    assert (result.rows_read, extract_source(plain, landing, run).rows_read) == (30, 31)


@pytest.mark.parametrize("declared, found_words", [
    (31, "1 row short"), (35, "5 rows short"), (29, "1 row more than declared")])
def test_a_trailer_count_mismatch_names_file_declared_and_found(landing, run, declared,
                                                                  found_words):
    append(landing / "sales_leads.csv", f"TRAILER|{declared}\n")
    err = rejection(declaring("sales", trailer=TRAILER), landing, run)
    assert (err.rule, err.file, err.source) == ("declared_row_count", "sales_leads.csv", "sales")
    message = str(err)
    assert f"declares {declared} data rows (trailer line 32)" in message
    assert "but 30 were read from it" in message and found_words in message
    assert "\n" not in message and "rule declared_row_count failed" in message


def test_a_file_cut_short_has_no_trailer_and_its_values_stay_out_of_the_message(landing, run):
    path = landing / "sales_leads.csv"
    append(path, "TRAILER|30\n")
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])  # the transfer stopped in the middle of a row
    lines = path.read_text(encoding="utf-8").splitlines()
    last = lines[-1]
    err = rejection(declaring("sales", trailer=TRAILER), landing, run)
    assert err.rule == "declared_row_count" and "has no trailer" in str(err)
    assert "cut short" in str(err) and f"its last line (line {len(lines)})" in str(err)
    assert last.split(",")[0] not in str(err) and last[-8:] not in str(err)


def test_an_empty_file_declaring_a_trailer_is_refused(landing, run):
    (landing / "sales_leads.csv").write_bytes(b"")
    err = rejection(declaring("sales", trailer=TRAILER), landing, run)
    assert err.rule == "declared_row_count" and "is empty" in str(err)


def test_an_unbalanced_quote_split_per_line_still_matches_the_count(landing, run):
    """The parser quarantines each line of a record a runaway quote ran over, so every data row
    the export wrote is still one row: the count matches and the lines are in quarantine."""
    path = landing / "sales_leads.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    fields = lines[3].split(",")
    fields[4] = '"' + fields[4]
    lines[3] = ",".join(fields)
    lines[6] = lines[6].replace("Hauptstraße", 'Haupt"straße', 1)
    path.write_text("".join(lines) + "TRAILER|30\n", encoding="utf-8")
    counts = ingest(landing, run, {"sales": declaring("sales", trailer=TRAILER)}).sources["sales"]
    assert (counts.rows_read, counts.rows_accepted, counts.rows_quarantined) == (30, 26, 4)


def test_a_quote_that_swallows_rows_unseen_fails_the_declared_count(tmp_path, run):
    """With two columns a swallowed line cannot be told from a quoted line break, so the parser
    reads one record where the export wrote three: only the declared count shows the loss."""
    mapping = two_column_mapping(tmp_path, "declared_rows:\n  trailer: '^TRAILER\\|(\\d+)'\n")
    landing = tmp_path / "landing"
    (landing / "holders_1.csv").write_text(
        'holder_id;holder_name\nH1;"Ann Lee\nH2;Bob Roe\nH3;Cy Poe"\nH4;Dee Fox\nTRAILER|4\n',
        encoding="utf-8")
    err = rejection(mapping, landing, run)
    assert err.rule == "declared_row_count"
    assert "declares 4 data rows (trailer line 6) but 2 were read from it" in str(err)
    assert "2 rows short; a quote left open that swallowed rows" in str(err)
    assert "Ann" not in str(err) and "H2" not in str(err)


def _no_careful_reader(*args, **kwargs):
    raise AssertionError("the line-by-line JSON reader ran on a well-formed file")


def test_a_jsonl_trailer_is_left_out_by_duckdb_and_checked(landing, run, monkeypatch):
    """Well-formed JSON Lines stay on DuckDB's reader: the trailer is found from the file's end
    and is the one line DuckDB cannot parse."""
    monkeypatch.setattr(extract, "read_jsonl_python", _no_careful_reader)
    path = landing / "policy_servicing.jsonl"
    path.write_bytes(SERVICING.read_bytes() + b"\n  \nTRAILER|4\r\n\n")
    mapping = declaring("servicing", trailer=TRAILER)
    result = extract_source(mapping, landing, run)
    assert (result.rows_read, result.malformed_rows, result.declared_rows) == (
        4, 0, {"policy_servicing.jsonl": 4})
    raw = pq.read_table(run.raw_dir / "servicing.parquet")
    assert raw.num_rows == 4 and raw["record_id"].null_count == 0

    path.write_bytes(SERVICING.read_bytes() + b"TRAILER|5\n")
    err = rejection(mapping, landing, run)
    assert err.rule == "declared_row_count"
    assert "declares 5 data rows (trailer, the last line) but 4 were read" in str(err)
    assert "non-blank lines, malformed ones included, the trailer not counted" in str(err)


@pytest.mark.parametrize("declared, error", [(5, None), (4, "1 row more than declared")])
def test_a_jsonl_trailer_after_a_broken_line_is_held_back_by_the_careful_reader(
        landing, run, declared, error):
    lines = SERVICING.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(2, '{"record_id": "SV-9", "name": "cut off\n')
    (landing / "policy_servicing.jsonl").write_text(
        "".join(lines) + f"TRAILER|{declared}\n", encoding="utf-8")
    mapping = declaring("servicing", trailer=TRAILER)
    if error is None:
        result = extract_source(mapping, landing, run)
        assert (result.rows_read, result.malformed_rows) == (5, 1)
    else:
        err = rejection(mapping, landing, run)
        assert "declares 4 data rows (trailer line 6) but 5 were read" in str(err)
        assert error in str(err)


@pytest.mark.parametrize("last_line_bytes", [40, 300_000])  # beyond the 64 KiB read from the end
def test_a_jsonl_without_its_trailer_keeps_every_line_as_data(landing, run, last_line_bytes):
    obj = json.loads(SERVICING.read_text(encoding="utf-8").splitlines()[0])
    long_last = json.dumps({**obj, "record_id": "SV-LONG", "notes": "x" * last_line_bytes})
    (landing / "policy_servicing.jsonl").write_text(
        SERVICING.read_text(encoding="utf-8") + long_last + "\n", encoding="utf-8")
    err = rejection(declaring("servicing", trailer=TRAILER), landing, run)
    assert err.rule == "declared_row_count" and "its last line (line 5)" in str(err)
    assert "SV-LONG" not in str(err)


def test_erasure_keeps_the_trailer_and_the_declared_count_reconciles(tmp_path, monkeypatch):
    """Rows an erasure removed from the landed file count as read (its sidecar says how many),
    and the trailer survives the rewrite, so the count still matches on every later rerun."""
    monkeypatch.setenv("UCV_HOME", str(tmp_path))
    landing = tmp_path / "landing" / "2026-11-22"
    landing.mkdir(parents=True)
    path = landing / "sales_leads.csv"
    shutil.copy(CLEAN_SALES, path)
    append(path, "TRAILER|30\n")
    tombstone.add_tombstones([("record", "sales:L00000002"), ("record", "sales:L00000007")])
    mapping = declaring("sales", trailer=TRAILER)
    run = RunPaths.for_run("2026-11-22", base=tmp_path / "runs")
    first = extract_source(mapping, landing, run)
    assert (first.rows_read, first.erased_rows, first.declared_rows) == (
        30, 2, {"sales_leads.csv": 30})
    assert path.read_text(encoding="utf-8").endswith("\nTRAILER|30\n")
    again = extract_source(mapping, landing, run)  # the file now holds 28 rows + sidecar 2
    assert (again.rows_read, again.erased_rows) == (30, 2)

    path.write_text(path.read_text(encoding="utf-8").replace("TRAILER|30", "TRAILER|31"),
                    encoding="utf-8")
    err = rejection(mapping, landing, run)
    assert "2 of them removed from the landed file by an earlier erasure" in str(err)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_erasure_after_a_broken_line_removes_the_erased_row_and_keeps_the_trailer(
        tmp_path, monkeypatch, fmt):
    """Redaction numbers rows as extract does: a quote left open on line 4 that runs to line 7
    (four malformed rows, CSV), an undecodable line a quarantine policy keeps (JSON Lines), the
    trailer no row; so the erased row is the one removed, every other line keeps its bytes, and
    the declared count reconciles on every rerun."""
    monkeypatch.setenv("UCV_HOME", str(tmp_path))
    landing = tmp_path / "landing" / "2026-11-22"
    landing.mkdir(parents=True)
    if fmt == "csv":
        path, mapping = landing / "sales_leads.csv", declaring("sales", trailer=TRAILER)
        lines = CLEAN_SALES.read_bytes().splitlines(keepends=True)
        lines[3] = lines[3].replace(b",Bill,", b',"Bill,', 1)
        lines[6] = lines[6].replace("Hauptstraße".encode(), 'Haupt"straße'.encode(), 1)
        lines.append(b"TRAILER|30\n")
        key, erased, declared = ("record", "sales:L00000010"), 10, 30
    else:
        path = landing / "policy_servicing.jsonl"
        mapping = dataclasses.replace(declaring("servicing", trailer=TRAILER),
                                      on_bad_line="quarantine")
        lines = SERVICING.read_bytes().splitlines(keepends=True)
        lines[1] = lines[1][:20] + b"\xff" + lines[1][20:]
        lines.append(b"TRAILER|4\n")
        key, erased, declared = ("record", "servicing:SV-00000003"), 2, 4
    path.write_bytes(b"".join(lines))
    tombstone.add_tombstones([key])
    run = RunPaths.for_run("2026-11-22", base=tmp_path / "runs")

    first = extract_source(mapping, landing, run)

    assert (first.rows_read, first.erased_rows, first.declared_rows) == (
        declared, 1, {path.name: declared})
    assert path.read_bytes() == b"".join(lines[:erased] + lines[erased + 1:])
    again = extract_source(mapping, landing, run)
    assert (again.rows_read, again.erased_rows, again.declared_rows) == (
        declared, 1, {path.name: declared})


# --------------------------------------------------------------------------------------------
# Control files


@pytest.mark.parametrize("template, name, text, pattern", [
    ("{file}.ctl", "sales_leads.csv.ctl", "rows=30\n", r"rows=(\d+)"),
    ("{file}.ctl", "sales_leads.csv.ctl", "file=sales_leads.csv\nrows=30\ndate=2026-11-22\n",
     r"(?m)^rows=(\d+)$"),
    ("{stem}.done", "sales_leads.done", "30\n", None),
    ("{stem}.done", "sales_leads.done", "\ufeff 30 \r\n", None),
])
def test_a_control_file_with_the_right_count_passes(landing, run, template, name, text, pattern):
    (landing / name).write_text(text, encoding="utf-8")
    mapping = declaring("sales", control_file=template, pattern=pattern)
    result = extract_source(mapping, landing, run)
    assert (result.files, result.rows_read) == (["sales_leads.csv"], 30)
    assert result.declared_rows == {"sales_leads.csv": 30}


def test_a_control_file_the_file_pattern_matches_too_is_not_read_as_data(landing, run):
    (landing / "sales_leads.csv.ctl").write_text("rows=30\n", encoding="utf-8")
    mapping = dataclasses.replace(declaring("sales", control_file="{file}.ctl",
                                            pattern=r"rows=(\d+)"), file_pattern="sales_leads*")
    assert extract_source(mapping, landing, run).files == ["sales_leads.csv"]
    plain = dataclasses.replace(mapping, declared_rows=None)
    assert extract_source(plain, landing, run).files == ["sales_leads.csv", "sales_leads.csv.ctl"]


@pytest.mark.parametrize("text, words", [
    ("rows=29\n", "declares 29 data rows (control file sales_leads.csv.ctl) but 30 were read"),
    ("rows=\n", "with no row count: nothing in it matches 'rows=(\\d+)' with a number in"),
    ("count: 30\n", "with no row count"),
])
def test_a_control_file_that_disagrees_or_holds_no_count_is_refused(landing, run, text, words):
    (landing / "sales_leads.csv.ctl").write_text(text, encoding="utf-8")
    err = rejection(declaring("sales", control_file="{file}.ctl", pattern=r"rows=(\d+)"),
                    landing, run)
    assert (err.rule, err.file) == ("declared_row_count", "sales_leads.csv")
    assert words in str(err)


def test_a_missing_control_file_is_a_declared_row_count_failure(landing, run):
    err = rejection(declaring("sales", control_file="{stem}.done"), landing, run)
    assert (err.rule, err.file) == ("declared_row_count", "sales_leads.csv")
    assert "has no control file sales_leads.done beside it" in str(err)
    assert "'{stem}.done'" in str(err)


def test_a_control_file_that_is_a_symlink_is_refused(landing, run, tmp_path):
    outside = tmp_path / "count.txt"
    outside.write_text("30\n", encoding="utf-8")
    (landing / "sales_leads.done").symlink_to(outside)
    err = rejection(declaring("sales", control_file="{stem}.done"), landing, run)
    assert (err.rule, err.file) == ("no_symlink", "sales_leads.done")


def test_a_parquet_export_is_checked_against_its_control_file(landing, run):
    pq.write_table(pa.table({"application_no": ["U1", "U2", "U3"], "email": ["a", None, "c"]}),
                   landing / "underwriting_applications_1.parquet")
    (landing / "underwriting_applications_1.parquet.ctl").write_text("3", encoding="utf-8")
    mapping = declaring("underwriting", control_file="{file}.ctl")
    assert extract_source(mapping, landing, run).declared_rows == {
        "underwriting_applications_1.parquet": 3}
    (landing / "underwriting_applications_1.parquet.ctl").write_text("4", encoding="utf-8")
    err = rejection(mapping, landing, run)
    assert "declares 4 data rows (control file underwriting_applications_1.parquet.ctl) but 3" \
        in str(err)


def test_every_file_of_a_source_is_checked_and_every_failure_named(landing, run):
    shutil.copy(landing / "sales_leads.csv", landing / "sales_leads_2.csv")
    append(landing / "sales_leads.csv", "TRAILER|30\n")
    append(landing / "sales_leads_2.csv", "TRAILER|300\n")
    err = rejection(declaring("sales", trailer=TRAILER), landing, run)
    assert err.file == "sales_leads_2.csv" and "declares 300" in str(err)
    (landing / "sales_leads.csv").write_bytes(CLEAN_SALES.read_bytes())
    err = rejection(declaring("sales", trailer=TRAILER), landing, run)
    assert err.file == "sales_leads.csv" and "sales_leads.csv has no trailer" in str(err)
    assert "Also sales_leads_2.csv declares 300" in str(err)


def test_the_landing_sensor_waits_for_the_control_file(tmp_path, monkeypatch):
    """A control file is often written last, as the export's "done" marker: until it is there
    the source has not landed, and the control file itself is no data file."""
    mapping = dataclasses.replace(declaring("sales", control_file="{file}.done"),
                                  file_pattern="sales_leads*")
    monkeypatch.setattr("pipelines.ingest.load_mappings", lambda: {"sales": mapping})
    landing = tmp_path / "landing"
    landing.mkdir()
    shutil.copy(CLEAN_SALES, landing / "sales_leads.csv")
    assert check_landing(date(2026, 11, 22), landing).missing == ["sales"]
    (landing / "sales_leads.csv.done").write_text("30\n", encoding="utf-8")
    assert check_landing(date(2026, 11, 22), landing).landed == {"sales": 1}


# --------------------------------------------------------------------------------------------
# A mapping of a new user's own


def two_column_mapping(tmp_path: Path, declared: str):
    """A semicolon export of two columns, mapped from scratch (suite with no row rules)."""
    from pipelines.ingest import load_mapping

    (tmp_path / "landing").mkdir(exist_ok=True)
    (tmp_path / "expectations").mkdir(exist_ok=True)
    (tmp_path / "expectations" / "holders.json").write_text(
        '{"name": "holders", "expectations": []}', encoding="utf-8")
    path = tmp_path / "holders.yaml"
    path.write_text("source: holders\nfile_pattern: 'holders_*.csv'\nformat: csv\n"
                    "delimiter: ';'\nnative_key: holder_id\ncolumns: [holder_id, holder_name]\n"
                    "name: {style: full, full: holder_name}\n" + declared, encoding="utf-8")
    return load_mapping(path, tmp_path / "expectations")
