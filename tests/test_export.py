"""Marketing export: who is in it, its files and manifest, and CSV cells that stay inert."""

from __future__ import annotations

import csv
import hashlib
import json
import tempfile
from datetime import date
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.golden import build_golden, export_marketing
from pipelines.golden.export import FORMULA_TRIGGERS, inert_cell, write_safe_csv
from pipelines.golden.testing import record, small_portfolio, write_run_inputs
from pipelines.settings import RunPaths

EXPORT_DATE = date(2026, 11, 22)
# OWASP "CSV Injection" payloads, plus the cases the page warns about
OWASP_PAYLOADS = [
    "=1+2", "=1+2\";=1+2", "=1+2'\" ;,=1+2", "+1+2", "-1+2", "@SUM(1+2)",
    "=cmd|' /C calc'!A0", "=HYPERLINK(\"http://evil.example\",\"click\")",
    "@@SUM(1+1)*cmd|' /C calc'!A0", "\t=1+2", "\r=1+2", "\n=1+2", "＝1+2", "+49 151 2345678",
    "a,b", "say \"hi\"", "line1\nline2", "'already quoted",
]


def read_csv_cells(path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    run = small_portfolio(RunPaths.for_run("2026-11-22", base=base / "runs"))
    build_golden(run, EXPORT_DATE)
    return run, export_marketing(run, EXPORT_DATE, base / "export")


def test_only_consenting_customers_above_the_threshold(exported):
    run, path = exported
    with duckdb.connect() as con:
        ids = [r[0] for r in con.execute(f"SELECT customer_id FROM '{path}'").fetchall()]
        expected = [r[0] for r in con.execute(f"""
            SELECT customer_id FROM '{run.golden_dir}/customers.parquet'
            WHERE marketing_consent AND confidence >= 0.9 ORDER BY customer_id""").fetchall()]
    # C2 withdrew, C4/C5 (p=0.25 of being one person) are not certain enough
    assert ids == expected == ["C1", "C3"]


def test_a_lower_threshold_lets_uncertain_customers_in(exported, tmp_path):
    run, _ = exported
    path = export_marketing(run, EXPORT_DATE, tmp_path, min_confidence=0.7)
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert manifest["row_count"] == 4 and manifest["min_confidence"] == 0.7


def test_files_are_dated_and_the_manifest_checks_them(exported):
    run, path = exported
    folder = path.parent
    assert folder.name == "2026-11-22" and path.name == "marketing_customers_2026-11-22.parquet"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["run_id"] == run.run_id and manifest["min_confidence"] == 0.9
    assert manifest["row_count"] == 2
    assert set(manifest["files"]) == {"marketing_customers_2026-11-22.parquet",
                                      "marketing_customers_2026-11-22.csv"}
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == entry["sha256"]
    rows = read_csv_cells(folder / "marketing_customers_2026-11-22.csv")
    assert rows[0] == manifest["columns"] and len(rows) == 1 + manifest["row_count"]
    assert not list(folder.glob(".*"))


def test_contact_fields_are_standardized_and_phones_are_escaped_only_in_csv(exported):
    _, path = exported
    with duckdb.connect() as con:
        phone = con.execute(f"SELECT phone_mobile FROM '{path}' WHERE customer_id = 'C1'"
                            ).fetchall()[0][0]
    assert phone == "+491512345678"  # Parquet: E.164 as is
    header, *rows = read_csv_cells(path.with_suffix(".csv"))
    c1 = dict(zip(header, rows[0], strict=True))
    assert c1["phone_mobile"] == "'+491512345678"  # CSV: OWASP prefix, shown as +49... in Excel
    assert c1["display_name"] == "Thomas Müller" and c1["email"] == "tom@example.de"


def test_hostile_golden_values_come_out_inert(tmp_path):
    """OWASP's payloads as names, e-mails and streets go through the whole export."""
    records, customer_of = [], {}
    for i, payload in enumerate(OWASP_PAYLOADS):
        rid = f"servicing:{i}"
        records.append(record(rid, given_name=payload, family_name=payload, street=payload,
                              city="x" + payload, email=payload, marketing_consent=True))
        customer_of[rid] = f"C{i:02d}"
    run = write_run_inputs(RunPaths.for_run("2026-11-22", base=tmp_path), records, customer_of)
    build_golden(run, EXPORT_DATE)
    path = export_marketing(run, EXPORT_DATE, tmp_path / "export")
    header, *rows = read_csv_cells(path.with_suffix(".csv"))
    assert len(rows) == len(OWASP_PAYLOADS)
    for row in rows:
        assert not any(cell[:1] in FORMULA_TRIGGERS for cell in row if cell), row
    by_id = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    for i, payload in enumerate(OWASP_PAYLOADS):
        assert by_id[f"C{i:02d}"]["street"] == inert_cell(payload)
        assert by_id[f"C{i:02d}"]["street"].removeprefix("'") in (payload, payload[1:])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s),
                min_size=1, max_size=40))
def test_any_text_comes_out_inert_and_recoverable(texts):
    with duckdb.connect() as con:
        con.execute("CREATE TABLE t (i INTEGER, v VARCHAR)")
        con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(texts)))
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "t.csv"
            write_safe_csv(con, "SELECT v FROM t ORDER BY i", path)
            cells = [row[0] for row in read_csv_cells(path)[1:]]
    assert cells == [inert_cell(t) for t in texts]  # text survives, quoted or not
    assert not any(cell[:1] in FORMULA_TRIGGERS for cell in cells)
