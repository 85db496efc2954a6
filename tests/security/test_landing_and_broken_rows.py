"""Landing and broken rows (issue 15, findings 4 and 8).

Extract reads only regular files inside the landing folder (a `..` pattern, an absolute pattern,
a symlink or a FIFO is refused, naming the file and the rule), and opens each without following a
link and checks what it opened, so a file swapped after the check is refused too. An unbalanced quote that swallows the next
rows, an undecodable byte and a malformed JSON line are quarantined line by line with their line
numbers (or stop the source, as `on_bad_line` says); rows read = accepted + quarantined.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import fileio
from pipelines.identify import tombstone
from pipelines.ingest import SourceRejected, extract, extract_source, ingest, load_mappings
from pipelines.ingest.errors import MappingError
from pipelines.ingest.mapping import load_mapping
from pipelines.settings import RunPaths

EXPORTS = Path(__file__).parent.parent / "fixtures" / "exports"
CLEAN_SALES = EXPORTS.parent / "broken" / "phone_in_email" / "sales_leads.csv"  # 30 good rows
MAPPINGS = load_mappings()
SECRET = "fernet_key = c2VjcmV0LXNob3VsZC1uZXZlci1sZWF2ZQ=="


@pytest.fixture
def run(tmp_path: Path) -> RunPaths:
    return RunPaths.for_run("2026-03-15", base=tmp_path / "runs").ensure()


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    folder = tmp_path / "landing"
    folder.mkdir()
    shutil.copy(CLEAN_SALES, folder / "sales_leads.csv")
    shutil.copy(EXPORTS / "policy_servicing.jsonl", folder / "policy_servicing.jsonl")
    return folder


@pytest.fixture
def secret_outside(tmp_path: Path) -> Path:
    """A private file beside the landing folder, shaped like a CSV export (airflow.cfg-like)."""
    folder = tmp_path / "airflow"
    folder.mkdir()
    path = folder / "sales_leads_secret.csv"
    path.write_text(f"lead_id\n{SECRET}\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def relaxed(source: str, **changes) -> object:
    mapping = MAPPINGS[source]
    validation = dataclasses.replace(mapping.validation, max_bad_row_share=0.5)
    return dataclasses.replace(mapping, validation=validation, **changes)


def _raw_text(run: RunPaths, source: str) -> str:
    path = run.raw_dir / f"{source}.parquet"
    return json.dumps(pq.read_table(path).to_pylist()) if path.exists() else ""


# --------------------------------------------------------------------------------------------
# Landing paths


def test_a_dotdot_pattern_is_refused_at_extract(landing, run, secret_outside):
    mapping = relaxed("sales", file_pattern="../airflow/sales_leads*.csv")
    with pytest.raises(SourceRejected) as err:
        extract_source(mapping, landing, run)
    assert err.value.rule == "landing_path" and "outside the landing folder" in str(err.value)
    assert "sales_leads_secret.csv" in str(err.value)
    assert "c2VjcmV0" not in _raw_text(run, "sales")


def test_a_symlink_in_the_landing_folder_is_refused(landing, run, secret_outside):
    (landing / "sales_leads_2.csv").symlink_to(secret_outside)
    with pytest.raises(SourceRejected) as err:
        extract_source(MAPPINGS["sales"], landing, run)
    assert (err.value.rule, err.value.file) == ("no_symlink", "sales_leads_2.csv")
    assert "c2VjcmV0" not in _raw_text(run, "sales")


def test_a_symlink_to_a_file_inside_the_landing_folder_is_refused_too(landing, run):
    (landing / "sales_leads_copy.csv").symlink_to(landing / "sales_leads.csv")
    with pytest.raises(SourceRejected) as err:
        extract_source(MAPPINGS["sales"], landing, run)
    assert err.value.rule == "no_symlink"


def test_a_symlinked_subfolder_is_refused(landing, run, secret_outside):
    (landing / "more").symlink_to(secret_outside.parent, target_is_directory=True)
    mapping = relaxed("sales", file_pattern="*/sales_leads*.csv")
    with pytest.raises(SourceRejected) as err:
        extract_source(mapping, landing, run)
    assert err.value.rule == "no_symlink" and "more" in err.value.file


def test_an_absolute_pattern_is_refused_with_one_clear_error(landing, run, secret_outside):
    mapping = relaxed("sales", file_pattern=str(secret_outside))
    with pytest.raises(SourceRejected) as err:
        extract_source(mapping, landing, run)
    assert err.value.rule == "landing_path"


def test_a_landing_folder_that_is_itself_a_symlink_is_fine(landing, run, tmp_path):
    linked = tmp_path / "landing_link"
    linked.symlink_to(landing, target_is_directory=True)
    assert extract_source(MAPPINGS["sales"], linked, run).rows_read == 30


@pytest.mark.parametrize("pattern", ["../airflow/*.csv", "/etc/passw*", "sub/../../x*.csv"])
def test_absolute_and_dotdot_patterns_are_refused_at_mapping_load(pattern, tmp_path):
    """Owned by the mapping helper (mapping-load checks); extract refuses them regardless."""
    source = MAPPINGS["sales"].file
    text = source.read_text(encoding="utf-8").replace('file_pattern: "sales_leads*.csv"',
                                                      f'file_pattern: "{pattern}"')
    path = tmp_path / "sales.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError) as err:
        load_mapping(path, source.parent.parent.parent / "expectations")
    assert "file_pattern" in str(err.value)


# --------------------------------------------------------------------------------------------
# Swapped after the check: every landed file is opened O_NOFOLLOW and must be a regular file


@pytest.fixture
def no_hang():
    """Fail (instead of hanging the suite) if a FIFO is ever opened or read as a file."""
    def hung(signum, frame):
        raise TimeoutError("a FIFO was opened or read as a landed file")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _swapping_after_listing(monkeypatch, swap) -> None:
    """`find_landed_files` returns its checked list, then `swap` changes the landing folder:
    the race between the check and the read, made certain."""
    listed = extract.find_landed_files

    def find_then_swap(mapping, landing_dir):
        files = listed(mapping, landing_dir)
        swap(Path(landing_dir))
        return files

    monkeypatch.setattr(extract, "find_landed_files", find_then_swap)


def _to_link(path: Path, target: Path) -> None:
    path.unlink()
    path.symlink_to(target)


def test_a_symlink_swapped_in_after_the_check_is_refused_when_opened(landing, run, monkeypatch,
                                                                     secret_outside):
    _swapping_after_listing(monkeypatch, lambda folder: _to_link(folder / "sales_leads.csv",
                                                                 secret_outside))
    with pytest.raises(SourceRejected) as err:
        extract_source(MAPPINGS["sales"], landing, run)
    assert (err.value.rule, err.value.file) == ("no_symlink", "sales_leads.csv")
    assert "seen when it was opened" in str(err.value) and "Traceback" not in str(err.value)
    assert "c2VjcmV0" not in _raw_text(run, "sales")


@pytest.mark.parametrize("source, name", [("servicing", "policy_servicing.jsonl"),
                                          ("underwriting", "underwriting_applications.parquet")])
def test_jsonl_and_parquet_readers_open_without_following_links_too(landing, run, monkeypatch,
                                                                    tmp_path, source, name):
    target = tmp_path / f"elsewhere_{name}"
    if name.endswith(".parquet"):
        pq.write_table(pa.table({"application_no": [SECRET]}), landing / name)
        shutil.copy(landing / name, target)
    else:
        shutil.copy(landing / name, target)
    _swapping_after_listing(monkeypatch, lambda folder: _to_link(folder / name, target))
    with pytest.raises(SourceRejected) as err:
        extract_source(MAPPINGS[source], landing, run)
    assert (err.value.rule, err.value.file) == ("no_symlink", name)


def test_a_subfolder_swapped_for_a_link_after_the_check_is_refused(landing, run, monkeypatch,
                                                                  secret_outside):
    (landing / "more").mkdir()
    shutil.copy(CLEAN_SALES, landing / "more" / "sales_leads_secret.csv")
    mapping = relaxed("sales", file_pattern="more/sales_leads*.csv")

    def swap(folder: Path) -> None:
        shutil.rmtree(folder / "more")
        (folder / "more").symlink_to(secret_outside.parent, target_is_directory=True)

    _swapping_after_listing(monkeypatch, swap)
    with pytest.raises(SourceRejected) as err:
        extract_source(mapping, landing, run)
    assert err.value.rule == "no_symlink" and "c2VjcmV0" not in _raw_text(run, "sales")


def test_a_fifo_in_the_landing_folder_is_refused_without_hanging(landing, run, no_hang):
    os.mkfifo(landing / "sales_leads_2.csv")
    with pytest.raises(SourceRejected) as err:
        extract_source(MAPPINGS["sales"], landing, run)
    assert (err.value.rule, err.value.file) == ("regular_file", "sales_leads_2.csv")
    assert "FIFO (named pipe), not a regular file" in str(err.value)


def test_a_fifo_swapped_in_after_the_check_is_refused_without_hanging(landing, run, monkeypatch,
                                                                      no_hang):
    def swap(folder: Path) -> None:
        (folder / "sales_leads.csv").unlink()
        os.mkfifo(folder / "sales_leads.csv")

    _swapping_after_listing(monkeypatch, swap)
    with pytest.raises(SourceRejected) as err:
        extract_source(MAPPINGS["sales"], landing, run)
    assert (err.value.rule, err.value.file) == ("regular_file", "sales_leads.csv")


def test_open_regular_names_what_it_refuses(tmp_path):
    with pytest.raises(fileio.NotRegularFile) as err:
        fileio.open_regular("/dev/null")
    assert err.value.rule == "regular_file" and "a character device" in str(err.value)
    with pytest.raises(fileio.NotRegularFile) as err:
        fileio.open_regular(tmp_path)
    assert "a folder" in str(err.value)
    (tmp_path / "f.csv").write_text("a\n")
    (tmp_path / "link.csv").symlink_to(tmp_path / "f.csv")
    with pytest.raises(fileio.NotRegularFile) as err:
        fileio.open_regular(tmp_path / "link.csv", tmp_path)
    assert err.value.rule == "no_symlink"
    with fileio.open_regular(tmp_path / "f.csv", tmp_path) as f:
        assert f.read() == b"a\n"


def test_a_cli_ingest_of_a_swapped_file_says_so_in_one_line(landing, run, monkeypatch,
                                                            secret_outside, capsys):
    from pipelines.cli import main

    monkeypatch.setenv("UCV_HOME", str(run.root.parent.parent))
    _swapping_after_listing(monkeypatch, lambda folder: _to_link(folder / "sales_leads.csv",
                                                                 secret_outside))
    code = main(["ingest", "--landing", str(landing), "--run-id", "2026-03-15",
                 "--source", "sales"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "rule no_symlink failed" in err and "sales_leads.csv" in err


def test_redaction_never_writes_through_a_link_planted_as_its_temporary_file(tmp_path,
                                                                             monkeypatch):
    """Erasure rewrites a landed file through `.<name>.redacting`: a link planted under that
    name must not make it overwrite what the link points to."""
    monkeypatch.setenv("UCV_HOME", str(tmp_path))
    folder = tmp_path / "landing" / "2026-03-15"
    folder.mkdir(parents=True)
    shutil.copy(CLEAN_SALES, folder / "sales_leads.csv")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (folder / ".sales_leads.csv.redacting").symlink_to(victim)
    (folder / ".sales_leads.csv.erased.json.tmp").symlink_to(victim)
    tombstone.add_tombstones([("record", "sales:L00000003")])
    result = extract_source(MAPPINGS["sales"], folder, RunPaths.for_run(
        "2026-03-15", base=tmp_path / "runs"))
    assert result.erased_rows == 1 and victim.read_text() == "keep me\n"
    assert "L00000003" not in (folder / "sales_leads.csv").read_text(encoding="utf-8")
    assert not (folder / "sales_leads.csv").is_symlink()


# --------------------------------------------------------------------------------------------
# Broken rows


def _sales_lines(landing: Path) -> list[str]:
    return (landing / "sales_leads.csv").read_text(encoding="utf-8").splitlines(keepends=True)


def _ingest_sales(landing: Path, run: RunPaths, **changes):
    result = ingest(landing, run, {"sales": relaxed("sales", **changes)})
    counts = result.sources["sales"]
    assert counts.rows_read == counts.rows_accepted + counts.rows_quarantined
    accepted = pq.read_table(run.accepted_dir / "sales.parquet").to_pylist()
    quarantine = pq.read_table(run.quarantine_dir / "sales.parquet").to_pylist()
    return counts, accepted, [json.loads(q["raw"]) for q in quarantine]


def test_an_unbalanced_quote_does_not_swallow_the_next_rows(landing, run):
    lines = _sales_lines(landing)
    # line 4 (data row 3) opens a quote on its first name and never closes it
    fields = lines[3].split(",")
    fields[4] = '"' + fields[4]
    lines[3] = ",".join(fields)
    # ... and the next quote in the file is on line 7, which closes the runaway field there
    lines[6] = lines[6].replace("Hauptstraße", 'Haupt"straße', 1)
    (landing / "sales_leads.csv").write_text("".join(lines), encoding="utf-8")
    counts, accepted, bad = _ingest_sales(landing, run)

    keys = {row["lead_id"] for row in accepted}
    assert not any("\n" in (row["first_name"] or "") for row in accepted), "two records merged"
    problems = [b["_malformed"] for b in bad]
    # lines 4-7 each quarantined on their own, each naming its line
    for number in (4, 5, 6, 7):
        assert any(f"line {number} quarantined" in p for p in problems), (number, problems)
    assert all("unbalanced quote" in p and "opened on line 4" in p for p in problems)
    assert len(bad) == 4 and counts.rows_read == 30 + 0 and len(keys) == 26
    assert {b["_extra_values"][0].split(",")[0] for b in bad} == {
        "L00000003", "L00000004", "L00000005", "L00000006"}


def test_an_unbalanced_quote_running_to_the_end_of_the_file_is_quarantined_per_line(landing, run):
    lines = _sales_lines(landing)
    lines[-5] = lines[-5].replace(",Y,", ',"Y,', 1)
    (landing / "sales_leads.csv").write_text("".join(lines), encoding="utf-8")
    counts, accepted, bad = _ingest_sales(landing, run)
    assert len(bad) == 5 and counts.rows_accepted == 25
    assert all("unbalanced quote" in b["_malformed"] for b in bad)
    assert [b["_malformed"].rsplit("line ", 1)[1].split()[0] for b in bad] == [
        str(n) for n in range(len(lines) - 4, len(lines) + 1)]


def test_legitimate_multi_line_notes_are_kept(landing, run):
    lines = _sales_lines(landing)
    fields = lines[2].rstrip("\n").split(",")
    fields[17] = '"called back,\nno answer\nwill retry"'
    lines[2] = ",".join(fields) + "\n"
    (landing / "sales_leads.csv").write_text("".join(lines), encoding="utf-8")
    counts, accepted, bad = _ingest_sales(landing, run)
    assert bad == [] and counts.rows_accepted == 30
    assert "called back,\nno answer\nwill retry" in {row["notes"] for row in accepted}


def _with_bad_byte(path: Path, line_index: int) -> int:
    """Put an invalid UTF-8 byte into one line; returns its byte offset."""
    data = path.read_bytes()
    starts = [0] + [i + 1 for i, b in enumerate(data) if b == 0x0A]
    offset = starts[line_index] + 3
    path.write_bytes(data[:offset] + b"\xff" + data[offset:])
    return offset


def test_an_undecodable_csv_line_stops_the_source_naming_line_and_offset(landing, run):
    offset = _with_bad_byte(landing / "sales_leads.csv", 5)
    with pytest.raises(SourceRejected) as err:
        extract_source(MAPPINGS["sales"], landing, run)  # on_bad_line: fail (the default)
    assert err.value.rule == "encoding"
    assert f"line 6, byte offset {offset}: bytes ff are not valid utf-8" in str(err.value)


def test_an_undecodable_csv_line_is_quarantined_when_the_source_allows(landing, run):
    _with_bad_byte(landing / "sales_leads.csv", 5)
    counts, accepted, bad = _ingest_sales(landing, run, on_bad_line="quarantine")
    assert (counts.rows_read, counts.rows_accepted, counts.rows_quarantined) == (30, 29, 1)
    assert "line 6" in bad[0]["_malformed"] and "bytes ff" in bad[0]["_malformed"]
    assert "\\xff" in bad[0]["_extra_values"][0]


def _servicing_lines(landing: Path) -> list[str]:
    return (landing / "policy_servicing.jsonl").read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("broken_line, reason", [
    ('{"record_id": "SV-9", "name": "cut off', "Unterminated string"),
    ("[1, 2, 3]", "not a JSON object"),
    ("EXTRA", "'fax' not in the mapping"),
    ("BYTE", "bytes ff are not valid utf-8"),
])
def test_one_bad_json_line_is_quarantined_with_its_line_number(landing, run, broken_line, reason):
    lines = _servicing_lines(landing)
    if broken_line == "EXTRA":
        obj = json.loads(lines[1])
        broken_line = json.dumps({**obj, "fax": "+49 30 1234567"})
    path = landing / "policy_servicing.jsonl"
    if broken_line == "BYTE":
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        _with_bad_byte(path, 2)
        expected_line = 3
    else:
        lines.insert(2, broken_line)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        expected_line = 3
    mapping = relaxed("servicing", on_bad_line="quarantine")
    result = ingest(landing, run, {"servicing": mapping})
    counts = result.sources["servicing"]
    assert counts.rows_read == counts.rows_accepted + counts.rows_quarantined
    assert counts.rows_quarantined == 1
    bad = json.loads(pq.read_table(run.quarantine_dir / "servicing.parquet")["raw"][0].as_py())
    assert f"JSON line {expected_line}" in bad["_malformed"] and reason in bad["_malformed"]
    if broken_line != "BYTE":
        assert "fax" not in pq.read_table(run.accepted_dir / "servicing.parquet").column_names


def test_one_bad_json_line_stops_the_source_when_the_policy_is_fail(landing, run):
    lines = _servicing_lines(landing)
    lines.insert(1, json.dumps({**json.loads(lines[1]), "fax": "1"}))
    (landing / "policy_servicing.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(SourceRejected) as err:
        extract_source(relaxed("servicing", on_bad_line="fail"), landing, run)
    assert err.value.rule == "malformed_line" and "JSON line 2" in str(err.value)


def test_a_new_key_in_every_line_is_still_a_schema_drift(landing, run):
    lines = [json.dumps({**json.loads(ln), "fax": "1"}) for ln in _servicing_lines(landing)]
    (landing / "policy_servicing.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(SourceRejected) as err:
        ingest(landing, run, {"servicing": relaxed("servicing", on_bad_line="quarantine")})
    assert err.value.rule == "unexpected_columns" and err.value.column == "fax"


def test_an_unknown_on_bad_line_policy_is_refused_at_mapping_load(tmp_path):
    source = MAPPINGS["sales"].file
    path = tmp_path / "sales.yaml"
    path.write_text(source.read_text(encoding="utf-8") + "on_bad_line: skip\n", encoding="utf-8")
    with pytest.raises(MappingError) as err:
        load_mapping(path, source.parent.parent.parent / "expectations")
    assert "on_bad_line" in str(err.value)


def test_a_cp1252_semicolon_crlf_export_with_both_faults_loses_no_line(tmp_path, run):
    """A differently shaped export: cp1252, ';', CRLF; an unbalanced quote and a bad byte."""
    mapping = relaxed("sales", encoding="cp1252", delimiter=";", on_bad_line="quarantine")
    rows = [";".join([f"L{i:08d}", "2026-03-14 09:12:55", "web", "person", "Jörg", f"Müller{i}",
                      "", "a@b.de", "", "", "Straße 1", "10115", "Köln", "DE", "01.02.1980",
                      "MOTOR", "Y", "", "2026-03-15 10:00:00"]) for i in range(1, 9)]
    rows[2] = rows[2].replace(";Jörg;", ';"Jörg;')  # data row 3 = line 4 opens a quote
    text = ";".join(mapping.columns) + "\r\n" + "\r\n".join(rows) + "\r\n"
    landing = tmp_path / "cp1252"
    landing.mkdir()
    data = text.encode("cp1252").replace(b"M\xfcller6", b"M\x81ller6")  # 0x81: undefined
    (landing / "sales_leads.csv").write_bytes(data)
    result = extract_source(mapping, landing, run)
    raw = pq.read_table(result.raw_path).to_pylist()
    assert result.rows_read == 8 and result.malformed_rows == 6
    assert [r["lead_id"] for r in raw[:2]] == ["L00000001", "L00000002"]
    assert [r["_malformed"].split("line ")[-1].split()[0] for r in raw[2:]] == [
        "4", "5", "6", "7", "8", "9"]
    assert "bytes 81 are not valid cp1252" in raw[5]["_malformed"]
