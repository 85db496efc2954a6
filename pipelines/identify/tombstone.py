"""Tombstones: salted hashes of an erased person's keys, applied at extract so they never come back.

`ucv erase` writes them (`data/registry/tombstones.parquet`: kind, hash; no personal data) and every
later night, and every rerun of any date, drops the source rows that carry one, counts them as
`erased` (rows read = accepted + quarantined + erased), and removes them from the landed file too,
so no copy stays in the data root. A record nested in a row (`records:` in the mapping: a claimant,
a co-insured person) is matched by its own keys and taken out of the row alone — an object becomes
null, a list element becomes null so the others keep their positions (and index-based keys) — while
the row and the other people in it stay; those are counted as erased records.

A key is hashed as sha256(salt || kind || ':' || normal form); the salt is random, generated once
per deployment (`data/registry/erasure.salt`, mode 0600), so the hashes cannot be reversed by
hashing guessed e-mail addresses without it.

Normal forms are the same for a raw source value and for its canonical form, so a key taken from the
warehouse matches the source row it came from:
- `record`: `<source>:<native key>` (the source_record_id);
- `email`: trimmed, lower case;
- `phone`: the last nine digits (E.164 `+4915112345678` and `0151 12345678` agree);
- `national_id`: letters and digits only, upper case.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from pipelines import fileio, settings
from pipelines.sql import quote_literal

if TYPE_CHECKING:
    from pipelines.ingest.mapping import SourceMapping

log = logging.getLogger(__name__)

KINDS = ("record", "email", "phone", "national_id")
SALT_FILE = "erasure.salt"
TOMBSTONE_FILE = "tombstones.parquet"
PHONE_DIGITS = 9

# SQL normal form per kind, of a VARCHAR expression `{v}`; NULL when too short to be a key.
NORMAL_FORM_SQL = {
    "record": "nullif(trim({v}), '')",
    "email": "nullif(lower(trim({v})), '')",
    "phone": "CASE WHEN length(regexp_replace({v}, '[^0-9]', '', 'g')) >= 7 "
             f"THEN right(regexp_replace({{v}}, '[^0-9]', '', 'g'), {PHONE_DIGITS}) END",
    "national_id": "CASE WHEN length(regexp_replace({v}, '[^0-9A-Za-z]', '', 'g')) >= 5 "
                   "THEN upper(regexp_replace({v}, '[^0-9A-Za-z]', '', 'g')) END",
}


def registry_dir() -> Path:
    from pipelines.identify.registry import registry_file

    return registry_file().parent


def tombstone_file() -> Path:
    return registry_dir() / TOMBSTONE_FILE


def salt(create: bool = False) -> str | None:
    """The deployment's erasure salt (hex); created with mode 0600 on first erasure."""
    path = registry_dir() / SALT_FILE
    if path.exists():
        return path.read_text(encoding="ascii").strip()
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secrets.token_hex(32) + "\n")
    return path.read_text(encoding="ascii").strip()


def hash_sql(kind: str, value_sql: str) -> str:
    """SQL: the tombstone hash of a value (NULL for no key); the salt is parameter `$salt`."""
    normal = NORMAL_FORM_SQL[kind].format(v=value_sql)
    return f"sha256($salt || {quote_literal(kind + ':')} || ({normal}))"


def load_hashes() -> set[str]:
    path = tombstone_file()
    if not path.exists():
        return set()
    return set(pq.read_table(path, columns=["hash"])["hash"].to_pylist())


def add_tombstones(keys: Iterable[tuple[str, str]]) -> int:
    """Hash (kind, value) keys into the tombstone file (atomic rewrite); returns how many are new."""
    key_salt = salt(create=True)
    frame = pd.DataFrame(list(keys), columns=["kind", "value"]).dropna().drop_duplicates()
    with duckdb.connect() as con:
        con.register("keys_in", frame)
        parts = [f"SELECT {quote_literal(kind)} AS kind, {hash_sql(kind, 'value')} AS hash "
                 f"FROM keys_in WHERE kind = {quote_literal(kind)}" for kind in KINDS]
        hashed = con.execute(" UNION ALL ".join(parts), {"salt": key_salt}).df()
    hashed = hashed.dropna()
    path = tombstone_file()
    old = pq.read_table(path).to_pandas() if path.exists() else hashed.iloc[0:0]
    combined = pd.concat([old, hashed]).drop_duplicates("hash").sort_values(["kind", "hash"])
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.Table.from_pandas(combined, preserve_index=False), tmp)
    fileio.replace(tmp, path)
    return len(combined) - len(old)


