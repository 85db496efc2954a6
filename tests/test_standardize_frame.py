"""The one-record path (`standardize_frame`, real time) gives exactly the batch run's canonical rows.

Batch and frame share the row-level SQL and the canonical SELECT; they differ in how lookups are
made (set-based SQL shortcuts vs the per-value Python standardizers), so every source is checked
on generated exports full of noise (one-line and hanzi addresses, phones in e-mail fields, bad
IDs, ambiguous dates), whole frames and record by record, and on records in their source shape.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipelines.generate import generate_exports
from pipelines.ingest import (
    extract_source,
    load_mappings,
    standardize_frame,
    standardize_source,
    validate_source,
)
from pipelines.settings import RunPaths
from pipelines.standardize.records import RecordStandardizer, record_standardizer

MAPPINGS = load_mappings()
SOURCES = ("sales", "claims", "servicing", "underwriting")
EXPORTS = Path(__file__).parent / "fixtures" / "exports"


def read(path: Path) -> pd.DataFrame:
    with duckdb.connect() as con:
        df = con.execute(f"SELECT * FROM read_parquet('{path}')").df()
    return df.astype(object).where(df.notna(), None)


def as_json(df: pd.DataFrame) -> list[str]:
    """Rows as JSON text: NaN/None, numpy lists and timestamps compared by value."""
    df = df.astype(object).where(df.notna(), None)
    return [json.dumps(row, default=lambda v: list(v) if hasattr(v, "tolist") else str(v),
                       ensure_ascii=False) for row in df.to_dict("records")]


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> dict:
    """Generated exports ingested by the batch run: accepted rows and staged rows per source."""
    root = tmp_path_factory.mktemp("frame")
    generate_exports(root / "gen", 150, 5)
    run = RunPaths.for_run("2026-03-16", base=root / "runs").ensure()
    out = {}
    for source in SOURCES:
        mapping = MAPPINGS[source]
        extract_source(mapping, root / "gen" / "landing", run)
        validate_source(mapping, run)
        batch = read(standardize_source(mapping, run))
        accepted = read(run.accepted_dir / f"{source}.parquet")
        out[source] = (accepted, batch, run.run_id)
    return out


@pytest.mark.parametrize("source", SOURCES)
def test_whole_frame_equals_batch(staged, source: str) -> None:
    accepted, batch, run_id = staged[source]
    assert len(batch) > 20
    frame = standardize_frame(MAPPINGS[source], accepted, run_id)
    assert list(frame.columns) == list(batch.columns)
    assert as_json(frame) == as_json(batch)


@pytest.mark.parametrize("source", SOURCES)
def test_each_record_alone_equals_its_batch_row(staged, source: str) -> None:
    accepted, batch, run_id = staged[source]
    batch_rows = dict(zip(zip(batch["source_file"], batch["source_row_number"], strict=True),
                          as_json(batch), strict=True))
    for i in range(0, len(accepted), max(1, len(accepted) // 60)):
        one = accepted.iloc[[i]]
        (row,) = as_json(standardize_frame(MAPPINGS[source], one, run_id))
        assert row == batch_rows[(one["_source_file"].iloc[0], one["_row_number"].iloc[0])]


def test_the_batch_covers_the_cases_the_record_path_decides_differently(staged) -> None:
    """The generated rows reach the Python-only cases, so the equality above means something."""
    flags = pd.concat([staged[s][1] for s in SOURCES])["quality_flags"].explode().dropna()
    assert {"email_was_phone", "national_id_invalid", "dob_ambiguous"} <= set(flags), set(flags)
    scripts = pd.concat([staged[s][1] for s in SOURCES])["name_script"]
    assert {"han", "latin"} <= set(scripts.dropna())


def source_shaped(source: str) -> list[dict]:
    """Fixture rows as a caller sends them: CSV fields as text, JSON lines as parsed JSON."""
    if source == "sales":
        with open(EXPORTS / "sales_leads.csv", encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))
    return [json.loads(line) for line in (EXPORTS / "policy_servicing.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("source,file", [("sales", "sales_leads.csv"),
                                         ("servicing", "policy_servicing.jsonl")])
def test_source_shaped_records_equal_batch(tmp_path: Path, source: str, file: str) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / file).write_bytes((EXPORTS / file).read_bytes())
    run = RunPaths.for_run("2026-03-16", base=tmp_path / "runs").ensure()
    mapping = MAPPINGS[source]
    extract_source(mapping, landing, run)
    validate_source(mapping, run)
    batch = read(standardize_source(mapping, run)).drop(columns=["source_file"])
    batch_rows = dict(zip(batch["source_row_number"], as_json(batch), strict=True))
    records = source_shaped(source)
    whole = standardize_frame(mapping, pd.DataFrame(records), run.run_id).drop(columns=["source_file"])
    assert as_json(whole) == as_json(batch)
    for number, record in enumerate(records, start=1):
        if number not in batch_rows:
            continue  # quarantined by validation
        raw = pd.DataFrame({k: pd.Series([v], dtype=object) for k, v in record.items()})
        raw["_row_number"] = number
        (row,) = as_json(standardize_frame(mapping, raw, run.run_id).drop(columns=["source_file"]))
        assert row == batch_rows[number]


def test_one_warm_standardizer_per_mapping_gives_the_same_row_every_call() -> None:
    # how fast the warm path is is measured by `ucv bench-serve` (resolve as a sales lead), not
    # here: a timed unit test fails on a busy machine and proves nothing on a quiet one
    mapping = MAPPINGS["sales"]
    warm = record_standardizer(mapping)
    assert isinstance(warm, RecordStandardizer) and record_standardizer(mapping) is warm
    record = pd.DataFrame([source_shaped("sales")[0]])
    first = standardize_frame(mapping, record, "rt")
    for _ in range(3):
        again = standardize_frame(mapping, record, "rt")
        assert again.astype(str).equals(first.astype(str))
    assert record_standardizer(mapping) is warm


def test_extra_and_missing_columns(staged) -> None:
    mapping = MAPPINGS["sales"]
    record = dict(source_shaped("sales")[0])
    record.pop("mobile")
    record["not_in_mapping"] = "x"
    (row,) = standardize_frame(mapping, pd.DataFrame([record]), "rt").to_dict("records")
    assert row["phone_mobile"] is None and row["phone_landline"] == "+49301234567"
    assert row["source_record_id"] == "sales:L00000001" and row["family_name_norm"] == "mueller"


def test_many_run_ids_and_key_orders_reuse_a_bounded_set_of_statements() -> None:
    from pipelines.standardize.records import MAX_PREPARED

    mapping = MAPPINGS["servicing"]
    warm = RecordStandardizer(mapping)
    record = source_shaped("servicing")[0]
    first = warm.standardize(pd.DataFrame([record]), "run-0")
    reordered = dict(reversed(list(record.items())))
    assert as_json(warm.standardize(pd.DataFrame([reordered]), "run-0")) == as_json(first)
    assert len(warm._statements) == 1  # key order and extra keys do not make new statements
    for i in range(1, MAX_PREPARED + 3):
        (row,) = warm.standardize(pd.DataFrame([record]), f"run-{i}").to_dict("records")
        assert row["run_id"] == f"run-{i}" and row["national_id"] == first["national_id"].iloc[0]
    assert len(warm._statements) == MAX_PREPARED


def test_per_value_calls_in_worker_processes_give_the_single_process_rows(staged, tmp_path,
                                                                          monkeypatch):
    """Standardization forks workers for many distinct values (bulk.map_distinct); forced here
    on a small export, every source's staged rows equal the single-process batch, in order."""
    from pipelines.standardize import bulk

    calls = []
    real = bulk.map_distinct

    def counted(fn, columns, n):
        calls.append(n)
        return real(fn, columns, n)

    monkeypatch.setattr(bulk, "POOL_MIN_VALUES", 4)
    monkeypatch.setattr(bulk, "map_distinct", counted)
    monkeypatch.setenv(bulk.PROCESSES_ENV, "2")
    for source in SOURCES:
        accepted, batch, run_id = staged[source]
        run = RunPaths.for_run(run_id, base=tmp_path / "runs").ensure()
        accepted.to_parquet(run.accepted_dir / f"{source}.parquet")
        forked = read(standardize_source(MAPPINGS[source], run))
        assert as_json(forked.drop(columns=["run_id"])) == as_json(batch.drop(columns=["run_id"]))
    assert max(calls) >= 4  # the pool really ran


