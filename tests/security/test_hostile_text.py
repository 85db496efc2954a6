"""Hostile text in exports and mappings (issue 15, findings 7 and 8): control characters never
reach canonical or golden text, over-long fields are quarantined with a reason, every regex run on
input is linear-time (1 MB values), and a mapping with a nonsensical delimiter or a regex open to
catastrophic backtracking does not pass the mapping check unnoticed.

The features are the mapping helper's (standardize, mapping load); these tests hold them to it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipelines.ingest import ingest, load_mappings, standardize_frame
from pipelines.ingest.errors import MappingError
from pipelines.ingest.mapping import load_mapping
from pipelines.settings import EXPECTATIONS_DIR, PROJECT_ROOT, RunPaths

FIXTURES = Path(__file__).parent.parent / "fixtures"
CLEAN_SALES = FIXTURES / "broken" / "phone_in_email" / "sales_leads.csv"  # 30 good rows
MAPPINGS = load_mappings()
CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
NOT_YET = "mapping helper: {} is not on main yet"


def _sales_rows(n: int = 2) -> pd.DataFrame:
    return pd.read_csv(CLEAN_SALES, dtype=str, keep_default_na=False).head(n)


def _control_characters(frame: pd.DataFrame) -> list[str]:
    return [f"{column}={value!r}" for column in frame.columns for value in frame[column]
            if isinstance(value, str) and CONTROL.search(value)]


def test_control_characters_never_reach_canonical_text():
    rows = _sales_rows()
    rows.loc[0, ["first_name", "last_name", "street_address", "city"]] = [
        "An\tna\x00", "Smith\r\nEvil", "Haupt\x1bstraße 1", "Ber\x07lin"]
    rows.loc[1, ["lead_type", "company_name"]] = ["company", "Acme\u2028 GmbH\x0b"]
    canonical = standardize_frame(MAPPINGS["sales"], rows, "2026-03-15")
    assert _control_characters(canonical) == []
    assert canonical.loc[0, "given_name"].startswith("An") and "Smith" in canonical.loc[0, "family_name"]


@pytest.mark.slow
def test_golden_records_of_a_whole_run_hold_no_control_characters(canary_run):
    customers = pq.read_table(canary_run.run.golden_dir / "customers.parquet").to_pandas()
    text = customers[[c for c in customers.columns if customers[c].dtype == object]]
    assert canary_run.control_cells > 0
    assert _control_characters(text.map(lambda v: v if isinstance(v, str) else None)) == []


def test_an_over_long_field_is_quarantined_with_a_reason(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    rows = _sales_rows(30)
    rows.loc[3, "street_address"] = "Hauptstraße " + "9" * 100_000
    rows.loc[7, "first_name"] = "A" * 100_000
    rows.to_csv(landing / "sales_leads.csv", index=False)
    run = RunPaths.for_run("2026-03-15", base=tmp_path / "runs").ensure()
    mapping = MAPPINGS["sales"]
    relaxed = dataclasses.replace(mapping, validation=dataclasses.replace(
        mapping.validation, max_bad_row_share=0.5))
    counts = ingest(landing, run, {"sales": relaxed}).sources["sales"]
    assert counts.rows_read == counts.rows_accepted + counts.rows_quarantined == 30
    bad = pq.read_table(run.quarantine_dir / "sales.parquet").to_pylist()
    assert sorted(json.loads(b["raw"])["lead_id"] for b in bad) == ["L00000004", "L00000008"]
    assert all(any("length" in c or "long" in c for c in b["failed_checks"]) for b in bad)


# One process per probe, killed at its time budget: a quadratic regex on 1 MB would run for hours.
# A value slower than 5 s at 1 MB is timed again at 250 KB: linear work grows 4x, quadratic 16x.
REGEX_PROBE = textwrap.dedent("""
    import sys, time
    import pandas as pd
    from pipelines.ingest import load_mappings, standardize_frame
    mapping = load_mappings()["sales"]
    base = pd.read_csv(sys.argv[1], dtype=str, keep_default_na=False).head(1)
    warm = base.copy()
    warm["street_address"] = "北京市朝阳区建国路88号"
    standardize_frame(mapping, pd.concat([base, warm]), "2026-03-15")  # load lookups first

    def seconds(column, unit, size):
        row = base.copy()
        row[column] = (unit * (size // len(unit.encode())))[:size]
        started = time.perf_counter()
        standardize_frame(mapping, row, "2026-03-15")
        return time.perf_counter() - started

    for column in ("street_address", "first_name", "email", "mobile", "city", "zip"):
        for unit in ("1", "a1 ", "1-", "路1", "a.", "+1 "):
            big = seconds(column, unit, 1_000_000)
            small = seconds(column, unit, 250_000) if big > 5 else big / 4
            print(column, repr(unit), round(big, 2), round(big / max(small, 1e-3), 1), flush=True)
""")


@pytest.mark.slow
def test_every_input_regex_is_linear_time_on_1_mb_values():
    try:
        result = subprocess.run([sys.executable, "-c", REGEX_PROBE, str(CLEAN_SALES)],
                                capture_output=True, text=True, timeout=480, cwd=PROJECT_ROOT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"standardizing 1 MB values took over 480 s; last done: "
                    f"{(exc.stdout or b'').decode()[-300:]}")
    assert result.returncode == 0, result.stderr[-2000:]
    timings = [line.rsplit(" ", 2)[1:] for line in result.stdout.splitlines()]
    assert len(timings) == 36, result.stdout
    # seconds for 1 MB stay bounded, and 4x the input never costs more than 8x the time
    assert all(float(t) < 90 and float(growth) < 8 for t, growth in timings), result.stdout


def _mapping_copy(tmp_path: Path, source: str, old: str, new: str) -> Path:
    path = tmp_path / f"{source}.yaml"
    text = MAPPINGS[source].file.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


@pytest.mark.parametrize("delimiter", ["5", "a", '"\\n"', '"\\""'])
def test_a_nonsensical_delimiter_is_refused_at_mapping_load(tmp_path, delimiter):
    path = _mapping_copy(tmp_path, "sales", 'delimiter: ","', f"delimiter: {delimiter}")
    with pytest.raises(MappingError) as err:
        load_mapping(path, EXPECTATIONS_DIR)
    assert "delimiter" in str(err.value)


REDOS_PROBE = textwrap.dedent("""
    import json, sys
    import pandas as pd
    from pipelines.ingest.mapping import load_mapping
    from pipelines.ingest import standardize_frame
    from pipelines.settings import EXPECTATIONS_DIR
    try:
        mapping = load_mapping(sys.argv[1], EXPECTATIONS_DIR)
    except Exception as exc:
        print("REFUSED", type(exc).__name__, exc)
        sys.exit(0)
    record = json.loads(open(sys.argv[2], encoding="utf-8").readline())
    record.update(party_kind="legal", name="Aaaa Trading GmbH", id_number="A" * 36 + "!")
    standardize_frame(mapping, pd.DataFrame([record]), "2026-03-15")
    print("LINEAR")
""")


def test_a_catastrophic_backtracking_pattern_is_refused_or_harmless(tmp_path):
    pattern = 'pattern: "HR[AB] [0-9]{1,6}(?: [A-Z]{1,2})?"'
    path = _mapping_copy(tmp_path, "servicing", pattern, 'pattern: "(A+)+$"')
    shutil.copy(FIXTURES / "exports" / "policy_servicing.jsonl", tmp_path / "servicing.jsonl")
    try:
        result = subprocess.run([sys.executable, "-c", REDOS_PROBE, str(path),
                                 str(tmp_path / "servicing.jsonl")], capture_output=True,
                                text=True, timeout=60, cwd=PROJECT_ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail("a mapping with the pattern (A+)+$ was accepted and hangs on 'AAAA…!'")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(("REFUSED MappingError", "LINEAR")), result.stdout
