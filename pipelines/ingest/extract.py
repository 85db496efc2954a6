"""Extract: landed export files -> `raw/<source>.parquet`, every value as text, plus lineage.

Raw is the export as it arrived: values are never trimmed or fixed here, only decoded. Lineage
columns (`_source_system`, `_source_file`, `_row_number`, `_run_id`) say where each row came from;
a record the parser could not split into the declared columns is kept too, with `_malformed`
saying why, so validation can quarantine it instead of losing it.
Decoding is strict and streamed in chunks: a byte sequence that is not valid in the declared
encoding stops the source with the file and byte offset, never mojibake.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

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
                   "_extra_values")
BATCH_ROWS = 100_000
CHUNK_BYTES = 4 << 20
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
    # erased persons nested in rows that stay (`records:`), taken out of them
    erased_records: int = 0

    @property
    def rows_read(self) -> int:
        return sum(self.rows_per_file.values())


def raw_path(run: RunPaths, source: str) -> Path:
    return run.raw_dir / f"{source}.parquet"


def find_landed_files(mapping: SourceMapping, landing_dir: Path) -> list[Path]:
    """The files of this source in the landing folder (the mapping's pattern), in name order.

    Every match is resolved first: a file reached through a symlink, or lying outside the landing
    folder (a `..` pattern), is refused with the file and the rule, never read.
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
        if path.is_file():
            files.append(path)
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
    for path in find_landed_files(mapping, landing_dir):
        batches = _read_file(mapping, path)
        n = 0
        for batch in batches:
            batch = _with_lineage(batch, mapping.name, path.name, run.run_id, first_row=n + 1)
            n += batch.num_rows
            tables.append(batch)
        result.files.append(path.name)
        result.rows_per_file[path.name] = n
    table = _combine(tables)
    table, erased_now, erased_before, result.erased_records = drop_erased(
        mapping, table, landing_dir, result.files)
    for file, n in erased_before.items():  # rows an erasure already removed from the landed file
        result.rows_per_file[file] += n
    result.erased_rows = sum(erased_now.values()) + sum(erased_before.values())
    result.columns = [c for c in table.column_names if c not in LINEAGE_COLUMNS]
    result.malformed_rows = table.num_rows - table["_malformed"].null_count if table.num_rows else 0
    tmp = out.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="zstd")
    fileio.replace(tmp, out)
    manifest = {"source": mapping.name, "files": result.files, "rows_per_file": result.rows_per_file,
                "columns": result.columns, "malformed_rows": result.malformed_rows,
                "erased_rows": result.erased_rows, "erased_records": result.erased_records}
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
    for name, values in extras.items():
        table = table.append_column(name, values)
    return table


def _read_file(mapping: SourceMapping, path: Path) -> Iterator[pa.Table]:
    if mapping.format == "csv":
        return _read_csv(mapping, path)
    if mapping.format == "jsonl":
        return _read_jsonl(mapping, path)
    return _read_parquet(mapping, path)


# --------------------------------------------------------------------------------------------
# Decoding


@dataclass(frozen=True, slots=True)
class Line:
    """One physical line of a landed file: its 1-based number, its text (newline kept) and, for a
    line that is not valid in the declared encoding, why (the text then shows the bytes as \\xNN)."""

    number: int
    text: str
    problem: str | None = None


def decoded_lines(path: Path, encoding: str, source: str = "") -> Iterator[str]:
    """The file's text line by line (newlines kept), decoded strictly in chunks; BOM removed."""
    for line in file_lines(path, encoding, source):
        yield line.text


def file_lines(path: Path, encoding: str, source: str = "",
               on_bad_line: str = "fail") -> Iterator[Line]:
    """The file's lines, decoded strictly in chunks; BOM removed.

    A line with bytes that are not valid in `encoding` stops the source with file, line and byte
    offset (`on_bad_line: fail`), or comes back with its problem so the reader can quarantine it
    (`quarantine`). Encodings in which a byte 0x0A may be part of a character (UTF-16/32) or that
    carry state across lines are decoded as one stream and always fail.
    """
    if not _line_safe(encoding):
        yield from _stream_lines(path, encoding, source)
        return
    number = 0
    offset = 0  # file offset of `pending`
    pending = b""
    first = True
    with open(path, "rb") as f:
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
            for text, problem in lines:
                number += 1
                if first:
                    text, first = text.removeprefix("\ufeff"), False
                if problem and on_bad_line != "quarantine":
                    raise SourceRejected(source, path.name, None, "encoding",
                                         f"line {number}, {problem}")
                yield Line(number, text, problem)
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


def _stream_lines(path: Path, encoding: str, source: str) -> Iterator[Line]:
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset = 0  # bytes read so far
    pending = ""
    number = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(CHUNK_BYTES)
            final = not chunk
            held = decoder.getstate()[0]
            try:
                text = decoder.decode(chunk, final)
            except UnicodeDecodeError:
                raise _decode_failure(source, path, encoding, offset - len(held), held + chunk) from None
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


