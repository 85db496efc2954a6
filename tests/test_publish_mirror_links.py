"""The Parquet mirror shares golden's files (hard links) instead of writing the tables again:
its files are golden's, the DuckDB tables hold the same rows, and neither a golden rerun, pruning,
retention nor an erasure lets a run folder and a mirror version change each other's files."""

from __future__ import annotations

import errno
import os
import shutil
from datetime import date

import duckdb
import pyarrow.parquet as pq
import pytest
from golden_builders import record, small_portfolio, write_identify_extras

from pipelines import settings
from pipelines.golden import build_golden, current_mirror, publish_warehouse
from pipelines.golden import publish as publish_module
from pipelines.golden.build import GOLDEN_TABLES
from pipelines.golden.publish import LINKED_TABLES, WAREHOUSE_TABLES, prune_mirrors
from pipelines.settings import RunPaths

RUN_ID = "2026-11-22"


def golden_run(base, run_id: str = RUN_ID, extra=()) -> RunPaths:
    run = small_portfolio(RunPaths.for_run(run_id, base=base), extra)
    write_identify_extras(run, history=[{"run_id": run_id, "event": "new", "customer_id": "C1",
                                         "related_customer_id": None}])
    build_golden(run, date.fromisoformat(run_id))
    return run


def rows(con, query: str) -> list:
    return sorted(con.execute(query).fetchall(), key=repr)


def test_every_golden_table_is_linked_and_the_rest_are_written_by_publish():
    assert set(LINKED_TABLES) == set(GOLDEN_TABLES)
    assert set(WAREHOUSE_TABLES) - set(LINKED_TABLES) == {
        "quarantine", "match_pairs", "customer_id_history", "review_queue", "runs"}


def test_mirror_files_are_goldens_files_and_the_warehouse_holds_the_same_rows(tmp_path):
    run = golden_run(tmp_path / "runs")
    wh = tmp_path / "wh"
    publish_warehouse(run, wh)
    mirror = current_mirror(wh)
    assert sorted(p.stem for p in mirror.glob("*.parquet")) == sorted(WAREHOUSE_TABLES)
    with duckdb.connect(str(wh / "ucv.duckdb"), read_only=True) as con:
        for table in LINKED_TABLES:
            golden_file, mirror_file = run.golden_dir / f"{table}.parquet", mirror / f"{table}.parquet"
            assert os.path.samefile(golden_file, mirror_file), table  # one file, two names
            assert golden_file.read_bytes() == mirror_file.read_bytes()
            in_file = f"SELECT * FROM read_parquet('{mirror_file}')"
            for query in (f"{in_file} EXCEPT ALL SELECT * FROM {table}",
                          f"SELECT * FROM {table} EXCEPT ALL {in_file}"):
                assert con.execute(f"SELECT count(*) FROM ({query})").fetchall() == [(0,)], table
            assert (con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
                    == pq.read_metadata(mirror_file).num_rows > 0), table
        # the tables publish shapes itself are written from the DuckDB file, run_id added
        for table in set(WAREHOUSE_TABLES) - set(LINKED_TABLES):
            assert rows(con, f"SELECT * FROM {table}") == rows(
                con, f"SELECT * FROM read_parquet('{mirror / table}.parquet')"), table
        assert con.execute("SELECT DISTINCT run_id FROM match_pairs").fetchall() == [(RUN_ID,)]


def test_a_copy_where_hard_links_are_not_possible(tmp_path, monkeypatch):
    def no_links(source, target):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(publish_module.os, "link", no_links)
    run = golden_run(tmp_path / "runs")
    publish_warehouse(run, tmp_path / "wh")
    mirror = current_mirror(tmp_path / "wh")
    for table in LINKED_TABLES:
        golden_file, mirror_file = run.golden_dir / f"{table}.parquet", mirror / f"{table}.parquet"
        assert not os.path.samefile(golden_file, mirror_file)
        assert golden_file.read_bytes() == mirror_file.read_bytes()
    assert not list(mirror.glob(".*"))  # no temporary copy left


