"""publish_warehouse: every DESIGN table, cumulative history and runs, all-or-nothing swaps that a
concurrent reader never sees half-done."""

from __future__ import annotations

import multiprocessing
import time
from datetime import date
from pathlib import Path

import duckdb
import pytest
from golden_builders import small_portfolio, write_identify_extras

from pipelines.golden import build_golden, current_mirror, publish_warehouse
from pipelines.golden.publish import WAREHOUSE_TABLES, WarehouseAuditFailed
from pipelines.settings import RunPaths

SINGLE_RUN_TABLES = ("source_records", "match_pairs", "customers", "customer_policy_links",
                     "customer_360")


def make_run(base: Path, run_id: str) -> RunPaths:
    run = small_portfolio(RunPaths.for_run(run_id, base=base))
    write_identify_extras(run, history=[
        {"run_id": run_id, "event": "new", "customer_id": f"C-{run_id}",
         "related_customer_id": None}])
    build_golden(run, date.fromisoformat(run_id))
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    return make_run(base, "2026-11-21"), make_run(base, "2026-11-22")


def table_names(con) -> set[str]:
    return {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}


def test_publish_writes_every_design_table_to_duckdb_and_the_mirror(runs, tmp_path):
    path = publish_warehouse(runs[0], tmp_path / "wh")
    assert path == tmp_path / "wh" / "ucv.duckdb"
    with duckdb.connect(str(path), read_only=True) as con:
        assert table_names(con) == set(WAREHOUSE_TABLES)
        mirror = current_mirror(tmp_path / "wh")
        for table in WAREHOUSE_TABLES:
            in_db = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
            in_mirror = con.execute(
                f"SELECT count(*) FROM read_parquet('{mirror / table}.parquet')").fetchall()[0][0]
            assert in_db == in_mirror, table
        assert con.execute("SELECT count(*) FROM customers").fetchall()[0][0] == 5
        comment = con.execute("SELECT comment FROM duckdb_columns() WHERE table_name = 'customers'"
                              " AND column_name = 'confidence'").fetchall()[0][0]
        assert "weakest record" in comment
    assert not list((tmp_path / "wh").glob(".building*"))


def test_history_and_runs_accumulate_and_a_rerun_replaces_its_own_rows(runs, tmp_path):
    wh = tmp_path / "wh"
    for run in (runs[0], runs[1], runs[1]):
        publish_warehouse(run, wh)
    with duckdb.connect(str(wh / "ucv.duckdb"), read_only=True) as con:
        assert con.execute("SELECT run_id, publish_sequence, status, customers FROM runs "
                           "ORDER BY publish_sequence").fetchall() == [
            ("2026-11-21", 1, "published", 5), ("2026-11-22", 3, "published", 5)]
        assert con.execute("SELECT run_id, customer_id FROM customer_id_history "
                           "ORDER BY run_id").fetchall() == [
            ("2026-11-21", "C-2026-11-21"), ("2026-11-22", "C-2026-11-22")]
    # only the newest mirror versions are kept, and `current` is the last publish
    assert current_mirror(wh).name == "000003-2026-11-22"


def test_runs_take_what_they_need_from_run_state(runs, tmp_path):
    run = runs[0]
    (run.root / "run_state.json").write_text(
        '{"run_id": "2026-11-21", "logical_date": "2026-11-21T00:00:00+00:00", '
        '"status": "running", "orchestrator": "airflow", "started_at": "2026-11-22T01:00:00+00:00",'
        ' "stages": {"ingest": {"seconds": 12.5, "counts": {"rows": 9}}, "weird": 3}}')
    try:
        path = publish_warehouse(run, tmp_path / "wh")
    finally:
        (run.root / "run_state.json").unlink()
    with duckdb.connect(str(path), read_only=True) as con:
        row = con.execute("SELECT logical_date, pipeline_status, orchestrator, "
                          "stage_seconds->>'$.ingest', stage_counts->'$.ingest'->>'$.rows' "
                          "FROM runs").fetchall()[0]
    assert row == ("2026-11-21T00:00:00+00:00", "running", "airflow", "12.5", "9")