def erased_condition_sql(mapping: SourceMapping, columns: Iterable[str]) -> str:
    """SQL over a source's raw text columns: does the record carry a tombstoned key ($tombstones)?

    The keys are read the way standardize reads them (the mapping's value expressions): over the
    rows for a row's own record, over `nested_rows_sql` (one row per element) for the mapping of
    a nested record (`records:`), whose record key is `<row key>/<part>[/<element>]`.
    """
    from pipelines.ingest.columns import value_sql
    from pipelines.standardize.records import list_column_sql, source_key_sql

    columns = list(columns)
    key = source_key_sql(mapping, columns)
    scalars = [hash_sql("record", f"{quote_literal(mapping.name + ':')} || {key}")]
    lists = []
    if mapping.email:
        scalars.append(hash_sql("email", value_sql(mapping.email, columns)))
    for phone in mapping.phones:
        if phone.is_list:
            lists.append(f"list_transform({list_column_sql(phone.column.refs[0], columns)}, "
                         f"lambda x: {hash_sql('phone', 'x')})")
        else:
            scalars.append(hash_sql("phone", value_sql(phone.column, columns)))
    for ident in mapping.identifiers:
        scalars.append(hash_sql("national_id", value_sql(ident.column, columns)))
    hashes = "list_concat(" + ", ".join([f"[{', '.join(scalars)}]", *lists]) + ")"
    return f"coalesce(list_has_any({hashes}, $tombstones), false)"


def erased_mask(mapping: SourceMapping, table: pa.Table, hashes: set[str] | None = None
                ) -> pa.Array:
    """One boolean per row of a raw-shaped table: True where the row carries a tombstoned key."""
    hashes = load_hashes() if hashes is None else hashes
    key_salt = salt()
    if not hashes or key_salt is None or table.num_rows == 0:
        return pa.array([False] * table.num_rows, pa.bool_())
    with duckdb.connect() as con:
        con.register("raw_rows", table)
        condition = erased_condition_sql(mapping, table.column_names)
        mask = con.sql(f"SELECT {condition} AS erased FROM raw_rows",
                       params={"salt": key_salt, "tombstones": sorted(hashes)}).to_arrow_table()
    return mask.column("erased").combine_chunks()


# A nested record inside a row: (the row's `from` column, its list index, None for an object)
Element = tuple[str, int | None]


def erased_elements(mapping: SourceMapping, table: pa.Table, hashes: set[str] | None = None
                    ) -> dict[int, list[Element]]:
    """Row position -> the nested records (`records:`) of that row carrying a tombstoned key."""
    from pipelines.standardize.records import nested_rows_sql

    hashes = load_hashes() if hashes is None else hashes
    key_salt = salt()
    parts = [r for r in mapping.records if r.source in table.column_names]
    if not parts or not hashes or key_salt is None or table.num_rows == 0:
        return {}
    found: dict[int, list[Element]] = {}
    numbered = table.append_column("_erase_position", pa.array(range(table.num_rows), pa.int64()))
    with duckdb.connect() as con:
        con.register("raw_rows", numbered)
        for record in parts:
            condition = erased_condition_sql(record.mapping, table.column_names)
            hits = con.sql(f"SELECT _erase_position, _part_index "
                           f"FROM {nested_rows_sql(record.mapping, 'raw_rows')} WHERE {condition}",
                           params={"salt": key_salt, "tombstones": sorted(hashes)}).fetchall()
            for position, index in hits:
                found.setdefault(position, []).append((record.source, index))
    return found


def without_elements(value, elements: list[Element], column: str):
    """A cell of a `from` column (JSON text, or a Parquet struct / list value) without the given
    nested records: an object becomes None, a list element None (the others keep their place)."""
    mine = [i for c, i in elements if c == column]
    if not mine:
        return value
    indexes = [i for i in mine if i is not None]
    if value is None or len(indexes) < len(mine):  # the column held one object: it goes
        return None
    text = isinstance(value, str)
    items = list(json.loads(value) if text else value)
    for i in indexes:
        items[i - 1] = None
    return json.dumps(items, ensure_ascii=False) if text else items