def test_map_distinct_keeps_order_and_reports_a_bad_setting(monkeypatch):
    from pipelines.standardize import bulk

    monkeypatch.setattr(bulk, "POOL_MIN_VALUES", 10)
    monkeypatch.setenv(bulk.PROCESSES_ENV, "2")
    values = [f"v{i}" for i in range(1000)]
    assert bulk.map_distinct(lambda v, k: (v.upper(), k * 2), [values, list(range(1000))], 1000) \
        == [(v.upper(), i * 2) for i, v in enumerate(values)]
    monkeypatch.setenv(bulk.PROCESSES_ENV, "two")
    with pytest.raises(ValueError, match="UCV_STANDARDIZE_PROCESSES='two' is not a whole number"):
        bulk.map_distinct(str, [values], 1000)


def test_worker_processes_stop_on_sigterm_even_when_the_parent_ignores_it(monkeypatch):
    """Airflow's task runner handles SIGTERM with a function that does nothing outside its own
    process; forked workers inherited it, so a pool stopped with SIGTERM waited for ever (a hung
    `make run` in the standardize task). Workers must get the default SIGTERM action back."""
    import signal

    from pipelines.standardize import bulk

    monkeypatch.setenv(bulk.PROCESSES_ENV, "2")
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        values = [f"v{i}" for i in range(bulk.POOL_MIN_VALUES * 2)]
        out = bulk.map_distinct(
            lambda v: (v, os.getpid(), signal.getsignal(signal.SIGTERM) == signal.SIG_DFL),
            [values], len(values))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert [r[0] for r in out] == values
    in_workers = [r for r in out if r[1] != os.getpid()]
    assert in_workers, "no value was computed in a worker process"
    assert all(r[2] for r in in_workers), "a worker kept the parent's SIGTERM handler"


