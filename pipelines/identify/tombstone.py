"""Tombstones: salted hashes of an erased person's keys, applied at extract so they never come back.

`ucv erase` writes them (`data/registry/tombstones.parquet`: kind, hash; no personal data) and every
later night, and every rerun of any date, drops the source rows that carry one, counts them as
`erased` (rows read = accepted + quarantined + erased), and removes them from the landed file too,
so no copy stays in the data root. A record nested in a row (`records:` in the mapping: a claimant,
a co-insured person) is matched by its own keys and taken out of the row alone — an object becomes
null, a list element becomes null so the others keep their positions (and index-based keys) — while
the row and the other people in it stay; those are counted as erased records. The other way round,
a row whose own person is erased but which holds other people stays for them: every column but the
row key, the `from` columns and what the nested mappings read is emptied (`kept_columns`), the row
is marked `_redacted`, counted as erased (and redacted), and its own record is never staged.

The landed file is rewritten by extract's own row numbering (`CsvRecords`, `jsonl_lines`: one
malformed row per line of a runaway quote, undecodable lines under `on_bad_line: quarantine`, no
trailer), so the record removed is the one extract read under that number; every line kept is
copied byte for byte.

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
from collections.abc import Iterable
from dataclasses import dataclass, field
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
    from pipelines.ingest.extract import Line
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
    return _nested_records(mapping, table, hashes, erased=True)


def _nested_records(mapping: SourceMapping, table: pa.Table, hashes: set[str] | None,
                    erased: bool) -> dict[int, list[Element]]:
    """Row position -> the nested records of that row that carry a tombstoned key (`erased`),
    or that carry none."""
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
                           f"FROM {nested_rows_sql(record.mapping, 'raw_rows')} "
                           f"WHERE {'' if erased else 'NOT '}{condition}",
                           params={"salt": key_salt, "tombstones": sorted(hashes)}).fetchall()
            for position, index in hits:
                found.setdefault(position, []).append((record.source, index))
    return found


def erased_rows(mapping: SourceMapping, table: pa.Table, hashes: set[str] | None = None
                ) -> tuple[pa.Array, list[int]]:
    """Rows whose own record carries a tombstoned key: (a mask of those that go, the positions
    of those that stay because other people are nested in them).

    A well-formed row holding a nested record (`records:`) that carries no tombstoned key stays,
    its own fields emptied (`empty_own`), so those people keep their records and record keys; a
    row holding no one else goes whole (a malformed one too: its nested people are never staged).
    """
    hashes = load_hashes() if hashes is None else hashes
    mask = erased_mask(mapping, table, hashes)
    if not mapping.records or not pa.compute.any(mask).as_py():
        return mask, []
    positions = pa.compute.indices_nonzero(mask).to_pylist()
    hit = table.take(pa.array(positions, pa.int64()))
    malformed = (hit.column("_malformed").to_pylist() if "_malformed" in hit.column_names
                 else [None] * hit.num_rows)
    others = _nested_records(mapping, hit, hashes, erased=False)
    kept = sorted(positions[i] for i in others if malformed[i] is None)
    if kept:
        flags = mask.to_pylist()
        for position in kept:
            flags[position] = False
        mask = pa.array(flags, pa.bool_())
    return mask, kept


def kept_columns(mapping: SourceMapping) -> frozenset[str]:
    """The columns a row keeps when its own person is erased but other people nested in it stay:
    the row key column (their record keys are built from it), the columns they are nested in
    (`from`) and every column their mappings read (the claim's or policy's data they share).
    Every other column — the row's own person, and what the mapping does not read (notes) — is
    emptied."""
    from pipelines.ingest.mapping import references

    columns = set(mapping.all_columns)

    def root(ref: str) -> str:
        return ref if ref in columns else ref.split(".", 1)[0]

    kept = {mapping.native_key} if mapping.native_key in columns else set()
    for record in mapping.records:
        kept.add(record.source)
        kept.update(root(ref) for ref in references(record.mapping))
        kept.update(root(ref) for ref in (record.key.refs if record.key else ()))
    return frozenset(kept)


def emptied_columns(mapping: SourceMapping, names: Iterable[str]) -> list[str]:
    """Of a table's or a row's columns, those that erasing the row's own person empties."""
    from pipelines.ingest.extract import LINEAGE_COLUMNS

    kept = kept_columns(mapping)
    return [n for n in names if n not in kept and n not in LINEAGE_COLUMNS]