def test_a_failed_publish_leaves_the_last_good_warehouse(runs, tmp_path):
    wh = tmp_path / "wh"
    publish_warehouse(runs[0], wh)
    bad = make_run(tmp_path / "bad", "2026-11-23")
    customers = bad.golden_dir / "customers.parquet"
    with duckdb.connect() as con:  # a duplicated customer: the audit must refuse it
        con.execute(f"COPY (SELECT * FROM '{customers}' UNION ALL "
                    f"(SELECT * FROM '{customers}' LIMIT 1)) TO '{customers}.x' (FORMAT parquet)")
    Path(f"{customers}.x").replace(customers)
    with pytest.raises(WarehouseAuditFailed, match="customer_id is unique"):
        publish_warehouse(bad, wh)
    (bad.golden_dir / "customer_360.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="customer_360.parquet"):
        publish_warehouse(bad, wh)
    with duckdb.connect(str(wh / "ucv.duckdb"), read_only=True) as con:
        assert con.execute("SELECT DISTINCT run_id FROM customers").fetchall() == [("2026-11-21",)]
    assert current_mirror(wh).name == "000001-2026-11-21"
    assert sorted(p.name for p in (wh / "parquet").iterdir()) == [
        "000001-2026-11-21", "LATEST", "current"]
    assert not list(wh.glob(".building*"))


def read_in_a_loop(warehouse_dir: str, stop_file: str, ready_file: str, results) -> None:
    """Reader process: every read must see one run across tables, in DuckDB and in the mirror."""
    seen, problems, reads = set(), [], 0
    while not Path(stop_file).exists():
        try:
            with duckdb.connect(f"{warehouse_dir}/ucv.duckdb", read_only=True) as con:
                run_ids = {t: con.execute(f"SELECT DISTINCT run_id FROM {t}").fetchall()
                           for t in SINGLE_RUN_TABLES}
                latest = con.execute("SELECT run_id FROM runs "
                                     "ORDER BY publish_sequence DESC LIMIT 1").fetchall()
            mirror = current_mirror(Path(warehouse_dir))  # the pointer, resolved once per read
            with duckdb.connect() as con:
                mirror_ids = {t: con.execute(
                    f"SELECT DISTINCT run_id FROM read_parquet('{mirror}/{t}.parquet')").fetchall()
                    for t in SINGLE_RUN_TABLES}
                mirror_latest = con.execute(
                    f"SELECT run_id FROM read_parquet('{mirror}/runs.parquet') "
                    "ORDER BY publish_sequence DESC LIMIT 1").fetchall()
        except Exception as exc:  # a missing or half-written table is exactly what must not happen
            problems.append(f"{type(exc).__name__}: {exc}")
            continue
        for ids, last in ((run_ids, latest), (mirror_ids, mirror_latest)):
            distinct = {row for rows in ids.values() for row in rows} | set(last)
            if len(distinct) != 1:
                problems.append(f"mixed state: {ids} {last}")
            seen |= distinct
        reads += 1
        Path(ready_file).touch()
    results.put((reads, sorted(r[0] for r in seen), problems[:5]))


def test_a_reader_never_sees_a_mixed_or_missing_table_while_publishes_run(runs, tmp_path):
    wh = tmp_path / "wh"
    publish_warehouse(runs[0], wh)
    stop, ready = tmp_path / "stop", tmp_path / "ready"
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    reader = context.Process(target=read_in_a_loop, args=(str(wh), str(stop), str(ready), results))
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:  # the reader has read once
            time.sleep(0.1)
        for i in range(6):
            publish_warehouse(runs[(i + 1) % 2], wh)
        time.sleep(0.5)
    finally:
        stop.touch()
        reads, seen, problems = results.get(timeout=60)
        reader.join(timeout=30)
    assert problems == []
    assert reads >= 5
    assert seen == ["2026-11-21", "2026-11-22"]  # it did read across the swaps
