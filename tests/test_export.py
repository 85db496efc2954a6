"""Marketing export: who is in it, consent per channel, display forms, delta and suppression,
its files and manifest, and CSV cells that stay inert yet read back as the Parquet values."""

from __future__ import annotations

import csv
import hashlib
import json
import tempfile
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.golden import build_golden, export_marketing
from pipelines.golden import export as export_module
from pipelines.golden.export import (
    FORMULA_TRIGGERS,
    INERT_RE,
    inert_cell,
    restore_cell,
    write_safe_csv,
)
from pipelines.golden.testing import (
    record,
    small_portfolio,
    write_identify_extras,
    write_run_inputs,
)
from pipelines.settings import RunPaths

EXPORT_DATE = date(2026, 11, 22)
# OWASP "CSV Injection" payloads, plus the cases the page warns about
OWASP_PAYLOADS = [
    "=1+2", "=1+2\";=1+2", "=1+2'\" ;,=1+2", "+1+2", "-1+2", "@SUM(1+2)",
    "=cmd|' /C calc'!A0", "=HYPERLINK(\"http://evil.example\",\"click\")",
    "@@SUM(1+1)*cmd|' /C calc'!A0", "\t=1+2", "\r=1+2", "\n=1+2", "＝1+2", "+49 151 2345678",
    "a,b", "say \"hi\"", "line1\nline2", "'already quoted", "'=1+1", "-", "+", "-Anna-Lena",
]


