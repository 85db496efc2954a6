"""Tombstones: salted hashes of an erased person's keys, applied at extract so they never come back.

`ucv erase` writes them (`data/registry/tombstones.parquet`: kind, hash; no personal data) and every
later night, and every rerun of any date, drops the source rows that carry one, counts them as
`erased` (rows read = accepted + quarantined + erased), and removes them from the landed file too,
so no copy stays in the data root. A key is hashed as sha256(salt || kind || ':' || normal form);
the salt is random, generated once per deployment (`data/registry/erasure.salt`, mode 0600), so the
hashes cannot be reversed by hashing guessed e-mail addresses without it.

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
    """SQL over a source's raw text columns: does the row carry a tombstoned key ($tombstones)?

    The keys are read the way standardize reads them (the mapping's value expressions). Records
    a row holds nested (`records:` in the mapping) are matched by the row's own keys only.
    """
    from pipelines.ingest.columns import column_sql, value_sql
    from pipelines.standardize.records import list_column_sql

    columns = list(columns)
    key = column_sql(mapping.native_key, columns)
    scalars = [hash_sql("record", f"'{mapping.name}:' || {key}")]
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


def sidecar(path: Path) -> Path:
    """`.<file>.erased.json` beside a landed file: how many rows erasure removed from it."""
    return path.with_name(f".{path.name}.erased.json")


def previously_erased(path: Path) -> int:
    marker = sidecar(path)
    if not marker.exists() and not marker.is_symlink():
        return 0
    with fileio.open_regular(marker) as f:  # in the landing folder: never read through a link
        return int(json.loads(f.read().decode("utf-8"))["rows"])


def drop_erased(mapping: SourceMapping, table: pa.Table, landing_dir: Path, files: list[str]
                ) -> tuple[pa.Table, dict[str, int], dict[str, int]]:
    """Extract's hook: the raw table without tombstoned rows; erased rows per landed file, found
    now and removed by earlier redactions. Landed files in the data root are redacted in place."""
    before = {f: n for f in files if (n := previously_erased(Path(landing_dir) / f))}
    now: dict[str, int] = {}
    mask = erased_mask(mapping, table)
    if not pa.compute.any(mask).as_py():
        return table, now, before
    hit = table.filter(mask)
    for file in sorted(set(hit.column("_source_file").to_pylist())):
        rows = hit.filter(pa.compute.equal(hit.column("_source_file"), file))
        numbers = set(rows.column("_row_number").to_pylist())
        now[file] = len(numbers)
        redact_landed_file(mapping, Path(landing_dir) / file, numbers)
    return table.filter(pa.compute.invert(mask)), now, before


def redact_landed_file(mapping: SourceMapping, path: Path, row_numbers: set[int]) -> bool:
    """Rewrite a landed file without the given data rows (1-based, as extract numbers them).

    Written beside the file and renamed over it; the removed count goes to its sidecar. Files
    outside the data root belong to someone else's drop zone and are left as they are. The file
    is read as extract reads it (no symlink, a regular file), and the new copies are created
    afresh (never written through a link planted under their temporary names).
    """
    from pipelines.ingest.extract import open_landed

    if not path.resolve().is_relative_to(settings.data_root()):
        log.warning("%s holds erased rows but is outside the data root; not rewritten", path)
        return False
    tmp = path.with_name(f".{path.name}.redacting")
    with open_landed(mapping.name, path) as landed, fileio.create_new(tmp) as out:
        if mapping.format == "csv":
            _redact_csv(mapping, landed, path.name, row_numbers, out)
        elif mapping.format == "jsonl":
            _redact_lines(mapping, landed, path.name, row_numbers, out)
        else:
            table = pq.read_table(landed)
            keep = [i for i in range(table.num_rows) if i + 1 not in row_numbers]
            pq.write_table(table.take(pa.array(keep, pa.int64())), out, compression="zstd")
    marker = sidecar(path)
    marker_tmp = marker.with_name(marker.name + ".tmp")
    with fileio.create_new(marker_tmp) as f:
        f.write((json.dumps({"rows": previously_erased(path) + len(row_numbers)}) + "\n").encode())
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
                out: BinaryIO) -> None:
    """Keep every record's original text except the dropped ones, numbered as extract does (a
    trailer is the last line, numbered after every data row, so it is always kept)."""
    from pipelines.ingest.extract import decoded_lines

    write = _encoder(mapping, landed, out)
    lines = _Recording(decoded_lines(landed, name, mapping.encoding, mapping.name))
    reader = csv.reader(lines, delimiter=mapping.delimiter, quotechar=mapping.quote, strict=True)
    try:
        next(reader)
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
        write(text)


def _redact_lines(mapping: SourceMapping, landed: BinaryIO, name: str, row_numbers: set[int],
                  out: BinaryIO) -> None:
    from pipelines.ingest.extract import decoded_lines

    write = _encoder(mapping, landed, out)
    number = 0
    for line in decoded_lines(landed, name, mapping.encoding, mapping.name):
        if line.strip():
            number += 1
            if number in row_numbers:
                continue
        write(line)
