"""The published warehouse opens in the DuckDB 1.x that analysts' tools ship (storage version), in
the pinned CLI behind `ucv sql`, and answers the example queries there as in DuckDB 2.0."""

from __future__ import annotations

import json
import subprocess
from datetime import date

import duckdb
import pytest
from legacy_duckdb import run_with_duckdb
from test_golden_queries import example_queries

from pipelines.golden import build_golden, publish_warehouse
from pipelines.golden import publish as publish_module
from pipelines.golden.publish import sql_shell_command
from pipelines.golden.testing import small_portfolio
from pipelines.settings import RunPaths

ANALYST_DUCKDB = "1.4.1"  # the oldest 1.x the configured storage version v1.4.0 is read by

OPEN_AND_ANSWER = """
import json, sys
import duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
con.execute("SET VARIABLE customer_id = 'C1'")
relations = [r[0] for r in con.execute(
    "SELECT table_name FROM duckdb_tables() UNION ALL "
    "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()]
out = {"version": duckdb.__version__,
       "counts": {r: con.execute(f'SELECT count(*) FROM "{r}"').fetchall()[0][0] for r in relations},
       "answers": {name: json.loads(json.dumps(con.execute(sql).fetchall(), default=str))
                   for name, sql in json.loads(sys.argv[2]).items()}}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def published_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("compat")
    run = small_portfolio(RunPaths.for_run("2026-11-22", base=base / "runs"))
    build_golden(run, date(2026, 11, 22))
    return run, base


def answers_here(path) -> dict:
    with duckdb.connect(str(path), read_only=True) as con:
        con.execute("SET VARIABLE customer_id = 'C1'")
        relations = [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() UNION ALL "
            "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()]
        return {"counts": {r: con.execute(f'SELECT count(*) FROM "{r}"').fetchall()[0][0]
                           for r in relations},
                "answers": {name: json.loads(json.dumps(con.execute(sql).fetchall(), default=str))
                            for name, sql in example_queries().items()}}


@pytest.mark.slow
def test_the_warehouse_opens_in_duckdb_1x_with_the_same_answers(published_run):
    run, base = published_run
    path = publish_warehouse(run, base / "wh")
    old = run_with_duckdb(ANALYST_DUCKDB, OPEN_AND_ANSWER, str(path), json.dumps(example_queries()))
    assert old["version"] == ANALYST_DUCKDB
    here = answers_here(path)
    assert old["counts"] == here["counts"] and len(old["counts"]) >= 9
    assert old["answers"] == here["answers"]


@pytest.mark.slow
def test_the_default_storage_version_is_what_duckdb_1x_refuses(published_run, monkeypatch):
    """The control: without the configured storage version, 1.x cannot open the file."""
    run, base = published_run
    monkeypatch.setattr(publish_module, "storage_version", lambda: None)
    path = publish_warehouse(run, base / "wh-default")
    with pytest.raises(AssertionError, match="version number"):
        run_with_duckdb(ANALYST_DUCKDB, OPEN_AND_ANSWER, str(path), "{}")


def test_ucv_sql_opens_the_warehouse_read_only_in_the_pinned_cli(published_run):
    run, base = published_run
    path = publish_warehouse(run, base / "wh-cli")
    argv = sql_shell_command(path, command="SELECT version() || '|' || count(*) FROM customers")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "|5" in done.stdout and "v1." in done.stdout
    write = subprocess.run(sql_shell_command(path, command="DELETE FROM customers"),
                           capture_output=True, text=True, timeout=60)
    assert "read-only" in (write.stdout + write.stderr).lower()
    mirror = subprocess.run(sql_shell_command(path, mirror=True,
                                              command="SELECT count(*) FROM customer_360"),
                            capture_output=True, text=True, timeout=60)
    assert mirror.returncode == 0 and "5" in mirror.stdout, mirror.stderr
