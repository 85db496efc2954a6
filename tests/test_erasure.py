"""`ucv erase` end to end: a canary person planted in all four sources leaves no trace anywhere
in the data root or in Airflow's home (logs, the metadata DB with XComs and serialized DAGs) after
the erasure, nor after another night (the sources still send them), a rerun of an older date, and
`make run` (the latest landed date run again). The night before the erasure and the last step run
through Airflow for real (`make_run.main`: `airflow dags test`), with an Airflow home in tmp_path;
the other nights run in-process (`ucv run`'s path). Beside it: the search itself, and a person
nested in other people's rows (the broker export's `records:`) erased from them alone."""

from __future__ import annotations

import dataclasses
import gzip
import json
import sqlite3
import zlib
from datetime import date

import duckdb
import pyarrow.parquet as pq
import pytest
from canary import (
    BROKER_OTHERS,
    EMAIL,
    NATIONAL_ID,
    PHONE,
    broker_notifications,
    canary_hits,
    plant_canary,
    write_broker_export,
)
from orchestration_support import end_to_end_skip_reason, generate_sample, land
from typer.testing import CliRunner

import pipelines.ingest
from pipelines import make_run, settings
from pipelines.cli import app
from pipelines.identify import erase as erase_module
from pipelines.identify.erase import ErasureRequest, erase
from pipelines.identify.registry import read_state, registry_file
from pipelines.ingest import ingest
from pipelines.ingest.mapping import load_mapping
from pipelines.orchestration.run import run_pipeline
from pipelines.settings import EXPECTATIONS_DIR, SOURCES_DIR, RunPaths

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


def test_erase_takes_a_person_nested_in_other_peoples_rows_out_of_them_everywhere(
        tmp_path, monkeypatch):
    # a deployment with the broker export (`records:`: claimant, co-insured nested in a row)
    home = tmp_path / "home"
    monkeypatch.setenv("UCV_HOME", str(home))
    broker = load_mapping(SOURCES_DIR / "optional" / "broker.yaml", EXPECTATIONS_DIR)
    mappings = {"broker": dataclasses.replace(broker, validation=dataclasses.replace(
        broker.validation, max_bad_row_share=0.5))}  # one row of three goes to quarantine
    monkeypatch.setattr(pipelines.ingest, "load_mappings", lambda *args: mappings)
    monkeypatch.setattr(erase_module, "_mappings", lambda: mappings)
    landing = home / "landing" / D3.isoformat()
    landing.mkdir(parents=True)
    landed = landing / "broker_claims_2026-11-22.jsonl"
    rows = broker_notifications()
    quarantined = {**rows[1], "notification_id": "BN-3", "status": "lost",  # not a known status
                   "claimant": {**rows[0]["claimant"], "ref": "C3"}}
    quarantined["insured"] = {**quarantined["insured"], "ref": "I3", "last_name": "Frostberg"}
    landed.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                              for r in [*rows, quarantined]), encoding="utf-8")
    run = RunPaths.for_run(D3.isoformat())
    ingest(landing, run, mappings)
    before = canary_hits(home)
    assert {f"{run.raw_dir}/broker.parquet", f"{run.accepted_dir}/broker.parquet",
            f"{run.quarantine_dir}/broker.parquet", str(landed)} <= set(before)

    report = erase(ErasureRequest(emails=[EMAIL]))

    assert canary_hits(home) == []
    assert report.records_erased == 2  # the claimant and the co-insured, never a row's own
    locations = {loc["location"]: loc for loc in report.locations}
    for hit in before:
        assert str(hit).removeprefix(f"{home}/") in locations, hit
    for path, nested in ((landed, 3), (run.raw_dir / "broker.parquet", 3),
                         (run.accepted_dir / "broker.parquet", 2),
                         (run.quarantine_dir / "broker.parquet", 1)):
        where = locations[str(path.relative_to(home))]
        assert (where["rows_removed"], where["nested_records_removed"]) == (0, nested), where
    quarantine = pq.read_table(run.quarantine_dir / "broker.parquet").to_pylist()
    assert [json.loads(json.loads(q["raw"])["insured"])["last_name"] for q in quarantine] == \
        ["Frostberg"]  # the quarantined row stays, without the canary
    staged = pq.read_table(run.staged_dir / "source_records.parquet",
                           columns=["source_record_id", "family_name"])
    assert dict(zip(*staged.to_pydict().values(), strict=True)) == BROKER_OTHERS
    raw = json.dumps(pq.read_table(run.raw_dir / "broker.parquet").to_pylist())
    assert all(family in raw for family in BROKER_OTHERS.values())  # the other people stay


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_erasing_a_rows_own_person_keeps_the_people_nested_in_it_next_night(
        tmp_path, monkeypatch, fmt):
    # BN-1's insured Anna is erased; the claimant and co-insured of her notification are not
    home = tmp_path / "home"
    monkeypatch.setenv("UCV_HOME", str(home))
    broker = load_mapping(SOURCES_DIR / "optional" / "broker.yaml", EXPECTATIONS_DIR)
    mappings = {"broker": dataclasses.replace(broker, format=fmt,
                                              file_pattern=f"broker_claims*.{fmt}")}
    monkeypatch.setattr(pipelines.ingest, "load_mappings", lambda *args: mappings)
    monkeypatch.setattr(erase_module, "_mappings", lambda: mappings)
    anna = ("Altmann", "anna.altmann@example.de")

    def night(day: date) -> tuple[RunPaths, set[str]]:
        landing = home / "landing" / day.isoformat()
        landing.mkdir(parents=True)
        write_broker_export(landing / f"broker_claims_{day.isoformat()}.{fmt}", fmt)  # Anna too
        run = RunPaths.for_run(day.isoformat())
        summary = ingest(landing, run, mappings)
        return run, set(pq.read_table(summary.source_records_path)["source_record_id"].to_pylist())

    run, before = night(D2)
    assert "broker:BN-1" in before and canary_hits(home, values=anna)

    report = erase(ErasureRequest(emails=[anna[1]]))

    assert report.records_erased == 1  # Anna's own record, none of the people nested with her
    locations = {loc["location"]: loc for loc in report.locations}
    for path in (home / "landing" / D2.isoformat() / f"broker_claims_{D2.isoformat()}.{fmt}",
                 run.raw_dir / "broker.parquet", run.accepted_dir / "broker.parquet"):
        where = locations[str(path.relative_to(home))]
        assert (where["rows_removed"], where.get("rows_redacted", 0)) == (0, 1), where
    kept = pq.read_table(run.accepted_dir / "broker.parquet").to_pylist()
    assert [(r["notification_id"], r["insured"]) for r in kept][0] == ("BN-1", None)
    assert "Bunte" in kept[0]["co_insured"]  # the night before keeps them too

    _, after = night(D3)  # the source still sends Anna

    assert after == before - {"broker:BN-1"}  # the others, under the same source_record_ids
    assert canary_hits(home, values=anna) == []
    counts = ingest_counts(D3)["broker"]
    assert counts["rows_read"] == (counts["rows_accepted"] + counts["rows_quarantined"]
                                   + counts["rows_erased"])
    assert (counts["rows_erased"], counts["rows_redacted"], counts["rows_staged"],
            counts["records_staged"]) == (1, 1, 1, len(after))