def emptied(mapping: SourceMapping, column: str, value):
    """One of a row's own cells once its person is erased: nothing, or in the column a row key
    inside a JSON object is read from (`native_key: insured.ref`), that key alone (JSON text,
    or a Parquet struct value), so the record keys of the people nested in the row stay."""
    root, _, path = mapping.native_key.partition(".")
    if value is None or column != root or not path or mapping.native_key in mapping.all_columns:
        return None
    text = isinstance(value, str)
    try:
        key = json.loads(value) if text else value
    except ValueError:
        return None
    names = path.split(".")
    for name in names:
        key = key.get(name) if isinstance(key, dict) else None
    if key is None:
        return None
    for name in reversed(names):
        key = {name: key}
    return json.dumps(key, ensure_ascii=False) if text else key


def empty_own(mapping: SourceMapping, table: pa.Table, positions: Iterable[int]
              ) -> tuple[pa.Table, int]:
    """The table with the own fields of the rows at `positions` emptied (`emptied_columns`) and,
    where it has the lineage column, those rows marked `_redacted`; and how many rows changed."""
    rows = sorted(set(positions))
    if not rows:
        return table, 0
    take = pa.array(rows, pa.int64())
    changed: set[int] = set()
    updates: dict[str, list] = {}
    for column in emptied_columns(mapping, table.column_names):
        kind = table.schema.field(column).type
        old = table.column(column).take(take).to_pylist()
        new = pa.array([emptied(mapping, column, v) for v in old], kind).to_pylist()
        changed.update(p for p, before, after in zip(rows, old, new, strict=True)
                       if before != after)
        updates[column] = new
    if "_redacted" in table.column_names:
        updates["_redacted"] = [True] * len(rows)
    for column, new in updates.items():
        index = table.column_names.index(column)
        values = table.column(index).to_pylist()
        for position, value in zip(rows, new, strict=True):
            values[position] = value
        table = table.set_column(index, column, pa.array(values, table.schema.field(index).type))
    return table, len(changed)


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
    """`.<file>.erased.json` beside a landed file: how many rows erasure removed from it, how
    many nested records it took out of rows that stayed, and how many rows it emptied of their
    own person (`redacted`: they stayed for the people nested in them)."""
    return path.with_name(f".{path.name}.erased.json")


SIDECAR_COUNTS = ("rows", "records", "redacted")


def sidecar_counts(path: Path) -> dict[str, int]:
    marker = sidecar(path)
    if not marker.exists() and not marker.is_symlink():
        return dict.fromkeys(SIDECAR_COUNTS, 0)
    with fileio.open_regular(marker) as f:  # in the landing folder: never read through a link
        counts = json.loads(f.read().decode("utf-8"))
    return {k: int(counts.get(k, 0)) for k in SIDECAR_COUNTS}


def previously_erased(path: Path) -> int:
    return sidecar_counts(path)["rows"]


def previously_erased_records(path: Path) -> int:
    return sidecar_counts(path)["records"]


@dataclass
class Erased:
    """What `drop_erased` did to one source's rows."""

    removed_now: dict[str, int] = field(default_factory=dict)     # rows removed, per file
    removed_before: dict[str, int] = field(default_factory=dict)  # by earlier redactions
    records: int = 0   # nested records taken out of rows that stay, now and earlier
    redacted: int = 0  # rows kept with their own person emptied, for the people nested in them


def drop_erased(mapping: SourceMapping, table: pa.Table, landing_dir: Path, files: list[str]
                ) -> tuple[pa.Table, Erased]:
    """Extract's hook: the raw table without tombstoned rows and nested records, a row whose own
    person is erased but who shares it with other people (`records:`) emptied of that person and
    marked `_redacted`; and the counts. Landed files in the data root are redacted in place."""
    landing = Path(landing_dir)
    erased = Erased(removed_before={f: n for f in files if (n := previously_erased(landing / f))},
                    records=sum(previously_erased_records(landing / f) for f in files))
    hashes = load_hashes()
    mask, kept = erased_rows(mapping, table, hashes)
    removed = _numbers_by_file(table.filter(mask)) if pa.compute.any(mask).as_py() else {}
    redacted = _numbers_by_file(table.take(pa.array(kept, pa.int64()))) if kept else {}
    if kept:
        table, _ = empty_own(mapping, table, kept)
        erased.redacted = len(kept)
    if removed:
        table = table.filter(pa.compute.invert(mask))
    found = erased_elements(mapping, table, hashes)
    if not removed and not redacted and not found:
        return table, erased
    files_of = table.column("_source_file").to_pylist()
    numbers_of = table.column("_row_number").to_pylist()
    for file in sorted(set(removed) | set(redacted) | {files_of[p] for p in found}):
        numbers = removed.get(file, set())
        elements = {numbers_of[p]: e for p, e in found.items() if files_of[p] == file}
        if numbers:
            erased.removed_now[file] = len(numbers)
        erased.records += sum(len(e) for e in elements.values())
        redact_landed_file(mapping, landing / file, numbers, elements, redacted.get(file))
    return redact_elements(table, found), erased


