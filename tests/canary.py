"""Test support for erasure: a canary person planted in all four sample sources, and a search of
a whole data root or Airflow home for any trace of them (raw bytes of every file, decompressed
gzip/zlib content, the text of every Parquet file, DuckDB table and SQLite cell — Airflow's
metadata DB keeps XComs, rendered task fields and logs' metadata there, serialized DAGs zlib'd)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import sqlite3
import zlib
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from stdnum.de import idnr
from stdnum.iso7064 import mod_11_10

GIVEN, FAMILY = "Kunibert", "Kanarienvogel"
EMAIL = "kunibert.kanarienvogel@kanarien-test.de"
PHONE = "+49 151 70809010"
STREET, POSTCODE, CITY = "Kanarienweg 987", "28195", "Bremen"
NATIONAL_ID = "8619247351" + mod_11_10.calc_check_digit("8619247351")
assert idnr.is_valid(NATIONAL_ID)
# ASCII on purpose: the same bytes in every source encoding (gb18030 claims, utf-8 others)
NEEDLES = (FAMILY, EMAIL, "70809010", NATIONAL_ID, "Kanarienweg")
SQLITE_MAGIC = b"SQLite format 3\x00"


def plant_canary(landing: Path) -> None:
    """Add the canary person to each of the four landed exports, each row copied from a German
    person's row (so every other field passes validation) with new keys."""
    _plant_csv(landing / "sales_leads.csv", "utf-8", ",", lambda row: row.update(
        lead_id="L09999901", lead_type="person", first_name=GIVEN, last_name=FAMILY,
        company_name="", email=EMAIL, mobile=PHONE, phone="", street_address=STREET,
        zip=POSTCODE, city=CITY, country="DE", birth_date="15.04.1971", marketing_opt_in="Y"),
        lambda row: row["country"] == "DE" and row["lead_type"] == "person")
    _plant_csv(landing / "claims.csv", "gb18030", ";", lambda row: row.update(
        claim_no="CLM-9999901", claimant_name=f"{GIVEN} {FAMILY}", claimant_birthdate="19710415",
        claimant_id_no=NATIONAL_ID, contact_phone=PHONE, contact_email=EMAIL,
        address=f"{STREET}, {POSTCODE} {CITY}, DE"),
        lambda row: row["address"].endswith(", DE"))
    servicing = landing / "policy_servicing.jsonl"
    lines = servicing.read_text(encoding="utf-8").splitlines()
    template = next(json.loads(line) for line in lines
                    if json.loads(line)["party_kind"] == "natural"
                    and json.loads(line)["address"]["country"] == "DE")
    template.update(record_id="SV-09999901", name=f"{GIVEN} {FAMILY}", birth_date="1971-04-15",
                    id_number=NATIONAL_ID, phone_numbers=[PHONE], email_address=EMAIL,
                    address={"street": STREET, "postcode": POSTCODE, "city": CITY,
                             "country": "DE"}, consent_marketing=True)
    servicing.write_text("\n".join([*lines, json.dumps(template, ensure_ascii=False)]) + "\n",
                         encoding="utf-8")
    underwriting = landing / "underwriting_applications.parquet"
    table = pq.read_table(underwriting)
    rows = table.to_pylist()
    row = dict(next(r for r in rows if r["applicant_type"] == "P" and r["country_code"] == "DE"))
    row.update(application_no="UW-2026-999901", surname=FAMILY, given_names=GIVEN,
               national_id=NATIONAL_ID, phone=PHONE, email=EMAIL, addr_line1=STREET,
               postal_code=POSTCODE, town=CITY)
    pq.write_table(pa.Table.from_pylist([*rows, row], schema=table.schema), underwriting)


def _plant_csv(path: Path, encoding: str, delimiter: str, change, is_template) -> None:
    text = path.read_text(encoding=encoding)
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    row = dict(next(r for r in reader if is_template(r)))
    change(row)
    out = io.StringIO()
    csv.DictWriter(out, fieldnames=reader.fieldnames or [], delimiter=delimiter,
                   quoting=csv.QUOTE_ALL, lineterminator="\n").writerow(row)
    path.write_text(text.rstrip("\n") + "\n" + out.getvalue(), encoding=encoding)


def canary_hits(*roots: Path, values: tuple[str, ...] = NEEDLES) -> list[str]:
    """Every place under the roots where a canary value shows: '<file>' or '<file>:<table>'.
    Other `values` make a positive control: the search sees what the roots hold."""
    needles = [v.lower() for v in values]
    hits = []
    with duckdb.connect() as con:
        for root in roots:
            for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
                data = path.read_bytes()
                if _has_needle(data, needles) or _has_needle(_decompressed(data), needles):
                    hits.append(str(path))
                elif data.startswith(SQLITE_MAGIC):
                    hits += _sqlite_hits(path, needles)
                elif path.suffix == ".parquet":
                    hits += [f"{path}" for _ in _text_hits(
                        con, f"read_parquet('{_quoted(path)}')", needles)[:1]]
                elif path.suffix == ".duckdb" and not path.name.startswith("."):
                    hits += _duckdb_hits(con, path, needles)
    return hits


def _has_needle(data: bytes | None, needles: list[str]) -> bool:
    if not data:
        return False
    lowered = data.lower()
    return any(n.encode() in lowered for n in needles)


