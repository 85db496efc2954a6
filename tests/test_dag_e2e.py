"""The DAG end to end under Airflow (`dag.test()`) on a few hundred generated customers.

Airflow reads AIRFLOW_HOME when first imported, so the DAG run happens in a fresh interpreter
with a temporary AIRFLOW_HOME (SQLite, migrated first) and a temporary UCV_HOME.
"""

from __future__ import annotations

import pytest
from orchestration_support import (
    EXPORT_DATE,
    end_to_end_skip_reason,
    generate_sample,
    land,
    migrated_airflow_env,
    run_dag_test,
    serialize_dags,
)

from pipelines.orchestration import stages
from pipelines.orchestration.run_state import read_run_state
from pipelines.settings import RunPaths


def test_dag_run_processes_the_day_before_through_every_stage(tmp_path, monkeypatch):
    if reason := end_to_end_skip_reason():
        pytest.skip(reason)
    home = tmp_path / "ucv"
    land(home, generate_sample(tmp_path / "sample"))
    env = migrated_airflow_env(tmp_path / "airflow", home)
    serialize_dags(env)  # the downstream DAG must be known for the publish to queue it

    result = run_dag_test(env, "2026-11-23T02:00:00+00:00")  # processes EXPORT_DATE, 11-22

    failed = [ti for ti in result["tis"] if ti["state"] != "success"]
    assert result["state"] == "success" and not failed, failed
    monkeypatch.setenv("UCV_HOME", str(home))
    sources = stages.configured_sources()
    for mapped in ("extract", "validate"):  # one task instance per source, named after it
        names = [ti["rendered_map_index"] for ti in result["tis"] if ti["task_id"] == mapped]
        assert sorted(names) == sorted(sources), mapped

    run = RunPaths.for_run(EXPORT_DATE.isoformat(), base=home / "runs")
    state = read_run_state(run)
    assert state["status"] == "success"
    assert state["orchestrator"] == "airflow" and state["airflow_run_id"] == result["run_id"]
    assert state["logical_date"].startswith("2026-11-23")
    assert set(state["stages"]) == {
        "prepare", "standardize", "resolve", "identify", "golden", "publish", "export", "report",
        *(f"{stage}.{source}" for stage in ("extract", "validate") for source in sources)}
    assert all(s["status"] == "success" for s in state["stages"].values())
    published = state["stages"]["publish"]["counts"]
    assert 0 < published["customers"] < published["source_records"]
    assert (home / "warehouse" / "ucv.duckdb").exists()
    assert list((home / "export" / EXPORT_DATE.isoformat()).glob("marketing_customers_*"))
    assert "| status | success |" in (run.report_dir / "run_report.md").read_text()

    # the publish announced the warehouse, its mirror and the export as Asset events ...
    events = {e["asset"]: e["extra"] for e in result["asset_events"]}
    assert set(events) == {"ucv_warehouse", "ucv_parquet_mirror", "ucv_marketing_export"}
    assert all(e["run_id"] == EXPORT_DATE.isoformat() for e in events.values())
    assert events["ucv_warehouse"]["customers"] == published["customers"]
    assert events["ucv_marketing_export"]["rows"] == state["stages"]["export"]["counts"]["rows"]
    # ... so the scheduler now owes the downstream DAG a run, and its check passes on them
    assert "ucv_marketing_handoff" in result["dags_due"]
    from pipelines.orchestration.handoff import check_marketing_export

    handoff = check_marketing_export(events["ucv_marketing_export"])
    assert handoff["rows"] == events["ucv_marketing_export"]["rows"]