def _decode_failure(source: str, path: Path, encoding: str, start: int, data: bytes) -> SourceRejected:
    """Locate the first undecodable byte (data begins at file offset `start`) for the message."""
    try:
        data.decode(encoding)
        position, bad = start + len(data), b""  # only the end of the file was incomplete
    except UnicodeDecodeError as exc:
        position, bad = start + exc.start, data[exc.start:exc.end]
    return SourceRejected(source, path.name, None, "encoding",
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


def _read_csv(mapping: SourceMapping, path: Path) -> Iterator[pa.Table]:
    lines = _RecordingLines(file_lines(path, mapping.encoding, mapping.name, mapping.on_bad_line))
    reader = csv.reader(lines, delimiter=mapping.delimiter, quotechar=mapping.quote, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return  # a zero-byte file: no columns, no rows (validation says so)
    except csv.Error as exc:
        raise SourceRejected(mapping.name, path.name, None, "header",
                             f"header line cannot be parsed: {exc}") from None
    if bad := [ln for ln in lines.take() if ln.problem]:
        raise SourceRejected(mapping.name, path.name, None, "encoding",
                             f"header line {bad[0].number}, {bad[0].problem}")
    header = _unique_names(header)
    width = len(header)
    rows: list[list[str | None]] = []
    malformed: list[str | None] = []
    extra: list[str | None] = []
    yielded = False
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
            rows.append(row)  # the common case: one clean line, one complete row
            malformed.append(None)
            extra.append(None)
        elif row == [] and error is None:
            continue  # blank line
        else:
            for values, problem, leftover in _csv_record(row, error, taken, width, mapping):
                rows.append(values)
                malformed.append(problem)
                extra.append(leftover)
        if len(rows) >= BATCH_ROWS:
            yield _text_table(header, rows, malformed, extra)
            yielded = True
            rows, malformed, extra = [], [], []
    if rows or not yielded:
        yield _text_table(header, rows, malformed, extra)


def _csv_record(row: list[str | None] | None, error: str | None, taken: list[Line], width: int,
                mapping: SourceMapping) -> list[tuple[list[str | None], str | None, str | None]]:
    """One parsed record as (values, problem, leftover) rows; several when it must be split.

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
                 json.dumps([ln.text], ensure_ascii=False)) for ln in taken]
    if undecodable:
        return [([None] * width, f"undecodable record ({where}, {undecodable[0].problem})",
                 json.dumps([taken[0].text], ensure_ascii=False))]
    if error is not None:
        return [([None] * width, f"unparseable record ({where}): {error}",
                 json.dumps([taken[0].text] if taken else [], ensure_ascii=False))]
    row = row or []  # parsed without error: the parser gave a row
    if len(row) != width:
        leftover = json.dumps(row[width:], ensure_ascii=False) if len(row) > width else None
        return [((row + [None] * width)[:width],
                 f"expected {width} fields, found {len(row)} ({where})", leftover)]
    return [(row, None, None)]


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


def _read_jsonl(mapping: SourceMapping, path: Path) -> Iterator[pa.Table]:
    if codecs.lookup(mapping.encoding).name == "utf-8":
        table = read_jsonl_duckdb(path)
        # keys outside the mapping may be a few odd lines: the line-by-line reader tells which
        if table is not None and (mapping.validation.allow_unexpected_columns or not [
                c for c in table.column_names if c not in mapping.all_columns + LINEAGE_COLUMNS]):
            yield table
            return
    yield from read_jsonl_python(mapping, path)


def read_jsonl_duckdb(path: Path) -> pa.Table | None:
    """Well-formed UTF-8 JSON Lines, parsed by DuckDB; None if any line needs the careful reader.

    One text column per top-level key (first-appearance order); nested objects and lists stay
    JSON text. Any parse or decoding problem returns None, and the line-by-line reader (which
    quarantines bad lines and names bad bytes) takes over.
    """
    literal = quote_path(path)
    try:
        with duckdb.connect(config=duckdb_config()) as con:
            con.execute("SET enable_progress_bar = false")
            con.execute(f"""CREATE TEMP TABLE j AS SELECT json FROM
                            read_json_objects({literal}, format = 'newline_delimited')""")
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
            table = con.sql(f"""SELECT {select} FROM read_json({literal}, format = 'newline_delimited',
                                columns = {spec})""").to_arrow_table()
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


def read_jsonl_python(mapping: SourceMapping, path: Path) -> Iterator[pa.Table]:
    """JSON Lines line by line: strict decoding; a line that is not a JSON object, cannot be
    decoded, or has keys outside the mapping that other lines lack is malformed (quarantined with
    its line number) or stops the source, as the mapping's `on_bad_line` says."""
    def numbered_objects() -> Iterator[tuple[Line, dict | str]]:
        for line in file_lines(path, mapping.encoding, mapping.name, mapping.on_bad_line):
            if line.text.strip():
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
                raise SourceRejected(mapping.name, path.name, None, "malformed_line", problem)
            records.append({"_malformed": problem, "_extra_values": json.dumps(
                [line.text.rstrip("\n")], ensure_ascii=False)})
        elif isinstance(obj, dict):
            records.append({key: _json_text(value) for key, value in obj.items()})
        if len(records) >= BATCH_ROWS:
            yield _records_table(records)
            records = []
    if records:
        yield _records_table(records)


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


def _read_parquet(mapping: SourceMapping, path: Path) -> Iterator[pa.Table]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceRejected(mapping.name, path.name, None, "readable",
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