def redact_elements(table: pa.Table, found: dict[int, list[Element]]) -> pa.Table:
    """The table with the found nested records taken out of their rows (see without_elements)."""
    for column in sorted({c for elements in found.values() for c, _ in elements}):
        values = table.column(column).to_pylist()
        for position, elements in found.items():
            values[position] = without_elements(values[position], elements, column)
        index = table.column_names.index(column)
        table = table.set_column(index, column, pa.array(values, table.schema.field(index).type))
    return table


def sidecar(path: Path) -> Path:
    """`.<file>.erased.json` beside a landed file: how many rows erasure removed from it, and how
    many nested records it took out of rows that stayed."""
    return path.with_name(f".{path.name}.erased.json")


def _sidecar_counts(path: Path) -> dict[str, int]:
    marker = sidecar(path)
    if not marker.exists() and not marker.is_symlink():
        return {"rows": 0, "records": 0}
    with fileio.open_regular(marker) as f:  # in the landing folder: never read through a link
        counts = json.loads(f.read().decode("utf-8"))
    return {"rows": int(counts.get("rows", 0)), "records": int(counts.get("records", 0))}


def previously_erased(path: Path) -> int:
    return _sidecar_counts(path)["rows"]


def previously_erased_records(path: Path) -> int:
    return _sidecar_counts(path)["records"]


def drop_erased(mapping: SourceMapping, table: pa.Table, landing_dir: Path, files: list[str]
                ) -> tuple[pa.Table, dict[str, int], dict[str, int], int]:
    """Extract's hook: the raw table without tombstoned rows and nested records; erased rows per
    landed file, found now and removed by earlier redactions; nested records taken out (now and
    earlier). Landed files in the data root are redacted in place."""
    landing = Path(landing_dir)
    before = {f: n for f in files if (n := previously_erased(landing / f))}
    records = sum(previously_erased_records(landing / f) for f in files)
    now: dict[str, int] = {}
    mask = erased_mask(mapping, table)
    if pa.compute.any(mask).as_py():
        hit = table.filter(mask)
        table = table.filter(pa.compute.invert(mask))
    else:
        hit = table.slice(0, 0)
    found = erased_elements(mapping, table)
    if not hit.num_rows and not found:
        return table, now, before, records
    files_of = table.column("_source_file").to_pylist()
    numbers_of = table.column("_row_number").to_pylist()
    for file in sorted(set(hit.column("_source_file").to_pylist())
                       | {files_of[p] for p in found}):
        rows = hit.filter(pa.compute.equal(hit.column("_source_file"), file))
        numbers = set(rows.column("_row_number").to_pylist())
        elements = {numbers_of[p]: e for p, e in found.items() if files_of[p] == file}
        if numbers:
            now[file] = len(numbers)
        records += sum(len(e) for e in elements.values())
        redact_landed_file(mapping, landing / file, numbers, elements)
    return redact_elements(table, found), now, before, records


def redact_landed_file(mapping: SourceMapping, path: Path, row_numbers: set[int],
                       elements: dict[int, list[Element]] | None = None) -> bool:
    """Rewrite a landed file without the given data rows (1-based, as extract numbers them) and
    without the given nested records of other rows (row number -> elements).

    Written beside the file and renamed over it; the removed counts go to its sidecar. Files
    outside the data root belong to someone else's drop zone and are left as they are. The file
    is read as extract reads it (no symlink, a regular file), and the new copies are created
    afresh (never written through a link planted under their temporary names).
    """
    from pipelines.ingest.extract import open_landed

    elements = elements or {}
    if not path.resolve().is_relative_to(settings.data_root()):
        log.warning("%s holds erased rows but is outside the data root; not rewritten", path)
        return False
    tmp = path.with_name(f".{path.name}.redacting")
    with open_landed(mapping.name, path) as landed, fileio.create_new(tmp) as out:
        if mapping.format == "csv":
            _redact_csv(mapping, landed, path.name, row_numbers, elements, out)
        elif mapping.format == "jsonl":
            _redact_lines(mapping, landed, path.name, row_numbers, elements, out)
        else:
            table = pq.read_table(landed)
            positions = {n - 1: e for n, e in elements.items()}
            table = redact_elements(table, positions) if positions else table
            keep = [i for i in range(table.num_rows) if i + 1 not in row_numbers]
            pq.write_table(table.take(pa.array(keep, pa.int64())), out, compression="zstd")
    counts = _sidecar_counts(path)
    counts["rows"] += len(row_numbers)
    counts["records"] += sum(len(e) for e in elements.values())
    marker = sidecar(path)
    marker_tmp = marker.with_name(marker.name + ".tmp")
    with fileio.create_new(marker_tmp) as f:
        f.write((json.dumps({k: n for k, n in counts.items() if n or k == "rows"}) + "\n")
                .encode("utf-8"))
    fileio.replace(tmp, path)
    fileio.replace(marker_tmp, marker)
    return True


