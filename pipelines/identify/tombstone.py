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
from typing import TYPE_CHECKING

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
    return int(json.loads(marker.read_text(encoding="utf-8"))["rows"]) if marker.exists() else 0


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
    outside the data root belong to someone else's drop zone and are left as they are.
    """
    if not path.resolve().is_relative_to(settings.data_root()):
        log.warning("%s holds erased rows but is outside the data root; not rewritten", path)
        return False
    tmp = path.with_name(f".{path.name}.redacting")
    if mapping.format == "csv":
        _redact_csv(mapping, path, row_numbers, tmp)
    elif mapping.format == "jsonl":
        _redact_lines(mapping, path, row_numbers, tmp)
    else:
        table = pq.read_table(path)
        keep = [i for i in range(table.num_rows) if i + 1 not in row_numbers]
        pq.write_table(table.take(pa.array(keep, pa.int64())), tmp, compression="zstd")
    marker = sidecar(path)
    marker_tmp = marker.with_name(marker.name + ".tmp")
    marker_tmp.write_text(json.dumps({"rows": previously_erased(path) + len(row_numbers)}) + "\n",
                          encoding="utf-8")
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


def _encoder(mapping: SourceMapping, path: Path, out):
    """Encode text as the file was: the declared encoding, and a UTF-8 BOM if it had one (extract
    drops it when decoding); encodings with their own BOM (utf-8-sig, utf-16) write it once."""
    encoder = codecs.getincrementalencoder(mapping.encoding)()
    with open(path, "rb") as f:
        start = f.read(3)
    if start == b"\xef\xbb\xbf" and codecs.lookup(mapping.encoding).name == "utf-8":
        out.write(start)
    return lambda text: out.write(encoder.encode(text))


def _redact_csv(mapping: SourceMapping, path: Path, row_numbers: set[int], out: Path) -> None:
    """Keep every record's original text except the dropped ones, numbered as extract does."""
    from pipelines.ingest.extract import decoded_lines

    lines = _Recording(decoded_lines(path, mapping.encoding, mapping.name))
    reader = csv.reader(lines, delimiter=mapping.delimiter, quotechar=mapping.quote, strict=True)
    with open(out, "wb") as f:
        write = _encoder(mapping, path, f)
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


def _redact_lines(mapping: SourceMapping, path: Path, row_numbers: set[int], out: Path) -> None:
    from pipelines.ingest.extract import decoded_lines

    with open(out, "wb") as f:
        write = _encoder(mapping, path, f)
        number = 0
        for line in decoded_lines(path, mapping.encoding, mapping.name):
            if line.strip():
                number += 1
                if number in row_numbers:
                    continue
            write(line)
