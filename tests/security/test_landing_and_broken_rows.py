"""Landing and broken rows (issue 15, findings 4 and 8).

Extract reads only regular files inside the landing folder (a `..` pattern, an absolute pattern
or a symlink is refused, naming the file and the rule). An unbalanced quote that swallows the next
rows, an undecodable byte and a malformed JSON line are quarantined line by line with their line
numbers (or stop the source, as `on_bad_line` says); rows read = accepted + quarantined.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.ingest import SourceRejected, extract_source, ingest, load_mappings
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


@pytest.mark.xfail(strict=True, reason="mapping helper: absolute / '..' file_pattern checks at "
                                       "mapping load are not on main yet")
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
