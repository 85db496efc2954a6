"""Validate: raw rows -> `accepted/<source>.parquet` + `quarantine/<source>.parquet`.

Row-level rules come from the source's Great Expectations suite (`expectations/<source>.json`),
run over pandas batches of ~200k rows so memory stays bounded; the native key (present, unique)
and records the parser could not split are checked here too. A failing row goes to quarantine with
its original values and the names of the rules it failed.
Run-level rules (empty file, required / unexpected columns, bad-row share, row count far from the
previous run) raise SourceRejected: the run stops before anything is published.
A row whose own person was erased but which stays for the people nested in it (`_redacted`, see
identify/tombstone.py) is checked only for what it still holds (its emptied columns are exempt)
and counted as erased at extract, so in neither `rows_accepted` nor `rows_quarantined`; it goes
to the accepted or the quarantine file with its nested people all the same.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.identify.tombstone import emptied_columns
from pipelines.ingest.columns import CONTROL_SQL, literal, raw_sql
from pipelines.ingest.errors import AccountingError, SourceRejected
from pipelines.ingest.extract import LINEAGE_COLUMNS, raw_path
from pipelines.ingest.mapping import SourceMapping
from pipelines.settings import RunPaths, duckdb_config
from pipelines.sql import PARQUET_OPTIONS, quote_literal, quote_path

GE_BATCH_ROWS = 200_000
QUARANTINE_COLUMNS = ("run_id", "source_system", "source_file", "row_number", "raw", "failed_checks")


@dataclass
class ValidationResult:
    source: str
    rows_read: int
    rows_accepted: int
    rows_quarantined: int
    failed_checks: dict[str, int] = field(default_factory=dict)  # rule -> rows failing it
    accepted_path: Path | None = None
    quarantine_path: Path | None = None
    # rows kept only for the people nested in them (`_redacted`): counted as erased, not above
    rows_redacted: int = 0


def accepted_path(run: RunPaths, source: str) -> Path:
    return run.accepted_dir / f"{source}.parquet"


def quarantine_path(run: RunPaths, source: str) -> Path:
    return run.quarantine_dir / f"{source}.parquet"


def validate_source(mapping: SourceMapping, run: RunPaths,
                    previous_row_count: int | None = None) -> ValidationResult:
    """Split raw rows into accepted and quarantined; raise SourceRejected if a run rule fails."""
    source = mapping.name
    raw = raw_path(run, source)
    if not raw.exists():
        raise FileNotFoundError(f"{raw} does not exist: run extract for {source!r} first")
    accepted_path(run, source).unlink(missing_ok=True)  # never leave a stale accepted file
    parquet = pq.ParquetFile(raw)
    columns = [c for c in parquet.schema_arrow.names if c not in LINEAGE_COLUMNS]
    files = _files_of(run, source) or {"-": parquet.metadata.num_rows}
    file_label = ", ".join(files)

    check_run_rules_before_rows(mapping, files, columns, previous_row_count)
    failures = row_failures(mapping, raw, columns)
    result = write_accepted_and_quarantine(mapping, run, raw, columns, failures)
    check_bad_row_share(mapping, result, file_label)
    return result


def _files_of(run: RunPaths, source: str) -> dict[str, int]:
    manifest = run.raw_dir / f"{source}.json"
    if manifest.exists():
        return json.loads(manifest.read_text(encoding="utf-8"))["rows_per_file"]
    return {}


# --------------------------------------------------------------------------------------------
# Run-level rules


def check_run_rules_before_rows(mapping: SourceMapping, files: dict[str, int], columns: list[str],
                                previous_row_count: int | None) -> None:
    """Empty files, missing / unexpected columns and row-count drift, before any row is judged."""
    for file, rows in files.items():
        if rows == 0:
            raise SourceRejected(mapping.name, file, None, "empty_file", "the file has no data rows")
    file_label = ", ".join(files)
    missing = [c for c in mapping.columns if c not in columns]
    if missing and len(columns) == 1 and len(mapping.columns) > 1:
        hint = likely_delimiter(columns[0], mapping)
        raise SourceRejected(mapping.name, file_label, columns[0], "header",
                             f"the header was read as one field {columns[0][:80]!r}: "
                             f"{hint or 'the file is not split by the mapping’s delimiter'} "
                             f"(mapping `delimiter: {mapping.delimiter!r}`)")
    if missing:
        raise SourceRejected(mapping.name, file_label, ", ".join(missing), "required_columns",
                             f"required column(s) missing: {', '.join(missing)}")
    unexpected = [c for c in columns if c not in mapping.all_columns]
    if unexpected and not mapping.validation.allow_unexpected_columns:
        raise SourceRejected(mapping.name, file_label, ", ".join(unexpected), "unexpected_columns",
                             f"column(s) not in the mapping: {', '.join(unexpected)} (add them to "
                             f"`optional_columns` in {mapping.file.name} if they are expected)")
    limit = mapping.validation.max_row_count_change
    rows = sum(files.values())
    if previous_row_count and limit is not None:
        change = abs(rows - previous_row_count) / previous_row_count
        if change > limit:
            raise SourceRejected(mapping.name, file_label, None, "row_count_change",
                                 f"{rows} rows against {previous_row_count} in the previous run "
                                 f"({change:.0%} change, limit {limit:.0%})")


CANDIDATE_DELIMITERS = (";", ",", "\t", "|", ":", " ")


def likely_delimiter(header: str, mapping: SourceMapping) -> str | None:
    """Which delimiter splits a one-field header into the mapping's columns, said in words."""
    best = None
    for candidate in CANDIDATE_DELIMITERS:
        if candidate == mapping.delimiter or candidate not in header:
            continue
        names = [n.strip().strip(mapping.quote) for n in header.split(candidate)]
        known = sum(n in mapping.all_columns for n in names)
        if known and (best is None or known > best[1]):
            best = (candidate, known, len(names))
    if best is None:
        return None
    shown = {"\t": "tab", " ": "space"}.get(best[0], repr(best[0]))
    return (f"it looks {shown}-delimited ({best[1]} of the {best[2]} names it splits into are "
            f"mapped columns)")