def _comparable(row: dict) -> str:
    return json.dumps(row, default=lambda v: list(v) if hasattr(v, "tolist") else str(v),
                      ensure_ascii=False, sort_keys=True)


@pytest.mark.parametrize("source", ["sales", "servicing"])
def test_records_waiting_together_share_one_execution_and_get_their_own_rows(source) -> None:
    """Real time: records that arrive while a standardizer is busy run as one batch, and each
    caller gets exactly the row it gets alone (the row number is the record's place in the batch,
    not in the caller's eyes: it is compared without it)."""
    import threading

    from pipelines.identify.realtime import StandardizeBatcher

    records = source_shaped(source)[:6]
    batcher = StandardizeBatcher(MAPPINGS[source], standardizers=1)
    alone = [batcher.standardize(r) for r in records]
    assert batcher.batches == len(records)
    (standardizer,) = batcher._free
    real, release, entered = standardizer.standardize_rows, threading.Event(), threading.Event()

    def first_call_waits(rows, run_id):
        entered.set()
        release.wait(30)
        return real(rows, run_id)

    standardizer.standardize_rows = first_call_waits
    results: dict[int, dict] = {}

    def call(i: int) -> None:
        results[i] = batcher.standardize(records[i])

    first = threading.Thread(target=call, args=(0,))
    first.start()
    assert entered.wait(30)
    standardizer.standardize_rows = real  # the others queue behind the first batch
    others = [threading.Thread(target=call, args=(i,)) for i in range(1, len(records))]
    for t in others:
        t.start()
    while len(batcher._pending) < len(records) - 1:
        threading.Event().wait(0.01)
    release.set()
    for t in [first, *others]:
        t.join(60)
    assert batcher.batches == len(records) + 2  # the first alone, then the five together
    for i, row in enumerate(alone):
        expected = {k: v for k, v in row.items() if k != "source_row_number"}
        got = {k: v for k, v in results[i].items() if k != "source_row_number"}
        assert _comparable(got) == _comparable(expected)


def test_a_record_that_breaks_a_batch_fails_only_its_own_request() -> None:
    import threading

    from pipelines.identify.realtime import StandardizeBatcher

    records = source_shaped("sales")[:4]
    records[2] = {**records[2], "lead_id": "BREAKS"}
    batcher = StandardizeBatcher(MAPPINGS["sales"], standardizers=1)
    (standardizer,) = batcher._free
    real, release = standardizer.standardize_rows, threading.Event()

    def refuse_the_marked_record(rows, run_id):
        release.wait(30)
        if any(r.get("lead_id") == "BREAKS" for r in rows):
            raise ValueError("a value the mapping cannot read")
        return real(rows, run_id)

    standardizer.standardize_rows = refuse_the_marked_record
    outcomes: dict[int, object] = {}

    def call(i: int) -> None:
        try:
            outcomes[i] = batcher.standardize(records[i])["source_record_id"]
        except ValueError as error:
            outcomes[i] = str(error)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(records))]
    for t in threads:
        t.start()
    while len(batcher._pending) < len(records) - 1:
        threading.Event().wait(0.01)
    release.set()
    for t in threads:
        t.join(60)
    assert outcomes[2] == "a value the mapping cannot read"
    assert [outcomes[i] for i in (0, 1, 3)] == [f"sales:{records[i]['lead_id']}" for i in (0, 1, 3)]