def _numbers_by_file(rows: pa.Table) -> dict[str, set[int]]:
    by_file: dict[str, set[int]] = {}
    for file, number in zip(rows.column("_source_file").to_pylist(),
                            rows.column("_row_number").to_pylist(), strict=True):
        by_file.setdefault(file, set()).add(number)
    return by_file


def redact_landed_file(mapping: SourceMapping, path: Path, row_numbers: set[int],
                       elements: dict[int, list[Element]] | None = None,
                       redacted: set[int] | None = None) -> bool:
    """Rewrite a landed file without the given data rows, without the given nested records of
    other rows (row number -> elements), and with the `redacted` rows emptied of their own person
    (`emptied_columns`); rows numbered by extract's own rule (`CsvRecords`, `jsonl_lines`), so
    the row removed is the row extract read under that number. Every other line keeps its bytes.

    Written beside the file and renamed over it; what changed is added to its sidecar, and a file
    that would not change is left alone. Files outside the data root belong to someone else's
    drop zone and are left as they are. The file is read as extract reads it (no symlink, a
    regular file), and the new copies are created afresh (never written through a link planted
    under their temporary names).
    """
    from pipelines.ingest.extract import open_landed

    elements, redacted = elements or {}, redacted or set()
    if not path.resolve().is_relative_to(settings.data_root()):
        log.warning("%s holds erased rows but is outside the data root; not rewritten", path)
        return False
    tmp = path.with_name(f".{path.name}.redacting")
    with open_landed(mapping.name, path) as landed:
        if mapping.format == "parquet":
            table, counts = _redacted_parquet(mapping, landed, row_numbers, elements, redacted)
            if table is None:
                return False
            with fileio.create_new(tmp) as out:
                pq.write_table(table, out, compression="zstd")
        else:
            plan_of = _csv_plan if mapping.format == "csv" else _jsonl_plan
            plan, counts = plan_of(mapping, landed, path.name, row_numbers, elements, redacted)
            if not plan:
                return False
            with fileio.create_new(tmp) as out:
                _copy_lines(mapping, landed, path.name, plan, out)
    total = sidecar_counts(path)
    for key, n in counts.items():
        total[key] += n
    marker = sidecar(path)
    marker_tmp = marker.with_name(marker.name + ".tmp")
    with fileio.create_new(marker_tmp) as f:
        f.write((json.dumps({k: n for k, n in total.items() if n or k == "rows"}) + "\n")
                .encode("utf-8"))
    fileio.replace(tmp, path)
    fileio.replace(marker_tmp, marker)
    return True


# Physical line number -> what replaces it: a record's new text on its first line, "" for a line
# that goes (a removed record's, or a rewritten record's further lines); other lines are copied
Plan = dict[int, str]


def _csv_plan(mapping: SourceMapping, landed: BinaryIO, name: str, row_numbers: set[int],
              elements: dict[int, list[Element]], redacted: set[int]
              ) -> tuple[Plan, dict[str, int]]:
    """The lines to change in a landed CSV, found through extract's CsvRecords: a removed row's
    physical lines (one line of a runaway quote split back is one row), a row losing a nested
    record or its own person written anew."""
    from pipelines.ingest.extract import CsvRecords

    records = CsvRecords(mapping, landed, name)
    plan: Plan = {}
    counts = dict.fromkeys(SIDECAR_COUNTS, 0)
    wanted = row_numbers | set(elements) | redacted
    if records.header is None or not wanted:
        return plan, counts
    header = records.header
    for number, lines, *_ in records:
        if number not in wanted:
            continue
        if number in row_numbers:
            plan.update((line.number, "") for line in lines)
            counts["rows"] += 1
            continue
        texts = [line.text for line in lines]
        mine = elements.get(number, [])
        text = _csv_rewritten(mapping, header, texts, mine, number in redacted)
        emptied_now = number in redacted and text != _csv_rewritten(mapping, header, texts, mine,
                                                                    False)
        if mine or emptied_now:
            plan.update((line.number, "") for line in lines[1:])
            plan[lines[0].number] = text
            counts["records"] += len(mine)
            counts["redacted"] += emptied_now
    return plan, counts


