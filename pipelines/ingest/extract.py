"""Extract: landed export files -> `raw/<source>.parquet`, every value as text, plus lineage.

Raw is the export as it arrived: values are never trimmed or fixed here, only decoded. Lineage
columns (`_source_system`, `_source_file`, `_row_number`, `_run_id`) say where each row came from;
a record the parser could not split into the declared columns is kept too, with `_malformed`
saying why, so validation can quarantine it instead of losing it; `_redacted` marks a row whose
own person was erased and which stays, emptied, for the other people nested in it (tombstone.py).
Rows are numbered per file by one rule that erasure's redaction of the landed file uses too
(`CsvRecords`, `jsonl_lines`): a CSV record after the header, one malformed row per physical line
where an unbalanced quote was split back, a JSON Lines non-blank line; blank lines and a declared
trailer are no rows.
Decoding is strict and streamed in chunks: a byte sequence that is not valid in the declared
encoding stops the source with the file and byte offset, never mojibake.
Every landed file is opened once, without following a symlink, and read only if it is a regular
file (`fileio.open_regular`); where the mapping says the export declares its row count (a trailer
line or a control file, `declared_rows`), the rows read from each file must add up to it.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import BinaryIO

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import fileio
from pipelines.identify.tombstone import drop_erased
from pipelines.ingest.errors import SourceRejected
from pipelines.ingest.mapping import SourceMapping
from pipelines.settings import RunPaths, duckdb_config
from pipelines.sql import quote_ident, quote_literal, quote_path

LINEAGE_COLUMNS = ("_source_system", "_source_file", "_row_number", "_run_id", "_malformed",
                   "_extra_values", "_redacted")
BATCH_ROWS = 100_000
CHUNK_BYTES = 4 << 20
CONTROL_FILE_BYTES = 1 << 20  # a control file holds a count, not data
csv.field_size_limit(1 << 30)  # free-text notes can be long; the default 128 KiB is not a rule


@dataclass
class ExtractResult:
    """What extraction read for one source."""

    source: str
    raw_path: Path
    files: list[str] = field(default_factory=list)
    rows_per_file: dict[str, int] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    malformed_rows: int = 0
    # rows of erased persons (tombstoned keys, see pipelines/identify/tombstone.py): counted in
    # rows_per_file, not written to raw, so rows read = accepted + quarantined + erased
    erased_rows: int = 0
    # rows each file says it holds (mapping `declared_rows`), equal to rows_per_file once checked
    declared_rows: dict[str, int] = field(default_factory=dict)
    # erased persons nested in rows that stay (`records:`), taken out of them
    erased_records: int = 0
    # of erased_rows, rows whose own person was erased but which hold other people (`records:`):
    # written to raw with their own fields emptied and `_redacted`, for those people's records
    redacted_rows: int = 0

    @property
    def rows_read(self) -> int:
        return sum(self.rows_per_file.values())


def raw_path(run: RunPaths, source: str) -> Path:
    return run.raw_dir / f"{source}.parquet"


def find_landed_files(mapping: SourceMapping, landing_dir: Path) -> list[Path]:
    """The files of this source in the landing folder (the mapping's pattern), in name order.

    Every match is resolved first: a file reached through a symlink, or lying outside the landing
    folder (a `..` pattern), or a FIFO, socket or device, is refused with the file and the rule,
    never read. Folders are skipped, and so are the control files of the matched files (when
    the mapping declares row counts in `control_file`s).
    """
    landing = Path(landing_dir)
    root = landing.resolve()
    try:
        matches = sorted(landing.glob(mapping.file_pattern))
    except (NotImplementedError, ValueError) as exc:  # an absolute pattern
        raise SourceRejected(mapping.name, mapping.file_pattern, None, "landing_path",
                             f"file_pattern {mapping.file_pattern!r} cannot be matched inside "
                             f"{landing}: {exc}") from None
    files = []
    for path in matches:
        relative = path.relative_to(landing)
        if any((landing / Path(*relative.parts[:i])).is_symlink()
               for i in range(1, len(relative.parts) + 1)):
            raise SourceRejected(mapping.name, str(relative), None, "no_symlink",
                                 f"{path} is or passes through a symlink (to "
                                 f"{path.resolve()}); landed files must be regular files in "
                                 f"{root}")
        if not path.resolve().is_relative_to(root):
            raise SourceRejected(mapping.name, str(relative), None, "landing_path",
                                 f"{path} resolves to {path.resolve()}, outside the landing "
                                 f"folder {root}")
        mode = path.lstat().st_mode
        if stat.S_ISREG(mode):
            files.append(path)
        elif not stat.S_ISDIR(mode):
            kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket or device"
            raise SourceRejected(mapping.name, str(relative), None, "regular_file",
                                 f"{path} is {kind}, not a regular file; landed exports must be "
                                 "regular files")
    if mapping.declared_rows is not None and mapping.declared_rows.control_file is not None:
        controls = {mapping.declared_rows.control_name(p.name) for p in files}
        files = [p for p in files if p.name not in controls]
    if not files:
        raise SourceRejected(mapping.name, mapping.file_pattern, None, "file_present",
                             f"no file matching {mapping.file_pattern!r} in {landing_dir}")
    return files


def extract_source(mapping: SourceMapping, landing_dir: Path, run: RunPaths) -> ExtractResult:
    """Read every landed file of `mapping`'s source into `raw/<source>.parquet`."""
    run.raw_dir.mkdir(parents=True, exist_ok=True)
    out = raw_path(run, mapping.name)
    result = ExtractResult(source=mapping.name, raw_path=out)
    tables: list[pa.Table] = []
    declared: dict[str, DeclaredCount] = {}
    for path in find_landed_files(mapping, landing_dir):
        found = declared[path.name] = _control_file_count(mapping, path, landing_dir)
        n = 0
        for batch in _read_file(mapping, path, landing_dir, found):
            batch = _with_lineage(batch, mapping.name, path.name, run.run_id, first_row=n + 1)
            n += batch.num_rows
            tables.append(batch)
        result.files.append(path.name)
        result.rows_per_file[path.name] = n
    table = _combine(tables)
    table, erased = drop_erased(mapping, table, landing_dir, result.files)
    for file, n in erased.removed_before.items():  # rows an erasure removed from the landed file
        result.rows_per_file[file] += n
    result.erased_rows = (sum(erased.removed_now.values()) + sum(erased.removed_before.values())
                          + erased.redacted)
    result.erased_records, result.redacted_rows = erased.records, erased.redacted
    # after drop_erased, so a file that fails its count still has an erased person's rows removed
    result.declared_rows = check_declared_rows(mapping, result.rows_per_file, declared,
                                               erased.removed_before)
    result.columns = [c for c in table.column_names if c not in LINEAGE_COLUMNS]
    result.malformed_rows = table.num_rows - table["_malformed"].null_count if table.num_rows else 0
    tmp = out.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="zstd")
    fileio.replace(tmp, out)
    manifest = {"source": mapping.name, "files": result.files, "rows_per_file": result.rows_per_file,
                "columns": result.columns, "malformed_rows": result.malformed_rows,
                "erased_rows": result.erased_rows, "erased_records": result.erased_records,
                "redacted_rows": result.redacted_rows}
    if result.declared_rows:
        manifest["declared_rows"] = result.declared_rows
    out.with_suffix(".json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return result


def _combine(tables: list[pa.Table]) -> pa.Table:
    if not tables:
        return _with_lineage(pa.table({}), "", "", "", first_row=1)
    # Files of one source may differ in columns (drift shows up in validation); union by name.
    return pa.concat_tables(tables, promote_options="permissive")


def _with_lineage(table: pa.Table, source: str, file: str, run_id: str, first_row: int) -> pa.Table:
    n = table.num_rows
    extras = {
        "_source_system": pa.array([source] * n, pa.string()),
        "_source_file": pa.array([file] * n, pa.string()),
        "_row_number": pa.array(range(first_row, first_row + n), pa.int64()),
        "_run_id": pa.array([run_id] * n, pa.string()),
    }
    for name in ("_malformed", "_extra_values"):
        if name not in table.column_names:
            extras[name] = pa.nulls(n, pa.string())
    extras["_redacted"] = pa.nulls(n, pa.bool_())  # set by drop_erased
    for name, values in extras.items():
        table = table.append_column(name, values)
    return table


def open_landed(source: str, path: Path, root: Path | None = None) -> BinaryIO:
    """A landed file opened for reading: no symlink (below `root`, the landing folder), a regular
    file; else the source is refused (`no_symlink`, `regular_file`) naming the file."""
    try:
        return fileio.open_regular(path, root)
    except fileio.NotRegularFile as exc:
        raise SourceRejected(source, path.name, None, exc.rule,
                             f"{exc.detail} (seen when it was opened for reading); landed "
                             "exports are read only from regular files in the landing folder"
                             ) from None
    except FileNotFoundError:
        raise SourceRejected(source, path.name, None, "file_present",
                             f"{path} was removed after it was listed") from None


def _read_file(mapping: SourceMapping, path: Path, root: Path | None = None,
               declared: DeclaredCount | None = None) -> Iterator[pa.Table]:
    """The file's rows as text tables; a trailer (`declared_rows.trailer`) goes to `declared`."""
    declared = declared if declared is not None else DeclaredCount()
    with open_landed(mapping.name, path, root) as f:
        if mapping.format == "csv":
            yield from _read_csv(mapping, f, path.name, declared)
        elif mapping.format == "jsonl":
            yield from _read_jsonl(mapping, f, path, declared)
        else:
            yield from _read_parquet(mapping, f, path.name)


# --------------------------------------------------------------------------------------------
# Declared row counts (mapping `declared_rows`): a trailer line, or a control file


@dataclass
class DeclaredCount:
    """What one landed file says about its own row count: the number and where it was written,
    or why there is none to check against (`problem`, completing "<file> ...")."""

    declared: int | None = None
    where: str = ""
    problem: str | None = None


@cache
def _re2(pattern: str):
    import re2

    return re2.compile(pattern)


def _count(text: str, pattern: str | None) -> int | None:
    """The row count in `text`: group 1 of `pattern` (searched), or the whole text; None if none."""
    if pattern is None:
        value: str | None = text.strip()
    else:
        match = _re2(pattern).search(text)
        value = match.group(1) if match else None
    return int(value) if value and value.isascii() and value.isdigit() else None


def without_trailer(lines: Iterator[Line], pattern: str, found: DeclaredCount) -> Iterator[Line]:
    """`lines` without the file's trailer, streamed: the last non-blank line (and blank lines
    after it) is held back until the file ends, then read as the trailer, its count going into
    `found`; a last line that is no trailer is a data row after all and is passed on."""
    held: list[Line] = []
    for line in lines:
        if line.text and not line.text.isspace():
            yield from held
            held = [line]
        elif held:
            held.append(line)
        else:
            yield line
    if not held:
        found.problem = (f"is empty, so it has no trailer line matching '{pattern}'; it may "
                         "have been cut short in transfer")
        return
    last = held[0]
    count = None if last.problem else _count(last.text.rstrip("\r\n"), pattern)
    if count is None:
        found.problem = (f"has no trailer: its last line (line {last.number}) does not match "
                         f"'{pattern}' with a number in group 1, so the file may have been cut "
                         "short in transfer (or the export stopped writing its trailer); land "
                         "the complete file")
        yield from held
        return
    found.declared, found.where = count, f"trailer line {last.number}"


def _control_file_count(mapping: SourceMapping, path: Path, root: Path) -> DeclaredCount:
    """The count in the data file's control file (`declared_rows.control_file`), or why none."""
    spec = mapping.declared_rows
    name = spec.control_name(path.name) if spec is not None else None
    if spec is None or name is None:
        return DeclaredCount()
    control = path.with_name(name)
    if not control.exists() and not control.is_symlink():
        return DeclaredCount(problem=f"has no control file {name} beside it (declared_rows."
                                     f"control_file {spec.control_file!r}); the export may not "
                                     "be complete yet: land the control file with it")
    with open_landed(mapping.name, control, root) as f:
        data = f.read(CONTROL_FILE_BYTES + 1)
    where = f"control file {name}"
    if len(data) > CONTROL_FILE_BYTES:
        return DeclaredCount(problem=f"has a {where} larger than {CONTROL_FILE_BYTES >> 20} MiB, "
                                     "which cannot be a control file")
    try:
        text = data.decode(mapping.encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        return DeclaredCount(problem=f"has a {where} that is not valid {mapping.encoding} "
                                     f"(byte offset {exc.start})")
    count = _count(text, spec.pattern)
    if count is None:
        why = (f"nothing in it matches '{spec.pattern}' with a number in group 1" if spec.pattern
               else "it must hold just the number of data rows (or set declared_rows.pattern "
                    "to find the count in its text)")
        return DeclaredCount(problem=f"has a {where} with no row count: {why}")
    return DeclaredCount(declared=count, where=where)


def check_declared_rows(mapping: SourceMapping, rows_per_file: dict[str, int],
                        declared: dict[str, DeclaredCount],
                        erased_before: dict[str, int] | None = None) -> dict[str, int]:
    """Each file's declared count against the rows read from it (with those an earlier erasure
    removed from it); the counts, or `SourceRejected` (`declared_row_count`) naming the file,
    both numbers and why."""
    if mapping.declared_rows is None:
        return {}
    counted = {"csv": "records after the header, malformed ones included",
               "jsonl": "non-blank lines, malformed ones included",
               "parquet": "rows"}[mapping.format]
    if mapping.declared_rows.trailer:
        counted += ", the trailer not counted"
    failures = []
    for file, found in declared.items():
        n = rows_per_file[file]
        if found.problem is not None:
            failures.append((file, f"{file} {found.problem}."))
            continue
        if found.declared == n:
            continue
        assert found.declared is not None
        how = counted
        if erased := (erased_before or {}).get(file):
            how += f"; {erased} of them removed from the landed file by an earlier erasure"
        off = abs(found.declared - n)
        rows = f"{off} row{'s' if off != 1 else ''}"
        gap = (f"{rows} short; a quote left open that swallowed rows, or a transfer cut short, "
               "loses rows this way" if n < found.declared else
               f"{rows} more than declared; rows added after the count was taken, or line "
               "breaks splitting records, do this")
        failures.append((file, f"{file} declares {found.declared} data rows ({found.where}) "
                               f"but {n} were read from it ({how}): {gap}. Compare it with "
                               "the source system's export and land it again."))
    if not failures:
        return {file: found.declared for file, found in declared.items()
                if found.declared is not None}
    detail = failures[0][1]
    if len(failures) > 1:
        detail += " Also " + " ".join(text for _, text in failures[1:])
    raise SourceRejected(mapping.name, failures[0][0], None, "declared_row_count", detail)


# --------------------------------------------------------------------------------------------
# Decoding


@dataclass(frozen=True, slots=True)
class Line:
    """One physical line of a landed file: its 1-based number, its text (newline kept) and, for a
    line that is not valid in the declared encoding, why (the text then shows the bytes as \\xNN)."""

    number: int
    text: str
    problem: str | None = None
    raw: bytes | None = None  # the line's bytes as landed (BOM included), if asked for


def file_lines(f: BinaryIO, name: str, encoding: str, source: str = "",
               on_bad_line: str = "fail", keep_bytes: bool = False) -> Iterator[Line]:
    """The lines of landed file `name`, opened as `f` (read from its start), decoded strictly in
    chunks; BOM removed.

    A line with bytes that are not valid in `encoding` stops the source with file, line and byte
    offset (`on_bad_line: fail`), or comes back with its problem so the reader can quarantine it
    (`quarantine`). Encodings in which a byte 0x0A may be part of a character (UTF-16/32) or that
    carry state across lines are decoded as one stream and always fail. With `keep_bytes` each
    line also carries its bytes (redaction copies the lines it keeps byte for byte); lines of a
    stream-decoded encoding have none.
    """
    f.seek(0)
    if not _line_safe(encoding):
        yield from _stream_lines(f, name, encoding, source)
        return
    number = 0
    offset = 0  # file offset of `pending`
    pending = b""
    first = True
    while True:
        chunk = f.read(CHUNK_BYTES)
        data = pending + chunk
        cut = len(data) if not chunk else data.rfind(b"\n") + 1
        whole, pending = data[:cut], data[cut:]
        lines: list[tuple[str, str | None]]
        try:
            lines = [(ln, None) for ln in _split_lines(whole.decode(encoding))]
        except UnicodeDecodeError:
            lines = _lines_one_by_one(whole, encoding, offset)
        raws = _split_lines(whole) if keep_bytes else []
        if len(raws) != len(lines):  # not asked for (a line-safe encoding splits bytes alike)
            raws = [None] * len(lines)
        for (text, problem), raw in zip(lines, raws, strict=True):
            number += 1
            if first:
                text, first = text.removeprefix("\ufeff"), False
            if problem and on_bad_line != "quarantine":
                raise SourceRejected(source, name, None, "encoding", f"line {number}, {problem}")
            yield Line(number, text, problem, raw)
        offset += cut
        if not chunk:
            break


def _line_safe(encoding: str) -> bool:
    name = codecs.lookup(encoding).name
    return "a\n".encode(encoding) == b"a\n" and not name.startswith(("iso2022", "hz", "utf-7"))


def _split_lines(text):
    """Lines ending in "\\n" (kept); only "\\n" ends a line, a lone "\\r" stays in its line."""
    parts = text.split("\n" if isinstance(text, str) else b"\n")
    last = parts.pop()
    lines = [part + ("\n" if isinstance(text, str) else b"\n") for part in parts]
    return lines + [last] if last else lines


def _lines_one_by_one(data: bytes, encoding: str, offset: int) -> list[tuple[str, str | None]]:
    """Decode line by line (after a chunk failed): (text, problem) with the bad byte's offset."""
    out: list[tuple[str, str | None]] = []
    start = offset
    for raw in _split_lines(data):
        try:
            out.append((raw.decode(encoding), None))
        except UnicodeDecodeError as exc:
            bad = raw[exc.start:exc.end].hex(" ") or "(truncated sequence)"
            out.append((raw.decode(encoding, "backslashreplace"),
                        f"byte offset {start + exc.start}: bytes {bad} are not valid {encoding}"))
        start += len(raw)
    return out


def _stream_lines(f: BinaryIO, name: str, encoding: str, source: str) -> Iterator[Line]:
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset = 0  # bytes read so far
    pending = ""
    number = 0
    while True:
        chunk = f.read(CHUNK_BYTES)
        final = not chunk
        held = decoder.getstate()[0]
        try:
            text = decoder.decode(chunk, final)
        except UnicodeDecodeError:
            raise _decode_failure(source, name, encoding, offset - len(held), held + chunk) from None
        offset += len(chunk)
        if number == 0 and text:
            text = text.removeprefix("\ufeff")
        pending += text
        lines = pending.split("\n")
        pending = lines.pop()
        for line in lines:
            number += 1
            yield Line(number, line + "\n")
        if final:
            break
    if pending:
        yield Line(number + 1, pending)


def _decode_failure(source: str, name: str, encoding: str, start: int, data: bytes) -> SourceRejected:
    """Locate the first undecodable byte (data begins at file offset `start`) for the message."""
    try:
        data.decode(encoding)
        position, bad = start + len(data), b""  # only the end of the file was incomplete
    except UnicodeDecodeError as exc:
        position, bad = start + exc.start, data[exc.start:exc.end]
    return SourceRejected(source, name, None, "encoding",
                          f"byte offset {position}: bytes {bad.hex(' ') or '(truncated sequence)'} "
                          f"are not valid {encoding}")


# --------------------------------------------------------------------------------------------
# Readers, one per format; each yields tables of text columns (+ _malformed/_extra_values)


class _RecordingLines:
    """Line iterator that remembers the lines the CSV parser consumed for the current record."""

    def __init__(self, lines: Iterator[Line]):
        self.lines = lines
        self.taken: list[Line] = []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        self.taken.append(line)
        return line.text

    def take(self) -> list[Line]:
        taken, self.taken = self.taken, []
        return taken


def _data_lines(mapping: SourceMapping, f: BinaryIO, name: str,
                declared: DeclaredCount) -> Iterator[Line]:
    """The file's lines, without its trailer when the mapping declares one."""
    lines = file_lines(f, name, mapping.encoding, mapping.name, mapping.on_bad_line)
    trailer = mapping.declared_rows.trailer if mapping.declared_rows else None
    return without_trailer(lines, trailer, declared) if trailer else lines


def _read_csv(mapping: SourceMapping, f: BinaryIO, name: str,
              declared: DeclaredCount) -> Iterator[pa.Table]:
    records = CsvRecords(mapping, f, name, declared)
    header = records.header
    if header is None:
        return  # a zero-byte file: no columns, no rows (validation says so)
    rows: list[list[str | None]] = []
    malformed: list[str | None] = []
    extra: list[str | None] = []
    yielded = False
    for _, _, values, problem, leftover in records:
        rows.append(values)
        malformed.append(problem)
        extra.append(leftover)
        if len(rows) >= BATCH_ROWS:
            yield _text_table(header, rows, malformed, extra)
            yielded = True
            rows, malformed, extra = [], [], []
    if rows or not yielded:
        yield _text_table(header, rows, malformed, extra)


CsvRow = tuple[int, list[Line], list[str | None], str | None, str | None]


class CsvRecords:
    """The data rows of a landed CSV file as extract reads and numbers them — the one rule that
    erasure's redaction of the file uses too (`tombstone.redact_landed_file`).

    Iterating gives (number, lines, values, problem, leftover) per row: its 1-based number in
    the file after the header, the physical lines it was read from, its values (one per header
    name), why it is malformed (or None) and the fields beyond the header. A blank line is no row,
    nor is a declared trailer; a record the parser could not finish, or whose quoted field runs
    over a line that is a complete row by itself, is one malformed row per physical line.
    """

    def __init__(self, mapping: SourceMapping, f: BinaryIO, name: str,
                 declared: DeclaredCount | None = None):
        self.mapping = mapping
        self._lines = _RecordingLines(_data_lines(mapping, f, name,
                                                  declared if declared is not None
                                                  else DeclaredCount()))
        self._reader = csv.reader(self._lines, delimiter=mapping.delimiter,
                                  quotechar=mapping.quote, strict=True)
        self.header: list[str] | None = None  # None: a zero-byte file
        try:
            header = next(self._reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise SourceRejected(mapping.name, name, None, "header",
                                 f"header line cannot be parsed: {exc}") from None
        if bad := [ln for ln in self._lines.take() if ln.problem]:
            raise SourceRejected(mapping.name, name, None, "encoding",
                                 f"header line {bad[0].number}, {bad[0].problem}")
        self.header = _unique_names(header)

    def __iter__(self) -> Iterator[CsvRow]:
        if self.header is None:
            return
        width = len(self.header)
        lines, reader = self._lines, self._reader
        number = 0
        while True:
            try:
                row: list[str | None] | None = list(next(reader))
                error = None
            except StopIteration:
                break
            except csv.Error as exc:
                row, error = None, str(exc)
            taken = lines.take()
            if error is None and len(taken) == 1 and not taken[0].problem and row is not None \
                    and len(row) == width:
                number += 1
                yield number, taken, row, None, None  # the common case: one clean line, one row
            elif row == [] and error is None:
                continue  # blank line
            else:
                for values, problem, leftover, read_from in _csv_record(row, error, taken, width,
                                                                        self.mapping):
                    number += 1
                    yield number, read_from, values, problem, leftover


def _csv_record(row: list[str | None] | None, error: str | None, taken: list[Line], width: int,
                mapping: SourceMapping
                ) -> list[tuple[list[str | None], str | None, str | None, list[Line]]]:
    """One parsed record as (values, problem, leftover, lines read) rows; several when it must
    be split.

    A record the parser could not finish, or whose quoted field runs over a line that is a
    complete row by itself (an unbalanced quote swallowing the rows after it), is returned as one
    malformed row per physical line, each naming its line, so no row merges silently into another.
    """
    where = (f"line {taken[0].number}" if len(taken) == 1
             else f"lines {taken[0].number}-{taken[-1].number}") if taken else "end of file"
    undecodable = [ln for ln in taken if ln.problem]
    swallowed = [ln for ln in taken[1:] if _complete_row(ln.text, width, mapping)]
    if len(taken) > 1 and (error is not None or swallowed or undecodable):
        if error is not None or swallowed:
            why = (f"line {swallowed[0].number} is a complete row by itself" if swallowed
                   else f"the parser stopped: {error}")
            cause = (f"unbalanced quote: the quoted field opened on line {taken[0].number} runs "
                     f"over {where} ({why})")
        else:
            cause = f"a record over {where} holds an undecodable line"
        return [([None] * width,
                 f"{cause}; line {ln.number} quarantined on its own"
                 + (f" ({ln.problem})" if ln.problem else ""),
                 json.dumps([ln.text], ensure_ascii=False), [ln]) for ln in taken]
    if undecodable:
        return [([None] * width, f"undecodable record ({where}, {undecodable[0].problem})",
                 json.dumps([taken[0].text], ensure_ascii=False), taken)]
    if error is not None:
        return [([None] * width, f"unparseable record ({where}): {error}",
                 json.dumps([taken[0].text] if taken else [], ensure_ascii=False), taken)]
    row = row or []  # parsed without error: the parser gave a row
    if len(row) != width:
        leftover = json.dumps(row[width:], ensure_ascii=False) if len(row) > width else None
        return [((row + [None] * width)[:width],
                 f"expected {width} fields, found {len(row)} ({where})", leftover, taken)]
    return [(row, None, None, taken)]


def _complete_row(text: str, width: int, mapping: SourceMapping) -> bool:
    """Whether one line parses alone into exactly `width` fields (a row swallowed by a quote)."""
    if width < 3 or mapping.delimiter not in text:
        return False  # with one or two columns any line with a delimiter would look complete
    try:
        fields = next(csv.reader([text], delimiter=mapping.delimiter, quotechar=mapping.quote,
                                 strict=True), [])
    except csv.Error:
        return False
    return len(fields) == width


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        name = name or "unnamed"
        if name in seen:
            seen[name] += 1
            name = f"{name}__{seen[name]}"
        else:
            seen[name] = 0
        out.append(name)
    return out


def _text_table(header: list[str], rows: list, malformed: list, extra: list) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(header)
    arrays = {name: pa.array(values, pa.string()) for name, values in zip(header, columns, strict=True)}
    arrays["_malformed"] = pa.array(malformed, pa.string())
    arrays["_extra_values"] = pa.array(extra, pa.string())
    return pa.table(arrays)


def _read_jsonl(mapping: SourceMapping, f: BinaryIO, path: Path,
                declared: DeclaredCount) -> Iterator[pa.Table]:
    trailer = mapping.declared_rows.trailer if mapping.declared_rows else None
    if codecs.lookup(mapping.encoding).name == "utf-8":
        # A trailer (no JSON) is found from the file's end; without one the careful reader says why.
        count = _count(last, trailer) if trailer and (last := _last_line(f)) else None
        if not trailer or count is not None:
            # DuckDB reads the descriptor opened above (its /proc link), not the path again
            table = read_jsonl_duckdb(fileio.descriptor_path(f, path), trailer=bool(trailer))
            # keys outside the mapping may be a few odd lines: the line-by-line reader tells which
            if table is not None and (mapping.validation.allow_unexpected_columns or not [
                    c for c in table.column_names if c not in mapping.all_columns + LINEAGE_COLUMNS]):
                if trailer:
                    declared.declared, declared.where = count, "trailer, the last line"
                yield table
                return
    yield from read_jsonl_python(mapping, f, path.name, declared)


def _last_line(f: BinaryIO, reach: int = 1 << 16) -> str | None:
    """The last non-blank line of a UTF-8 file, read from its last `reach` bytes (a trailer is
    short); None if none lies wholly within them or it does not decode."""
    size = os.fstat(f.fileno()).st_size
    f.seek(max(0, size - reach))
    pieces = f.read(reach).split(b"\n")
    for raw in reversed(pieces if size <= reach else pieces[1:]):  # [0] may be part of a line
        try:
            text = raw.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError:
            return None
        if text and not text.isspace():
            return text.rstrip("\r")
    return None


def read_jsonl_duckdb(path: Path | str, trailer: bool = False) -> pa.Table | None:
    """Well-formed UTF-8 JSON Lines, parsed by DuckDB; None if any line needs the careful reader.

    One text column per top-level key (first-appearance order); nested objects and lists stay
    JSON text. Any parse or decoding problem returns None, and the line-by-line reader (which
    quarantines bad lines and names bad bytes) takes over. With `trailer` the last line is no
    JSON: it must be the one line DuckDB cannot parse, and is left out.
    """
    literal = quote_path(path)
    # with ignore_errors a line DuckDB cannot parse gives a NULL row in its place
    options = "format = 'newline_delimited'" + (", ignore_errors = true" if trailer else "")
    try:
        with duckdb.connect(config=duckdb_config()) as con:
            con.execute("SET enable_progress_bar = false")
            con.execute(f"""CREATE TEMP TABLE j AS SELECT json FROM
                            read_json_objects({literal}, {options})""")
            if trailer:
                unparsed, last_unparsed, last = con.execute(
                    "SELECT count(*) FILTER (WHERE json IS NULL), max(rowid) FILTER (WHERE json "
                    "IS NULL), max(rowid) FROM j").fetchall()[0]
                if unparsed != 1 or last_unparsed != last:
                    return None
                con.execute("DELETE FROM j WHERE json IS NULL")
            if con.execute("SELECT count(*) FROM j WHERE json_type(json) <> 'OBJECT'").fetchall()[0][0]:
                return None
            keys = [k for (k,) in con.execute("""
                WITH k AS (SELECT rowid AS r, unnest(json_keys(json)) AS key,
                                  generate_subscripts(json_keys(json), 1) AS pos FROM j)
                SELECT key FROM k GROUP BY key ORDER BY min(r), min(pos)""").fetchall()]
            # Parsed once, every value kept as its JSON text, then scalars unquoted.
            spec = "{" + ", ".join(f"{_sql_text(k)}: 'JSON'" for k in keys) + "}"
            columns = [
                f"CASE WHEN json_type({_sql_name(k)}) IN ('OBJECT', 'ARRAY') "
                f"THEN {_sql_name(k)}::VARCHAR WHEN json_type({_sql_name(k)}) = 'NULL' THEN NULL "
                f"ELSE {_sql_name(k)} ->> '$' END AS {_sql_name(k)}" for k in keys]
            select = ", ".join(columns) or "NULL::VARCHAR AS _empty"
            table = con.sql(f"""SELECT {select} FROM read_json({literal}, {options},
                                columns = {spec})""").to_arrow_table()
            if trailer and table.num_rows:  # the trailer's row, all NULL, comes last
                if any(table.column(i)[-1].is_valid for i in range(table.num_columns)):
                    return None
                table = table.slice(0, table.num_rows - 1)
            if table.num_rows != con.execute("SELECT count(*) FROM j").fetchall()[0][0]:
                return None
    except (duckdb.Error, UnicodeDecodeError):
        return None
    if "_empty" in table.column_names:
        table = table.drop_columns(["_empty"])
    n = table.num_rows
    return table.append_column("_malformed", pa.nulls(n, pa.string())).append_column(
        "_extra_values", pa.nulls(n, pa.string()))


def _sql_text(text: str) -> str:
    return quote_literal(text)


def _sql_name(name: str) -> str:
    return quote_ident(name)


def read_jsonl_python(mapping: SourceMapping, f: BinaryIO, name: str,
                      declared: DeclaredCount | None = None) -> Iterator[pa.Table]:
    """JSON Lines line by line: strict decoding; a line that is not a JSON object, cannot be
    decoded, or has keys outside the mapping that other lines lack is malformed (quarantined with
    its line number) or stops the source, as the mapping's `on_bad_line` says."""
    declared = declared if declared is not None else DeclaredCount()

    def numbered_objects() -> Iterator[tuple[Line, dict | str]]:
        for _, line in jsonl_lines(mapping, f, name, declared):
            yield line, _json_object(line)

    # A key outside the mapping in every line is a schema change (validation reports it as
    # drift); in only some lines, those lines are broken. Two passes keep memory flat.
    seen: dict[str, int] = {}
    parsed = 0
    for _, obj in numbered_objects():
        if isinstance(obj, dict):
            parsed += 1
            for key in obj:
                seen[key] = seen.get(key, 0) + 1
    odd = set() if mapping.validation.allow_unexpected_columns else {
        k for k, n in seen.items() if k not in mapping.all_columns and n < parsed}
    records: list[dict[str, str | None]] = []
    for line, obj in numbered_objects():
        problem = obj if isinstance(obj, str) else None
        if isinstance(obj, dict) and (extra := sorted(odd.intersection(obj))):
            problem = f"key(s) {', '.join(map(repr, extra))} not in the mapping"
        if problem is not None:
            problem = f"JSON line {line.number}: {problem}"
            if mapping.on_bad_line != "quarantine":
                raise SourceRejected(mapping.name, name, None, "malformed_line", problem)
            records.append({"_malformed": problem, "_extra_values": json.dumps(
                [line.text.rstrip("\n")], ensure_ascii=False)})
        elif isinstance(obj, dict):
            records.append({key: _json_text(value) for key, value in obj.items()})
        if len(records) >= BATCH_ROWS:
            yield _records_table(records)
            records = []
    if records:
        yield _records_table(records)


def jsonl_lines(mapping: SourceMapping, f: BinaryIO, name: str,
                declared: DeclaredCount | None = None) -> Iterator[tuple[int, Line]]:
    """The rows of a landed JSON Lines file as extract numbers them — the rule erasure's
    redaction uses too: (number, line) for every non-blank line from 1, a malformed or (with
    `on_bad_line: quarantine`) undecodable one included; blank lines and a declared trailer are
    no rows. DuckDB's reader, taking only files it parses whole, gives the same rows in order."""
    number = 0
    for line in _data_lines(mapping, f, name, declared if declared is not None
                            else DeclaredCount()):
        if line.text.strip():
            number += 1
            yield number, line


def _json_object(line: Line) -> dict | str:
    """The line's JSON object, or why it is not one."""
    if line.problem:
        return line.problem
    try:
        obj = json.loads(line.text.rstrip("\r\n"))
    except (ValueError, RecursionError) as exc:
        return str(exc) if isinstance(exc, ValueError) else "nested too deeply"
    return obj if isinstance(obj, dict) else "not a JSON object"


def _json_text(value) -> str | None:
    """Scalars as their text; nested objects and lists stay JSON (mapped with dotted paths)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _records_table(records: list[dict]) -> pa.Table:
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    names.update(dict.fromkeys(["_malformed", "_extra_values"]))
    return pa.table({name: pa.array([r.get(name) for r in records], pa.string()) for name in names})


def _read_parquet(mapping: SourceMapping, f: BinaryIO, name: str) -> Iterator[pa.Table]:
    try:
        parquet = pq.ParquetFile(f)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceRejected(mapping.name, name, None, "readable",
                             f"not a readable Parquet file: {exc}") from None
    empty = True
    for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
        empty = False
        yield pa.table({name: _as_text(batch.column(name)) for name in batch.schema.names})
    if empty:
        yield pa.table({name: pa.array([], pa.string()) for name in parquet.schema_arrow.names})


def _as_text(column: pa.Array) -> pa.Array:
    if pa.types.is_timestamp(column.type):
        # Whole seconds: Arrow's %S would print the fraction of a microsecond timestamp.
        return pc.strftime(pc.cast(column, pa.timestamp("s", column.type.tz), safe=False),
                           format="%Y-%m-%d %H:%M:%S")
    try:
        return pc.cast(column, pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return pa.array([None if v is None else json.dumps(v, ensure_ascii=False, default=str)
                         for v in column.to_pylist()], pa.string())