def test_org_word_columns_once_per_distinct_word_equal_the_per_record_sql() -> None:
    """The batch matches qualifier stems once per distinct word (`add_org_word_columns`); real
    time runs `org_qualifiers_sql` / `org_core_sql` per record: both must give the same columns."""
    from pipelines.standardize.organizations import (
        add_org_word_columns,
        org_core_sql,
        org_qualifiers_sql,
        org_tokens_sql,
    )

    names = ["clements holdings holdings", "clements holdings", "mueller vrwaltungs gmbh",
             "consultingbeteiligungs ag", "acme  esrvices", "holding", "", None, "a b a",
             "beijing konggu jituan", "servier capitol invest"]
    con = duckdb.connect()
    con.execute("CREATE TEMP TABLE orgs (org_name VARCHAR, org_name_norm VARCHAR)")
    con.executemany("INSERT INTO orgs VALUES (?, ?)", [[f"raw {i}", n] for i, n in enumerate(names)])
    expected = con.execute(f"""
        SELECT org_name, {org_tokens_sql('org_name_norm')}, {org_qualifiers_sql('org_name_norm')},
               {org_core_sql('org_name_norm')} FROM orgs ORDER BY org_name""").fetchall()
    add_org_word_columns(con, "orgs", "org_name", "org_name_norm")
    got = con.execute("SELECT org_name, org_name_tokens, org_name_qualifiers, org_name_core "
                      "FROM orgs ORDER BY org_name").fetchall()
    assert got == expected
    assert any(row[2] for row in got) and any(row[3] for row in got)  # the cases are reached
    assert dict((r[0], r[2]) for r in got)["raw 0"] == ["holding", "holding"]


@pytest.mark.parametrize("source", SOURCES)
def test_compiled_canonical_select_gives_duckdbs_rows(staged, source: str, monkeypatch) -> None:
    """Real time's dicts path assembles the canonical row in Python (the canonical SELECT compiled
    from its SQL). Every generated record and nested part, alone and in batches, goes both ways
    here (the shadow check on all of them): the compiled SELECT must never be switched off, must
    decide nearly every record itself, and its rows are DuckDB's."""
    from pipelines.standardize import records

    monkeypatch.setattr(records, "SHADOW_CHECKS", 10**9)
    accepted, _, run_id = staged[source]
    mappings = [MAPPINGS[source], *(r.mapping for r in MAPPINGS[source].records)]
    for mapping in mappings:
        rows = accepted if mapping.part is None else records.expand_part_rows(mapping, accepted)
        if not len(rows):
            continue
        warm = RecordStandardizer(mapping)
        for start in range(0, len(rows), 7):  # batches of 7, as concurrent requests make them
            warm.standardize_rows(rows.iloc[start:start + 7], run_id)
        for i in range(0, len(rows), max(1, len(rows) // 40)):
            warm.standardize_rows(rows.iloc[[i]], run_id)
        assert warm._compiled and all(f is not None for f in warm._compiled.values()), mapping.name
        assert warm.paths["checked"] >= 0.9 * warm.paths["duckdb"], (mapping.name, warm.paths)


def test_compiled_canonical_select_is_used_after_its_checks_and_dropped_on_a_difference(staged, monkeypatch):
    from pipelines.standardize import records

    monkeypatch.setattr(records, "SHADOW_CHECKS", 5)
    accepted, _, run_id = staged["sales"]
    warm = RecordStandardizer(MAPPINGS["sales"])
    # DuckDB's statement alone (python=False), as dicts
    expected = [warm._run(accepted.iloc[[i]], run_id, records._fetch_dicts) for i in range(12)]
    got = [warm.standardize_rows(accepted.iloc[[i]], run_id) for i in range(12)]
    assert warm.paths["python"] >= 5 and warm.paths["checked"] >= 5
    assert got == expected

    # a compiled SELECT that gets one column wrong is found out by the check and switched off
    other = RecordStandardizer(MAPPINGS["sales"])
    real = records.compile_canonical_select

    def wrong(sql, names):
        fn, why = real(sql, names)
        return (lambda b, lookup: {**fn(b, lookup), "city": "Atlantis"}), why

    monkeypatch.setattr(records, "compile_canonical_select", wrong)
    rows = [other.standardize_rows(accepted.iloc[[i]], run_id)[0] for i in range(12)]
    assert all(r["city"] != "Atlantis" for r in rows)
    assert other.paths["python"] == 0 and not any(other._compiled.values())