def _csv_rewritten(mapping: SourceMapping, header: list[str], texts: list[str],
                   elements: list[Element], empty: bool) -> str:
    """A CSV record (its physical lines) written anew: its `from` cells without the nested
    records, and with `empty` its own person's cells emptied; its line ending kept."""
    row = next(csv.reader(texts, delimiter=mapping.delimiter, quotechar=mapping.quote,
                          strict=True))
    own = set(emptied_columns(mapping, header)) if empty else set()
    cells = []
    for column, cell in zip(header, row, strict=False):
        value = without_elements(cell, elements, column)
        cells.append(emptied(mapping, column, value) if column in own else value)
    cells += row[len(header):]
    out = io.StringIO()
    # "\r\n" as the terminator so a cell holding a line break is always quoted
    csv.writer(out, delimiter=mapping.delimiter, quotechar=mapping.quote,
               lineterminator="\r\n").writerow(["" if c is None else c for c in cells])
    last = texts[-1]
    return out.getvalue()[:-2] + last[len(last.rstrip("\r\n")):]


def _jsonl_plan(mapping: SourceMapping, landed: BinaryIO, name: str, row_numbers: set[int],
                elements: dict[int, list[Element]], redacted: set[int]
                ) -> tuple[Plan, dict[str, int]]:
    """The lines to change in a landed JSON Lines file, found through extract's jsonl_lines
    (malformed and, with `on_bad_line: quarantine`, undecodable lines are rows; the trailer is
    none)."""
    from pipelines.ingest.extract import jsonl_lines

    plan: Plan = {}
    counts = dict.fromkeys(SIDECAR_COUNTS, 0)
    wanted = row_numbers | set(elements) | redacted
    if not wanted:
        return plan, counts
    for number, line in jsonl_lines(mapping, landed, name):
        if number not in wanted:
            continue
        if number in row_numbers:
            plan[line.number] = ""
            counts["rows"] += 1
            continue
        mine = elements.get(number, [])
        text = _jsonl_rewritten(mapping, line.text, mine, number in redacted)
        emptied_now = number in redacted and text != _jsonl_rewritten(mapping, line.text, mine,
                                                                      False)
        if mine or emptied_now:
            plan[line.number] = text
            counts["records"] += len(mine)
            counts["redacted"] += emptied_now
    return plan, counts


def _jsonl_rewritten(mapping: SourceMapping, text: str, elements: list[Element],
                     empty: bool) -> str:
    """A JSON line written anew (the same object): its `from` values without the nested
    records, and with `empty` its own person's values emptied; its line ending kept."""
    obj = json.loads(text)
    for column in {c for c, _ in elements}:
        obj[column] = without_elements(obj.get(column), elements, column)
    if empty:
        for column in emptied_columns(mapping, list(obj)):
            obj[column] = emptied(mapping, column, obj[column])
    return json.dumps(obj, ensure_ascii=False) + text[len(text.rstrip("\r\n")):]


def _copy_lines(mapping: SourceMapping, landed: BinaryIO, name: str, plan: Plan,
                out: BinaryIO) -> None:
    """Every physical line of the landed file as it was (its bytes: an undecodable line a
    quarantine policy keeps too), but those the plan changes."""
    from pipelines.ingest.extract import file_lines

    encoder = codecs.getincrementalencoder(mapping.encoding)()
    for line in file_lines(landed, name, mapping.encoding, mapping.name, "quarantine",
                           keep_bytes=True):
        new = plan.get(line.number)
        if new is None:  # lines of a stream-decoded encoding (UTF-16) carry no bytes
            out.write(line.raw if line.raw is not None else encoder.encode(line.text))
        elif new:
            out.write(_bom(line, mapping.encoding) + encoder.encode(new))
    out.write(encoder.encode("", final=True))


def _bom(line: Line, encoding: str) -> bytes:
    """The byte order mark the file's first line starts with (extract drops it from the text)."""
    if line.number != 1 or line.raw is None:
        return b""
    body = line.text.encode(encoding)
    return line.raw[:len(line.raw) - len(body)] if body and line.raw.endswith(body) else b""


def _redacted_parquet(mapping: SourceMapping, landed: BinaryIO, row_numbers: set[int],
                      elements: dict[int, list[Element]], redacted: set[int]
                      ) -> tuple[pa.Table | None, dict[str, int]]:
    """The landed Parquet table redacted (rows are numbered from 1 in file order), or None if
    nothing changes."""
    table = pq.read_table(landed)
    new = redact_elements(table, {n - 1: e for n, e in elements.items()}) if elements else table
    new, emptied_now = empty_own(mapping, new, [n - 1 for n in redacted if n <= table.num_rows])
    keep = [i for i in range(table.num_rows) if i + 1 not in row_numbers]
    counts = {"rows": table.num_rows - len(keep),
              "records": sum(len(e) for e in elements.values()), "redacted": emptied_now}
    if not any(counts.values()):
        return None, counts
    return new.take(pa.array(keep, pa.int64())), counts
