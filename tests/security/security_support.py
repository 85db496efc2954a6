"""Test support for the security suite: canary personal data planted in landed exports, and
scans that look for personal data in every file a run writes outside its personal-data stores."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.ingest import load_mappings
from pipelines.ingest.mapping import SourceMapping

# ASCII, so it survives case folding, transliteration and JSON escaping unchanged.
CANARY = "Zqcanary"
CONTROL_CHARACTERS = ("\t", "\r\n", "\x1b")

# The places that hold personal data on purpose (protected by file modes, never scanned): the
# landed exports, the run's data folders, the warehouse, the exports. Everything else a run
# writes (reports, charts, summaries, run state, logs, the Airflow DB) must hold none.
RUN_DATA_FOLDERS = ("raw", "accepted", "quarantine", "staged", "resolved", "identified",
                    "golden", "baseline")
HOME_DATA_FOLDERS = ("landing", "warehouse", "export", "sample", "tmp")
DATA_SUFFIXES = (".parquet", ".duckdb", ".duckdb.wal")


def _columns(*exprs) -> list[str]:
    """The export columns a mapping's value expressions read (mappings may combine columns)."""
    return list(dict.fromkeys(c for e in exprs if e is not None for c in e.root_columns))


def _name_columns(mapping: SourceMapping) -> list[str]:
    spec = mapping.name_spec
    return _columns(spec.family, spec.full, spec.organization)


class _Planter:
    """Prefixes Latin names and e-mails with the canary, counting the cells it changed."""

    def __init__(self) -> None:
        self.cells = 0
        self.control_cells = 0

    def value(self, value, is_email: bool):
        if not isinstance(value, str) or not value[:1].isascii() or not value[:1].isalpha():
            return value  # hanzi names keep their script; the canary goes into Latin values only
        self.cells += 1
        if is_email:
            return CANARY.lower() + value
        # One name in five also gets a tab, a line break or an escape — decided by the value, so
        # every source spells that person the same way and survivorship cannot avoid it.
        digest = zlib.crc32(value.lower().encode())
        if digest % 5:
            return CANARY + value.lower()
        self.control_cells += 1
        return CANARY + CONTROL_CHARACTERS[digest % 3] + value.lower()

    def row(self, row: dict, names: list[str], email: str | None) -> dict:
        for column in names:
            if column in row:
                row[column] = self.value(row[column], is_email=False)
        if email and email in row:
            row[email] = self.value(row[email], is_email=True)
        return row


def plant_canaries(landing: Path) -> tuple[int, int]:
    """Prefix every Latin family/full/organization name and e-mail in the landed exports with
    the canary (the same way in every source, so records still match), some with a control
    character after it; returns (canary cells, control-character cells)."""
    planter = _Planter()
    for mapping in load_mappings().values():
        names = _name_columns(mapping)
        email = next(iter(_columns(mapping.email)), None)
        for path in sorted(landing.glob(mapping.file_pattern)):
            if mapping.format == "csv":
                text = path.read_text(encoding=mapping.encoding)
                rows = [planter.row(r, names, email) for r in csv.DictReader(
                    io.StringIO(text, newline=""), delimiter=mapping.delimiter,
                    quotechar=mapping.quote)]
                out = io.StringIO()
                writer = csv.DictWriter(out, fieldnames=list(rows[0]), delimiter=mapping.delimiter,
                                        quotechar=mapping.quote, lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)
                path.write_text(out.getvalue(), encoding=mapping.encoding)
            elif mapping.format == "jsonl":
                lines = path.read_text(encoding=mapping.encoding).splitlines()
                path.write_text("".join(
                    json.dumps(planter.row(json.loads(ln), names, email), ensure_ascii=False)
                    + "\n" for ln in lines if ln.strip()), encoding=mapping.encoding)
            else:
                table = pq.read_table(path)
                pq.write_table(pa.table({
                    c: pa.array([planter.value(v, c == email) for v in table[c].to_pylist()],
                                table[c].type) if c in names or c == email else table[c]
                    for c in table.column_names}), path)
    return planter.cells, planter.control_cells


def is_personal_data_store(path: Path, home: Path) -> bool:
    """Whether `path` (under the data root `home`) is one of the places meant to hold personal data."""
    parts = path.relative_to(home).parts
    if parts[0] in HOME_DATA_FOLDERS:
        return True
    return (parts[0] == "runs" and len(parts) > 3 and parts[2] in RUN_DATA_FOLDERS
            and path.name.endswith(DATA_SUFFIXES))


def searchable_text(path: Path) -> str:
    """A file's content as text to search: Parquet cells, SQLite rows, otherwise the bytes."""
    if path.suffix == ".parquet":
        return json.dumps(pq.read_table(path).to_pylist(), ensure_ascii=False, default=str)
    raw = path.read_bytes()
    if raw.startswith(b"SQLite format 3"):
        return _sqlite_text(path) + raw.decode("utf-8", "replace")
    text = raw.decode("utf-8", "replace")
    if path.suffix in (".html", ".json"):
        # JSON inside HTML/JSON escapes non-ASCII (\u00fc): search the unescaped form too.
        text += re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)
    return text


def _sqlite_text(path: Path) -> str:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        chunks = []
        for table in tables:
            for row in con.execute(f'SELECT * FROM "{table}"'):  # names from sqlite_master
                chunks.append(" ".join(v.decode("utf-8", "replace") if isinstance(v, bytes)
                                       else str(v) for v in row))
        return "\n".join(chunks)
    finally:
        con.close()


def files_under(root: Path) -> Iterator[Path]:
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                yield path


def pii_hits(files: Iterable[Path], values: Iterable[str]) -> dict[str, list[str]]:
    """File -> personal values found in it (case-insensitive)."""
    needles = sorted({v.lower() for v in values if v})
    hits: dict[str, list[str]] = {}
    for path in files:
        text = searchable_text(path).lower()
        found = [v for v in needles if v in text]
        if found:
            hits[str(path)] = found[:5]
    return hits


def distinctive_values(staged_records: Path) -> set[str]:
    """E-mails, phones, national and registration IDs of the run's records (long enough that a
    hit is never a coincidence), the values the issue found in charts."""
    table = pq.read_table(staged_records)
    values: set[str] = set()
    for column in ("email", "phone_mobile", "phone_landline", "national_id", "registration_id"):
        if column in table.column_names:
            values |= {v for v in table[column].to_pylist() if isinstance(v, str) and len(v) >= 8}
    return values