def read_csv_cells(path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def read_back(con, csv_file: Path, schema: list[dict]) -> str:
    """SQL: the CSV's cells with the escape removed, cast to the manifest's types."""
    columns = ", ".join(
        f"CAST(CASE WHEN left(\"{c['name']}\", 1) = chr(39) THEN substr(\"{c['name']}\", 2) "
        f"ELSE \"{c['name']}\" END AS {c['type']}) AS \"{c['name']}\"" for c in schema)
    return (f"SELECT {columns} FROM read_csv('{csv_file}', all_varchar = true, header = true, "
            "allow_quoted_nulls = false, delim = ',', quote = '\"', escape = '\"')")


def assert_csv_reads_back_as_parquet(folder: Path) -> int:
    """Every CSV of the export, read back and reversed, equals its Parquet twin, row for row."""
    manifest = json.loads((folder / "manifest.json").read_text())
    checked = 0
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        for name, entry in manifest["files"].items():
            if entry["format"] != "parquet":
                continue
            parquet = folder / name
            schema = [{"name": r[0], "type": r[1]} for r in con.execute(
                f"DESCRIBE SELECT * FROM '{parquet}'").fetchall()]
            back = read_back(con, parquet.with_suffix(".csv"), schema)
            original = f"SELECT * FROM '{parquet}'"
            for a, b in ((original, back), (back, original)):
                assert con.execute(f"SELECT count(*) FROM ({a} EXCEPT ALL {b})").fetchall() == [
                    (0,)], name
            assert con.execute(f"SELECT count(*) FROM ({back})").fetchall()[0][0] == entry["rows"]
            checked += entry["rows"]
    return checked


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    run = small_portfolio(RunPaths.for_run("2026-11-22", base=base / "runs"))
    build_golden(run, EXPORT_DATE)
    return run, export_marketing(run, EXPORT_DATE, base / "export")


def rows_of(path: Path) -> dict[str, dict]:
    """customer_id -> row; zoned timestamps as their UTC text (2026-06-01 08:30:00+00)."""
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        described = con.execute(f"DESCRIBE SELECT * FROM '{path}'").fetchall()
        columns = ", ".join(f'CAST("{n}" AS VARCHAR) AS "{n}"' if t == "TIMESTAMP WITH TIME ZONE"
                            else f'"{n}"' for n, t, *_ in described)
        cursor = con.execute(f"SELECT {columns} FROM '{path}'")
        names = [d[0] for d in cursor.description]
        return {r[0]: dict(zip(names, r, strict=True)) for r in cursor.fetchall()}


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
    assert manifest["row_count"] == 2 and manifest["follows"] is None
    assert set(manifest["files"]) == {f"marketing_{kind}_2026-11-22.{ext}"
                                      for kind in ("customers", "delta", "suppression")
                                      for ext in ("parquet", "csv")}
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == entry["sha256"]
        assert (folder / name).stat().st_size == entry["bytes"]
    rows = read_csv_cells(folder / "marketing_customers_2026-11-22.csv")
    assert rows[0] == manifest["columns"] == [c["name"] for c in manifest["schema"]]
    assert len(rows) == 1 + manifest["row_count"]
    types = {c["name"]: c["type"] for c in manifest["schema"]}
    assert types["consent_email_as_of"] == "TIMESTAMP WITH TIME ZONE"
    assert types["products_held"] == "VARCHAR[]" and types["confidence"] == "DOUBLE"
    assert manifest["csv"]["reverse"].startswith("remove one leading apostrophe")
    assert not list(folder.glob(".*"))


def test_the_export_summary_reports_size_columns_and_consent(exported, tmp_path):
    run, _ = exported
    path = export_marketing(run, EXPORT_DATE, tmp_path)
    summary = json.loads((path.parent / "export_summary.json").read_text())
    assert summary == json.loads((run.root / "export_summary.json").read_text())
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert summary["rows"] == 2 and summary["columns"] == len(manifest["columns"])
    assert summary["bytes"] == {n: e["bytes"] for n, e in manifest["files"].items()}
    # C1 and C3 said yes in general; C2 said no; C4, C5 yes (below the threshold)
    assert summary["consent_exported"]["email"] == {"true": 2, "false": 0, "unknown": 0}
    assert summary["consent_all_customers"]["post"] == {"true": 4, "false": 1, "unknown": 0}
    assert summary["delta"] == {"new": 2} and summary["suppression"] == {"withdrawn": 4}


def test_phones_numbers_and_names_are_byte_exact_in_the_csv(exported):
    _, path = exported
    parquet = rows_of(path)
    assert parquet["C1"]["phone_mobile"] == "+491512345678"
    header, *rows = read_csv_cells(path.with_suffix(".csv"))
    c1 = dict(zip(header, rows[0], strict=True))
    assert c1["phone_mobile"] == "+491512345678"  # E.164 is inert: no apostrophe
    assert c1["display_name"] == "Thomas Müller" and c1["email"] == "tom@example.de"
    assert c1["consent_email_as_of"] == "2026-03-15T10:00:00.000000Z"
    assert c1["products_held"] == '["LIFE_TERM"]'
    assert assert_csv_reads_back_as_parquet(path.parent) > 0


def test_display_forms_go_out_and_comparison_forms_stay_in(tmp_path):
    """The address is written as the source wrote it; the folded form only compares."""
    records = [
        record("servicing:S-1", given_name="JÖRG", family_name="MÜLLER-LÜDENSCHEIDT",
               given_name_norm="joerg", family_name_norm="mueller luedenscheidt",
               street="isabel rudolph weg", street_display="Isabel-Rudolph-Weg",
               house_number="3a", house_number_display="3 a", city="muenchen",
               city_display="München", postcode="80331", country="DE", marketing_consent=True,
               updated_at=datetime(2026, 5, 1)),
        record("sales:L-1", given_name="Jörg", family_name="Müller-Lüdenscheidt",
               given_name_norm="joerg", family_name_norm="mueller luedenscheidt",
               street="isabel rudolph weg", street_display="ISABEL-RUDOLPH-WEG",
               house_number="3a", city="muenchen", postcode="80331", country="DE",
               updated_at=datetime(2026, 1, 1)),
    ]
    run = write_run_inputs(RunPaths.for_run("2026-11-22", base=tmp_path), records,
                           {"servicing:S-1": "C1", "sales:L-1": "C1"},
                           [("servicing:S-1", "sales:L-1", 0.99)])
    build_golden(run, EXPORT_DATE)
    row = rows_of(export_marketing(run, EXPORT_DATE, tmp_path / "export"))["C1"]
    assert (row["display_name"], row["street"], row["house_number"], row["city"]) == (
        "Jörg Müller-Lüdenscheidt", "Isabel-Rudolph-Weg", "3 a", "München")
    customer = rows_of(run.golden_dir / "customers.parquet")["C1"]
    assert customer["street"] == "isabel rudolph weg"  # comparison form kept for matching
    assert customer["given_name_display_source_record_id"] == "sales:L-1"


def consent_run(base: Path, run_id: str, statements: dict[str, dict], history=()) -> RunPaths:
    """One single-record customer per entry, with the given consent fields."""
    records = [record(f"servicing:{cid}", **{
        "given_name": cid, "family_name": "Test", "given_name_norm": cid.lower(),
        "family_name_norm": "test", "email": f"{cid.lower()}@example.org",
        "phone_mobile": "+491510000000", "street": "weg", "city": "ort", "country": "DE",
        "updated_at": datetime(2026, 1, 1), **fields}) for cid, fields in statements.items()]
    run = write_run_inputs(RunPaths.for_run(run_id, base=base), records,
                           {f"servicing:{cid}": cid for cid in statements})
    write_identify_extras(run, history=list(history))
    build_golden(run, date.fromisoformat(run_id))
    return run


def test_consent_is_per_channel_the_newest_statement_winning(tmp_path):
    run = consent_run(tmp_path, "2026-11-22", {
        # a general yes, then a newer e-mail no: everything but e-mail
        "A": dict(marketing_consent=True, consent_email=False,
                  consent_email_at=datetime(2026, 6, 1, 8, 30)),
        # an old e-mail no, then a newer general yes: the general yes covers e-mail again
        "B": dict(consent_email=False, consent_email_at=datetime(2025, 1, 1),
                  marketing_consent=True),
        # only post, no general statement
        "C": dict(consent_post=True, consent_post_at=datetime(2026, 2, 2)),
        # nothing said: not in the file
        "D": {},
    })
    rows = rows_of(export_marketing(run, EXPORT_DATE, tmp_path / "export"))
    assert set(rows) == {"A", "B", "C"}
    a, b, c = rows["A"], rows["B"], rows["C"]
    assert (a["consent_email"], a["consent_sms"], a["consent_post"]) == (False, True, True)
    assert a["email"] is None and a["phone_mobile"] == "+491510000000"  # no e-mail consent
    assert a["consent_email_as_of"] == "2026-06-01 08:30:00+00"  # zoned, UTC
    assert b["consent_email"] is True and b["email"] == "b@example.org"
    assert (c["consent_post"], c["consent_email"], c["email"], c["street"]) == (
        True, None, None, "weg")


def test_delta_and_suppression_follow_the_previous_export(tmp_path):
    yes = dict(marketing_consent=True)
    day1 = consent_run(tmp_path / "r1", "2026-11-21", {"A": yes, "B": yes, "C": yes, "E": yes})
    export_marketing(day1, date(2026, 11, 21), tmp_path / "export")
    day2 = consent_run(tmp_path / "r2", "2026-11-22", {
        "A": dict(marketing_consent=True, consent_sms=False,
                  consent_sms_at=datetime(2026, 11, 21, 18, 0)),   # withdrew SMS: changed
        "B": yes,                                                   # unchanged: not in delta
        "E": dict(marketing_consent=False, updated_at=datetime(2026, 11, 21, 9)),  # withdrew all
        "N": yes,                                                   # new
    }, history=[{"run_id": "2026-11-22", "event": "erased", "customer_id": "C",
                 "related_customer_id": None}])                     # C was erased
    path = export_marketing(day2, EXPORT_DATE, tmp_path / "export")
    folder = path.parent
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["follows"]["export_date"] == "2026-11-21"
    assert manifest["follows"]["manifest_sha256"] == hashlib.sha256(
        (tmp_path / "export" / "2026-11-21" / "manifest.json").read_bytes()).hexdigest()
    with duckdb.connect() as con:
        delta = con.execute(f"SELECT change, reason, customer_id, consent_sms FROM "
                            f"'{folder}/marketing_delta_2026-11-22.parquet'").fetchall()
        suppression = con.execute(f"SELECT customer_id, channel, reason, as_of::VARCHAR FROM "
                                  f"'{folder}/marketing_suppression_2026-11-22.parquet'").fetchall()
    assert delta == [("changed", None, "A", False), ("removed", "erased", "C", None),
                     ("removed", "no_consent", "E", None), ("new", None, "N", True)]
    assert suppression == [
        ("A", "sms", "withdrawn", "2026-11-21 18:00:00+00"),
        *[("C", ch, "erased", None) for ch in ("email", "phone", "post", "sms")],
        *[("E", ch, "withdrawn", "2026-11-21 09:00:00+00")
          for ch in ("email", "phone", "post", "sms")]]
    assert assert_csv_reads_back_as_parquet(folder) == 3 + 4 + 9  # snapshot A, B, N


def test_segment_columns_are_configurable_and_checked(exported, tmp_path, monkeypatch):
    run, _ = exported
    config = export_module.survivorship_config()
    config["marketing_export"]["segment_columns"] = ["age_band", "household_size"]
    monkeypatch.setattr(export_module, "survivorship_config", lambda: config)
    rows = rows_of(export_marketing(run, EXPORT_DATE, tmp_path / "a"))
    assert (rows["C1"]["age_band"], rows["C1"]["household_size"]) == ("35-44", 2)
    config["marketing_export"]["segment_columns"] = ["shoe_size"]
    with pytest.raises(ValueError, match="'shoe_size' is not a customer_360 column"):
        export_marketing(run, EXPORT_DATE, tmp_path / "b")


def test_hostile_golden_values_come_out_inert_and_recoverable(tmp_path):
    """OWASP's payloads as names, e-mails and streets go through the whole export."""
    records, customer_of = [], {}
    for i, payload in enumerate(OWASP_PAYLOADS):
        rid = f"servicing:{i}"
        records.append(record(rid, given_name=payload, family_name=payload, street=payload,
                              street_display=payload, city="x" + payload, email=payload,
                              marketing_consent=True))
        customer_of[rid] = f"C{i:02d}"
    run = write_run_inputs(RunPaths.for_run("2026-11-22", base=tmp_path), records, customer_of)
    build_golden(run, EXPORT_DATE)
    path = export_marketing(run, EXPORT_DATE, tmp_path / "export")
    header, *rows = read_csv_cells(path.with_suffix(".csv"))
    assert len(rows) == len(OWASP_PAYLOADS)
    for row in rows:
        assert not any(cell[:1] in FORMULA_TRIGGERS and not INERT_RE.fullmatch(cell)
                       for cell in row if cell), row
    by_id = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    for i, payload in enumerate(OWASP_PAYLOADS):
        assert by_id[f"C{i:02d}"]["street"] == inert_cell(payload)
        assert restore_cell(by_id[f"C{i:02d}"]["street"]) == payload
    assert by_id["C00"]["street"] == "'=1+2" and by_id["C18"]["street"] == "''=1+1"
    assert assert_csv_reads_back_as_parquet(path.parent) >= len(OWASP_PAYLOADS)


def test_the_allow_list_keeps_only_numeric_constants():
    for inert in ("+491512345678", "-5", "-0.25", "-1e-07", "+8613812345678"):
        assert inert_cell(inert) == inert
    for live in ("+49 151 2345678", "-1+2", "+1+2", "-5%", "+0123", "-A1", "+", "-"):
        assert inert_cell(live) == "'" + live


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=20).filter(lambda s: "\x00" not in s),
                min_size=1, max_size=40))
def test_any_text_comes_out_inert_and_recoverable(texts):
    with duckdb.connect() as con:
        con.execute("CREATE TABLE t (i INTEGER, v VARCHAR)")
        con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(texts)))
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "t.csv"
            write_safe_csv(con, "SELECT v FROM t ORDER BY i", path)
            cells = [row[0] for row in read_csv_cells(path)[1:]]
    assert cells == [inert_cell(t) for t in texts]  # the SQL and Python twins agree
    assert [restore_cell(c) for c in cells] == texts
    assert not any(c[:1] in FORMULA_TRIGGERS and not INERT_RE.fullmatch(c) for c in cells if c)
