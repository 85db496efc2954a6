"""`ucv erase` end to end: a canary person planted in all four sources leaves no trace anywhere
in the data root or in Airflow's home (logs, the metadata DB with XComs and serialized DAGs) after
the erasure, nor after another night (the sources still send them), a rerun of an older date, and
`make run` (the latest landed date run again). The night before the erasure and the last step run
through Airflow for real (`make_run.main`: `airflow dags test`), with an Airflow home in tmp_path;
the other nights run in-process (`ucv run`'s path), to keep the test near three minutes."""

from __future__ import annotations

import gzip
import json
import sqlite3
import zlib
from datetime import date

import duckdb
import pytest
from canary import EMAIL, NATIONAL_ID, PHONE, canary_hits, plant_canary
from orchestration_support import end_to_end_skip_reason, generate_sample, land
from typer.testing import CliRunner

from pipelines import make_run, settings
from pipelines.cli import app
from pipelines.identify.registry import read_state, registry_file
from pipelines.orchestration.run import run_pipeline

D1, D2, D3 = date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22)


def land_with_canary(home, sample, day: date) -> None:
    plant_canary(land(home, sample, day))


def canary_customers() -> set[str]:
    with duckdb.connect(str(settings.warehouse_file()), read_only=True) as con:
        return {r[0] for r in con.execute(
            "SELECT DISTINCT customer_id FROM source_records WHERE email = ? OR national_id = ?",
            [EMAIL, NATIONAL_ID]).fetchall()}


def ingest_counts(day: date) -> dict:
    path = settings.data_root() / "runs" / day.isoformat() / "report" / "ingest_counts.json"
    return json.loads(path.read_text(encoding="utf-8"))["sources"]


@pytest.mark.slow
def test_an_erased_canary_leaves_no_trace_after_erase_nights_reruns_and_make_run(
        tmp_path, monkeypatch):
    if reason := end_to_end_skip_reason():
        pytest.skip(reason)
    sample = generate_sample(tmp_path / "sample")
    home, airflow_home = tmp_path / "home", tmp_path / "airflow"
    monkeypatch.setenv("UCV_HOME", str(home))
    monkeypatch.setattr(make_run, "LOCAL_AIRFLOW_HOME", airflow_home)  # `make run`'s, in tmp
    for day in (D1, D2):
        land_with_canary(home, sample, day)
    run_pipeline(D1)
    assert make_run.main(["--date", D2.isoformat()]) == 0  # the night before, through Airflow
    assert (airflow_home / "airflow.db").is_file()
    assert (airflow_home / "logs" / "make_run" / f"{D2}.log").is_file()
    # positive control: the search reads the run's XComs (counts keyed by table) in Airflow's DB
    assert any(hit.startswith(str(airflow_home / "airflow.db")) for hit in canary_hits(
        airflow_home, values=("customer_policy_links",)))
    before = canary_hits(home, airflow_home)
    assert len(before) > 20, "the canary should be everywhere before the erasure"
    assert any("/export/" in hit for hit in before), "the canary opted in: in the marketing file"
    assert [hit for hit in before if hit.startswith(str(airflow_home))] == [], \
        "Airflow's logs, XComs and DB must carry no personal data"
    canaries = canary_customers()
    assert canaries

    result = CliRunner().invoke(app, ["erase", "--email", EMAIL, "--national-id", NATIONAL_ID,
                                      "--phone", PHONE])
    assert result.exit_code == 0, result.output
    assert EMAIL not in result.output and NATIONAL_ID not in result.output

    assert canary_hits(home, airflow_home) == []
    report = json.loads((home / "registry" / "erasures" / "0001.json").read_text())
    assert report["records_erased"] == 4 and set(report["customers_erased"]) == canaries
    assert EMAIL not in json.dumps(report) and NATIONAL_ID not in json.dumps(report)
    listed = [loc["location"] for loc in report["locations"]]
    for hit in before:  # every place that held the canary is in the report
        relative = str(hit.split(":")[0]).removeprefix(f"{home}/")
        assert any(relative == loc or relative.startswith(loc + "/") for loc in listed), relative
    history = read_state(registry_file()).history
    erased = history[history["event"] == "erased"]
    assert set(erased["customer_id"]) == canaries

    # another night: every source still sends the canary; they are dropped and counted `erased`
    land_with_canary(home, sample, D3)
    run_pipeline(D3)
    assert canary_hits(home, airflow_home) == []
    counts = ingest_counts(D3)
    assert sum(s["rows_erased"] for s in counts.values()) == 4
    for source in counts.values():
        assert source["rows_read"] == (source["rows_accepted"] + source["rows_quarantined"]
                                       + source["rows_erased"])

    # a rerun of an older date: rebuilt from its (redacted) landed files, not published
    run_pipeline(D1)
    assert canary_hits(home, airflow_home) == []
    assert sum(s["rows_erased"] for s in ingest_counts(D1).values()) == 4

    # `make run` through Airflow: the most recent landed date (D3), run again
    assert make_run.main([]) == 0
    assert (airflow_home / "logs" / "make_run" / f"{D3}.log").is_file()
    assert canary_hits(home, airflow_home) == []
    assert sum(s["rows_erased"] for s in ingest_counts(D3).values()) == 4
    assert canary_customers() == set()
    state = read_state(registry_file())
    assert state.live_run_id == D3.isoformat()
    assert not set(state.live_map["customer_id"]) & canaries  # erased IDs never come back


def test_the_canary_search_reads_sqlite_cells_compressed_blobs_and_gzipped_logs(tmp_path):
    # what Airflow's home holds: a metadata DB (XCom JSON, zlib'd serialized DAGs), task logs
    db = tmp_path / "airflow.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE xcom (key TEXT, value JSON)")
        con.execute("CREATE TABLE serialized_dag (data_compressed BLOB)")
        con.execute("INSERT INTO xcom VALUES ('return_value', '{\"rows\": 3}')")
        con.execute("INSERT INTO serialized_dag VALUES (?)",
                    [zlib.compress(json.dumps({"doc": f"call {PHONE}"}).encode())])
    con.close()
    (tmp_path / "task.log.gz").write_bytes(gzip.compress(f"row: {EMAIL}\n".encode()))
    (tmp_path / "clean.log").write_text("run=2026-11-22 stage=extract rows=3\n")
    assert canary_hits(tmp_path) == [f"{db}:serialized_dag", str(tmp_path / "task.log.gz")]
    assert canary_hits(tmp_path, values=("return_value",)) == [str(db)]  # a text cell: bytes