class _Recording:
    """Line iterator that keeps the text of the record the CSV parser is reading."""

    def __init__(self, lines: Iterator[str]):
        self.lines, self.taken = lines, []  # type: ignore[var-annotated]

    def __iter__(self) -> _Recording:
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        self.taken.append(line)
        return line

    def record_text(self) -> str:
        text, self.taken = "".join(self.taken), []
        return text


def _encoder(mapping: SourceMapping, landed: BinaryIO, out: BinaryIO):
    """Encode text as the file was: the declared encoding, and a UTF-8 BOM if it had one (extract
    drops it when decoding); encodings with their own BOM (utf-8-sig, utf-16) write it once."""
    encoder = codecs.getincrementalencoder(mapping.encoding)()
    landed.seek(0)
    start = landed.read(3)
    if start == b"\xef\xbb\xbf" and codecs.lookup(mapping.encoding).name == "utf-8":
        out.write(start)
    return lambda text: out.write(encoder.encode(text))


def _redact_csv(mapping: SourceMapping, landed: BinaryIO, name: str, row_numbers: set[int],
                elements: dict[int, list[Element]], out: BinaryIO) -> None:
    """Keep every record's original text except the dropped ones, numbered as extract does (a
    trailer is the last line, numbered after every data row, so it is always kept); a record
    losing a nested record is written anew, its `from` cell without it."""
    from pipelines.ingest.extract import decoded_lines

    write = _encoder(mapping, landed, out)
    lines = _Recording(decoded_lines(landed, name, mapping.encoding, mapping.name))
    reader = csv.reader(lines, delimiter=mapping.delimiter, quotechar=mapping.quote, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    write(lines.record_text())
    number = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error:
            row = [""]  # extract keeps an unparseable record as one (malformed) row
        text = lines.record_text()
        if row:
            number += 1
            if number in row_numbers:
                continue
            if number in elements:
                text = _csv_without(mapping, header, row, elements[number], text)
        write(text)


def _csv_without(mapping: SourceMapping, header: list[str], row: list[str],
                 elements: list[Element], text: str) -> str:
    cells = [without_elements(cell, elements, column)
             for column, cell in zip(header, row, strict=False)] + row[len(header):]
    out = io.StringIO()
    ending = "\r\n" if text.endswith("\r\n") else "\n" if text.endswith("\n") else ""
    csv.writer(out, delimiter=mapping.delimiter, quotechar=mapping.quote,
               lineterminator=ending).writerow(["" if c is None else c for c in cells])
    return out.getvalue()


def _redact_lines(mapping: SourceMapping, landed: BinaryIO, name: str, row_numbers: set[int],
                  elements: dict[int, list[Element]], out: BinaryIO) -> None:
    """Keep every line's original text except the dropped ones; a line losing a nested record is
    written anew (the same object, its `from` value without it)."""
    from pipelines.ingest.extract import decoded_lines

    write = _encoder(mapping, landed, out)
    number = 0
    for line in decoded_lines(landed, name, mapping.encoding, mapping.name):
        if line.strip():
            number += 1
            if number in row_numbers:
                continue
            if number in elements:
                obj = json.loads(line)
                for column in {c for c, _ in elements[number]}:
                    obj[column] = without_elements(obj.get(column), elements[number], column)
                ending = line[len(line.rstrip("\r\n")):]
                line = json.dumps(obj, ensure_ascii=False) + ending
        write(line)