def _decompressed(data: bytes) -> bytes | None:
    """The content of a gzip or zlib stream (a rotated log, a compressed blob), else None."""
    try:
        if data[:2] == b"\x1f\x8b":
            return gzip.decompress(data)
        if data[:1] == b"\x78" and len(data) > 2 and (data[0] * 256 + data[1]) % 31 == 0:
            return zlib.decompress(data)
    except (OSError, EOFError, zlib.error):
        return None
    return None


def _sqlite_hits(path: Path, needles: list[str]) -> list[str]:
    """Tables of a SQLite database with a needle in a cell: text, or a blob (zlib'd or not)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        hits = []
        for table in tables:
            quoted = '"' + table.replace('"', '""') + '"'  # a name from sqlite_master
            for row in con.execute(f"SELECT * FROM {quoted}"):
                cells = [v if isinstance(v, bytes) else str(v).encode() for v in row
                         if v is not None]
                if any(_has_needle(c, needles) or _has_needle(_decompressed(c), needles)
                       for c in cells):
                    hits.append(f"{path}:{table}")
                    break
        return hits
    finally:
        con.close()


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


def _text_hits(con: duckdb.DuckDBPyConnection, relation: str, needles: list[str]) -> list[str]:
    """Rows of a relation whose text (every column cast to text, nested ones too) has a needle."""
    columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
    if not columns:
        return []
    text = " || '|' || ".join(f'coalesce(CAST("{c}" AS VARCHAR), \'\')' for c in columns)
    condition = " OR ".join("contains(lower(t), ?)" for _ in needles)
    return [r[0][:80] for r in con.execute(
        f"SELECT t FROM (SELECT {text} AS t FROM {relation}) WHERE {condition} LIMIT 3",
        needles).fetchall()]


def _duckdb_hits(con: duckdb.DuckDBPyConnection, path: Path, needles: list[str]) -> list[str]:
    con.execute(f"ATTACH '{_quoted(path)}' AS probe (READ_ONLY)")
    try:
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'probe'").fetchall()]
        return [f"{path}:{t}" for t in tables if _text_hits(con, f'probe."{t}"', needles)]
    finally:
        con.execute("DETACH probe")


def broker_notifications() -> list[dict]:
    """Two broker claim notifications (schemas/sources/optional/broker.yaml) where the canary is
    never a row's own record, only nested in other people's rows: N1's claimant (an object) and
    its second co-insured (a list element without a key, so keyed by its index). Around them:
    N1's insured Anna, co-insured Berta (keyed K1) and Carl (unkeyed, after the canary: he keeps
    index 3), and N2 with insured Dora and claimant Emil."""
    def insured(ref: str, first: str, last: str, email: str) -> dict:
        return {"ref": ref, "type": "P", "first_name": first, "last_name": last, "email": email,
                "phone": None, "birth_date": "01.02.1970", "city": "Hamburg", "country": "DE"}

    canary = {"name": f"{GIVEN} {FAMILY}", "email": EMAIL, "phone": PHONE, "street": STREET,
              "postcode": POSTCODE, "city": CITY, "country": "DE", "birth_date": "15.04.1971"}
    co_canary = {"type": "P", "first_name": GIVEN, "last_name": FAMILY, "email": EMAIL,
                 "phone": PHONE, "street": STREET, "postcode": POSTCODE, "city": CITY}
    claim = {"product": "motor", "loss_date": "2026-11-01", "reported_at": "2026-11-02T09:00:00",
             "claimed_amount": 1200.0, "currency": "EUR", "status": "open"}
    return [
        {"notification_id": "BN-1", "policy_ref": "P-DE-0000001", **claim,
         "insured": insured("I1", "Anna", "Altmann", "anna.altmann@example.de"),
         "claimant": {"ref": "C1", **canary},
         "co_insured": [{**insured("K1", "Berta", "Bunte", "berta.bunte@example.de")},
                        co_canary,
                        {**insured("", "Carl", "Cyanfeld", "carl.cyanfeld@example.de"),
                         "ref": None}]},
        {"notification_id": "BN-2", "policy_ref": "P-DE-0000002", **claim,
         "insured": insured("I2", "Dora", "Dunkelberg", "dora.dunkelberg@example.de"),
         "claimant": {"ref": "C2", "name": "Emil Ehrenfeld", "email": "emil.ehrenfeld@example.de",
                      "city": "Bremen", "country": "DE"},
         "co_insured": []},
    ]


# The other people of broker_notifications(), by record key: they must survive the canary's erasure
BROKER_OTHERS = {"broker:BN-1": "Altmann", "broker:BN-1/co_insured/K1": "Bunte",
                 "broker:BN-1/co_insured/3": "Cyanfeld", "broker:BN-2": "Dunkelberg",
                 "broker:BN-2/claimant/C2": "Ehrenfeld"}


def write_broker_export(path: Path, fmt: str, rows: list[dict] | None = None) -> None:
    """broker_notifications() (or `rows`) as a broker export: JSON Lines, CSV (the nested
    parties as JSON text in their cells) or Parquet (a struct and a list-of-structs column)."""
    rows = broker_notifications() if rows is None else rows
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                        encoding="utf-8")
    elif fmt == "csv":
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({k: json.dumps(v) if isinstance(v, dict | list) else v
                              for k, v in r.items()} for r in rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