def test_a_golden_rerun_does_not_change_a_published_mirror(tmp_path):
    run = golden_run(tmp_path / "runs")
    wh = tmp_path / "wh"
    publish_warehouse(run, wh)
    mirror = current_mirror(wh)
    published = {t: (mirror / f"{t}.parquet").read_bytes() for t in LINKED_TABLES}
    # the same run folder rebuilt with one more customer: new files under the same names
    golden_run(tmp_path / "runs", extra=[(record("sales:L-9", given_name="Eva", family_name="Roth",
                                                 given_name_norm="eva", family_name_norm="roth",
                                                 email="eva@example.de"), "C9")])
    assert pq.read_metadata(run.golden_dir / "customers.parquet").num_rows == 6
    for table in LINKED_TABLES:
        assert (mirror / f"{table}.parquet").read_bytes() == published[table], table
    with duckdb.connect() as con:
        assert con.execute(f"SELECT count(*) FROM read_parquet('{mirror}/customers.parquet')"
                           ).fetchall() == [(5,)]


def test_pruning_old_mirrors_and_removing_the_run_folder_keep_the_current_mirror_readable(
        tmp_path):
    wh = tmp_path / "wh"
    first = golden_run(tmp_path / "runs", "2026-11-21")
    publish_warehouse(first, wh)
    old_mirror = current_mirror(wh)
    run = golden_run(tmp_path / "runs", RUN_ID)
    publish_warehouse(run, wh)
    publish_warehouse(run, wh)  # a republish links the same golden files into a new version
    current = current_mirror(wh)
    previous = sorted(p for p in (wh / "parquet").iterdir() if p.name.startswith("000002"))[0]
    assert os.path.samefile(previous / "customers.parquet", current / "customers.parquet")
    prune_mirrors(wh, keep=1)
    assert not old_mirror.exists() and not previous.exists()
    assert (first.golden_dir / "customers.parquet").is_file()  # pruning removed names, not data
    shutil.rmtree(run.root)  # retention removing the run folder
    with duckdb.connect() as con:
        for table in WAREHOUSE_TABLES:
            con.execute(f"SELECT count(*) FROM read_parquet('{current / table}.parquet')")
        assert con.execute(f"SELECT count(*) FROM read_parquet('{current}/customers.parquet')"
                           ).fetchall() == [(5,)]
    assert (current / "customers.parquet").stat().st_nlink == 1


def test_erasure_cleans_the_mirror_and_the_run_folder_each_and_separates_their_files(
        tmp_path, monkeypatch):
    from pipelines.identify.erase import ErasureRequest, erase

    monkeypatch.setenv("UCV_HOME", str(tmp_path / "home"))
    run = golden_run(settings.data_root() / "runs")
    publish_warehouse(run)
    mirror = current_mirror()
    assert os.path.samefile(run.golden_dir / "customers.parquet", mirror / "customers.parquet")
    erase(ErasureRequest(customer_ids=["C2"]))
    with duckdb.connect() as con:
        for folder in (run.golden_dir, mirror):
            for table in ("source_records", "customers", "customer_360"):
                ids = {r[0] for r in con.execute(
                    f"SELECT customer_id FROM read_parquet('{folder / table}.parquet')").fetchall()}
                assert ids == {"C1", "C3", "C4", "C5"}, (folder, table)
        con.execute(f"ATTACH '{settings.warehouse_file()}' AS wh (READ_ONLY)")
        assert con.execute("SELECT count(*) FROM wh.customers WHERE customer_id = 'C2'"
                           ).fetchall() == [(0,)]
    for table in ("customers", "customer_360", "source_records"):
        # each name was rewritten to a file of its own; both hold the same cleaned rows
        golden_file, mirror_file = run.golden_dir / f"{table}.parquet", mirror / f"{table}.parquet"
        assert not os.path.samefile(golden_file, mirror_file)
        assert pq.read_table(golden_file).equals(pq.read_table(mirror_file))


@pytest.mark.parametrize("table", ["customers", "policies"])
def test_a_missing_golden_file_fails_before_anything_is_published(tmp_path, table):
    run = golden_run(tmp_path / "runs")
    (run.golden_dir / f"{table}.parquet").unlink()
    with pytest.raises(FileNotFoundError, match=f"{table}.parquet"):
        publish_warehouse(run, tmp_path / "wh")
    assert not (tmp_path / "wh" / "ucv.duckdb").exists()
    assert not [p for p in (tmp_path / "wh" / "parquet").iterdir()]