def check_bad_row_share(mapping: SourceMapping, result: ValidationResult, file_label: str) -> None:
    if not result.rows_read:
        return
    share = result.rows_quarantined / result.rows_read
    if share > mapping.validation.max_bad_row_share:
        worst = sorted(result.failed_checks.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        column = _rule_column(mapping, worst[0][0]) if worst else None
        detail = ", ".join(f"{rule}: {n}" for rule, n in worst)
        raise SourceRejected(mapping.name, file_label, column, "bad_row_share",
                             f"{result.rows_quarantined} of {result.rows_read} rows ({share:.1%}) "
                             f"failed row checks, limit {mapping.validation.max_bad_row_share:.1%}; "
                             f"most failed: {detail}")


def _rule_column(mapping: SourceMapping, rule: str) -> str | None:
    if rule in ("native_key_present", "native_key_unique", "native_key_malformed"):
        return mapping.native_key
    if rule.startswith(("value_too_long:", "record_key_unique:")):
        return rule.split(":", 1)[1]
    for exp in mapping.suite().get("expectations", []):
        if rule_name(exp) == rule:
            return (exp.get("kwargs") or {}).get("column")
    return None


# --------------------------------------------------------------------------------------------
# Row-level rules


def rule_name(expectation: dict) -> str:
    """The rule name a failed expectation is reported under (meta.rule, else type:column)."""
    meta = expectation.get("meta") or {}
    if meta.get("rule"):
        return str(meta["rule"])
    column = (expectation.get("kwargs") or {}).get("column")
    kind = str(expectation["type"]).removeprefix("expect_")
    return f"{kind}:{column}" if column else kind


def row_failures(mapping: SourceMapping, raw: Path, columns: list[str]) -> pa.Table:
    """(file, row_number, rule) for every failed row rule: parser, native key, then GE suite."""
    parts = [_structural_failures(mapping, raw, columns)]
    parts.extend(_suite_failures(mapping, raw, columns))
    return pa.concat_tables(parts)


def _failure_table(files, rows, rules) -> pa.Table:
    return pa.table({"file": pa.array(files, pa.string()), "row_number": pa.array(rows, pa.int64()),
                     "rule": pa.array(rules, pa.string())})


def _structural_failures(mapping: SourceMapping, raw: Path, columns: list[str]) -> pa.Table:
    """Parser faults, native key present / unique / free of control characters, values longer
    than the canonical field they feed allows, nested record keys unique within their row."""
    key = raw_sql(mapping.native_key, columns)
    checks = [
        "SELECT _source_file AS file, _row_number AS row_number, 'malformed_row' AS rule "
        "FROM r WHERE _malformed IS NOT NULL",
        "SELECT _source_file, _row_number, 'native_key_present' FROM r "
        "WHERE _malformed IS NULL AND k IS NULL",
        f"SELECT _source_file, _row_number, 'native_key_malformed' FROM r "
        f"WHERE _malformed IS NULL AND regexp_matches(k, {CONTROL_SQL})",
        """SELECT _source_file, _row_number, 'native_key_unique' FROM (
               SELECT *, row_number() OVER (PARTITION BY k ORDER BY _source_file, _row_number) AS nth
                 FROM r WHERE _malformed IS NULL AND k IS NOT NULL) WHERE nth > 1""",
    ]
    # Value lengths in one pass over the rows: one CASE per reference, the failing ones unnested.
    limits = mapping.value_limits()
    containers = {ref.split(".", 1)[0] for ref in limits if ref not in columns}
    containers |= {record.source for record in mapping.records}
    too_long = []
    for ref, limit in sorted(limits.items()):
        value = raw_sql(ref, columns)
        if value != "NULL::VARCHAR":
            too_long.append(f"CASE WHEN length({value}) > {int(limit)} "
                            f"THEN {literal('value_too_long:' + ref)} END")
    longest = mapping.validation.max_value_length
    for column in columns:
        # Any other text (notes, a JSON object with nested records) has one generous bound.
        if column not in limits:
            limit = longest * 100 if column in containers else longest
            too_long.append(f"CASE WHEN length({raw_sql(column, columns)}) > {limit} "
                            f"THEN {literal('value_too_long:' + column)} END")
    if too_long:
        checks.append(f"""SELECT _source_file, _row_number, rule FROM (
            SELECT _source_file, _row_number, unnest(list_filter([{', '.join(too_long)}],
                                                                 lambda x: x IS NOT NULL)) AS rule
              FROM r WHERE _malformed IS NULL)""")
    for record in mapping.records:
        if record.key is None:
            continue
        element_key = raw_sql(record.key.refs[0].replace(record.source, "_e", 1)
                              if record.key.refs else "", ["_e"])
        checks.append(f"""SELECT _source_file, _row_number, {literal('record_key_unique:' + record.part)}
            FROM (SELECT _source_file, _row_number, unnest(CASE WHEN json_type(c) = 'ARRAY'
                         THEN json_extract(c, '$[*]') ELSE [c::JSON] END)::VARCHAR AS _e
                    FROM (SELECT _source_file, _row_number, {_quote(record.source)} AS c FROM r
                           WHERE _malformed IS NULL AND json_valid({_quote(record.source)})))
           WHERE json_type(_e::JSON) = 'OBJECT' AND {element_key} IS NOT NULL
           GROUP BY _source_file, _row_number, {element_key} HAVING count(*) > 1""")
    sql = (f"WITH r AS (SELECT *, NULLIF(trim({key}), '') AS k FROM read_parquet(?)) "
           + " UNION ALL ".join(checks))
    with duckdb.connect(config=duckdb_config()) as con:
        return con.sql(sql, params=[str(raw)]).to_arrow_table().cast(
            pa.schema([("file", pa.string()), ("row_number", pa.int64()), ("rule", pa.string())]))


# Row rules GE would run through pandas, evaluated here on Arrow with GE's own semantics (pandas
# `isin`, `str.contains` = Python `re.search` on non-null values, nulls counted only by
# not_be_null): at 1M rows, importing and running GE was 45 s of a 73 s validation. Tests check
# each against GE on hostile values; any other type, or any other argument, still runs in GE.
NATIVE_RULES = {"expect_column_values_to_not_be_null": set(),
                "expect_column_values_to_be_in_set": {"value_set"},
                "expect_column_values_to_match_regex": {"regex"}}
_NATIVE_NEUTRAL_KWARGS = {"column", "mostly", "result_format", "catch_exceptions"}  # no effect on rows


def is_native(expectation: dict) -> bool:
    """Whether `native_unexpected` evaluates this expectation exactly as GE would."""
    kind, kwargs = expectation.get("type"), expectation.get("kwargs") or {}
    if kind not in NATIVE_RULES or "column" not in kwargs:
        return False
    if set(kwargs) - _NATIVE_NEUTRAL_KWARGS - NATIVE_RULES[kind]:
        return False  # row_condition, parse_strings_as_datetimes, ...: GE's job
    if kind == "expect_column_values_to_be_in_set":
        values = kwargs.get("value_set")
        return isinstance(values, list) and all(isinstance(v, str) for v in values)
    if kind == "expect_column_values_to_match_regex":
        return isinstance(kwargs.get("regex"), str)
    return True


def native_unexpected(expectation: dict, column: pa.ChunkedArray) -> list[int]:
    """Positions of the rows failing a native expectation (`is_native`), as GE lists them."""
    kind, kwargs = expectation["type"], expectation.get("kwargs") or {}
    present = pc.is_valid(column)
    if kind == "expect_column_values_to_not_be_null":
        failing = pc.invert(present)
    elif kind == "expect_column_values_to_be_in_set":
        failing = pc.and_(present, pc.invert(pc.is_in(column, pa.array(kwargs["value_set"],
                                                                       pa.string()))))
    else:
        pattern = re.compile(kwargs["regex"])  # re.error: reported by the caller like GE's
        distinct = pc.unique(column.drop_null())
        matched = pa.array([pattern.search(v) is not None for v in distinct.to_pylist()], pa.bool_())
        verdict = pc.take(matched, pc.index_in(column, distinct))
        failing = pc.and_(present, pc.invert(pc.fill_null(verdict, True)))
    return pc.indices_nonzero(pc.fill_null(failing, False)).to_pylist()


def _suite_failures(mapping: SourceMapping, raw: Path, columns: list[str], native: bool = True):
    """Run the suite over batches of well-formed rows; yield failure tables. Native rules
    (`is_native`) on Arrow, the rest through GE on pandas batches; `native=False` sends every
    rule through GE (tests compare the two)."""
    expectations = [e for e in mapping.suite().get("expectations", [])
                    if (e.get("kwargs") or {}).get("column", columns[0]) in columns]
    if not expectations:
        return
    in_ge = [e for e in expectations if not (native and is_native(e))]
    own = [e for e in expectations if native and is_native(e)]
    suite = _ge_suite(mapping.name, json.dumps(in_ge, sort_keys=True)) if in_ge else None
    batch_definition = _ge_batch_definition() if in_ge else None
    parquet = pq.ParquetFile(raw)
    read_columns = [*columns, "_source_file", "_row_number", "_malformed"]
    marked = "_redacted" in parquet.schema_arrow.names
    emptied = set(emptied_columns(mapping, columns)) if marked else set()
    if marked:
        read_columns.append("_redacted")
    for batch in parquet.iter_batches(batch_size=GE_BATCH_ROWS, columns=read_columns):
        table = pa.Table.from_batches([batch]).filter(pc.is_null(batch.column("_malformed")))
        if table.num_rows == 0:
            continue
        # a row kept for its nested people: its own person's columns are empty on purpose
        redacted = (set(pc.indices_nonzero(pc.fill_null(table.column("_redacted"), False))
                        .to_pylist()) if marked else set())
        # Blank text is a missing value for every rule (raw keeps it as written).
        blanked = {c: _blank_to_null(table.column(c)) for c in columns}
        outcomes: list[tuple[dict, list[int]]] = []
        for expectation in own:
            column = expectation["kwargs"]["column"]
            try:
                outcomes.append((expectation, native_unexpected(expectation, blanked[column])))
            except re.error as bad:
                raise SourceRejected(mapping.name, None, column, rule_name(expectation),
                                     f"expectation could not be evaluated: {bad}") from None
        if in_ge:
            assert suite is not None and batch_definition is not None
            frame = pa.table(blanked).to_pandas()
            result = batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(
                suite, result_format={"result_format": "COMPLETE"})
            for expectation, outcome in zip(in_ge, result.results, strict=True):
                name = rule_name(expectation)
                if outcome.exception_info and outcome.exception_info.get("raised_exception"):
                    raise SourceRejected(mapping.name, None, (outcome.expectation_config.kwargs
                                                              or {}).get("column"), name,
                                         "expectation could not be evaluated: "
                                         f"{outcome.exception_info.get('exception_message')}")
                if not outcome.success and (outcome.expectation_config.kwargs or {}).get(
                        "column") is None:
                    raise SourceRejected(mapping.name, None, None, name,
                                         f"table expectation failed: {outcome.result}")
                outcomes.append((expectation,
                                 (outcome.result or {}).get("unexpected_index_list") or []))
        order = {id(e): i for i, e in enumerate(expectations)}  # failures in the suite's order
        files, rows, rules = [], [], []
        file_col, row_col = table.column("_source_file"), table.column("_row_number")
        for expectation, positions in sorted(outcomes, key=lambda o: order[id(o[0])]):
            column = (expectation.get("kwargs") or {}).get("column")
            if redacted and column in emptied:
                positions = [p for p in positions if p not in redacted]
            if positions:
                idx = pa.array(positions, pa.int64())
                files.extend(file_col.take(idx).to_pylist())
                rows.extend(row_col.take(idx).to_pylist())
                rules.extend([rule_name(expectation)] * len(positions))
        yield _failure_table(files, rows, rules)


def _blank_to_null(column: pa.ChunkedArray) -> pa.ChunkedArray:
    blank = pc.equal(pc.utf8_trim_whitespace(column), "")
    return pc.if_else(blank, pa.scalar(None, pa.string()), column)


@cache
def _ge_context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


@cache
def _ge_batch_definition():
    source = _ge_context().data_sources.add_pandas("ingest_batches")
    return source.add_dataframe_asset("rows").add_batch_definition_whole_dataframe("batch")


@cache
def _ge_suite(name: str, expectations_json: str):
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    suite = ExpectationSuite(name=f"{name}_rows")
    for exp in json.loads(expectations_json):
        suite.add_expectation_configuration(ExpectationConfiguration(
            type=exp["type"], kwargs=exp.get("kwargs") or {}, meta=exp.get("meta") or {}))
    return suite


# --------------------------------------------------------------------------------------------
# Outputs


def write_accepted_and_quarantine(mapping: SourceMapping, run: RunPaths, raw: Path,
                                  columns: list[str], failures: pa.Table) -> ValidationResult:
    """Write both outputs from raw + failures and check read = accepted + quarantined."""
    run.accepted_dir.mkdir(parents=True, exist_ok=True)
    run.quarantine_dir.mkdir(parents=True, exist_ok=True)
    acc, qua = accepted_path(run, mapping.name), quarantine_path(run, mapping.name)
    raw_json = ", ".join(f"{_literal(c)}, {_quote(c)}" for c in columns)
    with duckdb.connect(config=duckdb_config()) as con:
        con.register("failures", failures)
        con.execute(f"CREATE TEMP VIEW raw AS SELECT * FROM read_parquet({quote_path(raw)})")
        con.execute("""CREATE TEMP TABLE bad AS
                       SELECT file, row_number, list(DISTINCT rule ORDER BY rule) AS failed_checks
                         FROM failures GROUP BY ALL""")
        con.execute(f"""COPY (SELECT r.* FROM raw r ANTI JOIN bad b
                                ON r._source_file = b.file AND r._row_number = b.row_number
                              ORDER BY r._source_file, r._row_number)
                        TO {quote_path(acc)} ({PARQUET_OPTIONS})""")
        raw_object = f"json_object({raw_json})" if columns else "json_object()"
        con.execute(f"""COPY (SELECT r._run_id AS run_id, r._source_system AS source_system,
                                     r._source_file AS source_file, r._row_number AS row_number,
                                     CASE WHEN r._malformed IS NULL THEN {raw_object}::VARCHAR
                                          ELSE json_merge_patch({raw_object}, json_object(
                                               '_malformed', r._malformed,
                                               '_extra_values', r._extra_values::JSON))::VARCHAR
                                     END AS raw,
                                     b.failed_checks
                                FROM raw r JOIN bad b
                                  ON r._source_file = b.file AND r._row_number = b.row_number
                               ORDER BY r._source_file, r._row_number)
                        TO {quote_path(qua)} ({PARQUET_OPTIONS})""")
        # rows kept for their nested people count as erased (extract), not as read here
        marked = "_redacted" in {r[0] for r in con.execute("DESCRIBE raw").fetchall()}
        own = "NOT coalesce(_redacted, false)" if marked else "true"
        read, redacted = con.execute(f"SELECT count(*) FILTER (WHERE {own}), "
                                     f"count(*) FILTER (WHERE NOT {own}) FROM raw").fetchall()[0]
        accepted = con.execute(f"SELECT count(*) FROM read_parquet(?) WHERE {own}",
                               [str(acc)]).fetchall()[0][0]
        quarantined = con.execute(f"""SELECT count(*) FROM read_parquet(?) q JOIN raw r
                                        ON q.source_file = r._source_file
                                       AND q.row_number = r._row_number WHERE {own}""",
                                  [str(qua)]).fetchall()[0][0]
        per_rule = dict(con.execute("""SELECT rule, count(DISTINCT (file, row_number))
                                         FROM failures GROUP BY rule ORDER BY rule""").fetchall())
    if read != accepted + quarantined:
        raise AccountingError(f"{mapping.name}: read {read} != accepted {accepted} + "
                              f"quarantined {quarantined}")
    return ValidationResult(source=mapping.name, rows_read=read, rows_accepted=accepted,
                            rows_quarantined=quarantined, failed_checks=per_rule,
                            accepted_path=acc, quarantine_path=qua, rows_redacted=redacted)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return quote_literal(text)

