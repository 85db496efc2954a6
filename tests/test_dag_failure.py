"""A night whose source is rejected, under Airflow (`dag.test()`): the run fails before publish,
without retrying the rejected source, and the published warehouse stays as it was."""

from __future__ import annotations

import pytest
from orchestration_support import (
    EXPORT_DATE,
    drift_csv_header,
    end_to_end_skip_reason,
    generate_sample,
    land,
    migrated_airflow_env,
    run_dag_test,
)

from pipelines.orchestration.run_state import read_run_state
from pipelines.settings import RunPaths


def test_rejected_source_fails_the_dag_run_without_retry_and_before_publish(tmp_path):
    if reason := end_to_end_skip_reason():
        pytest.skip(reason)
    home = tmp_path / "ucv"
    drift_csv_header(land(home, generate_sample(tmp_path / "sample")))
    published = home / "warehouse" / "ucv.duckdb"
    published.parent.mkdir(parents=True)
    published.write_bytes(b"the warehouse published by an earlier night")
    before = (published.stat().st_ino, published.read_bytes())
    env = migrated_airflow_env(tmp_path / "airflow", home)

    result = run_dag_test(env, "2026-11-23T02:00:00+00:00")

    assert result["state"] == "failed"
    failed = [ti for ti in result["tis"] if ti["state"] == "failed"]
    assert [ti["task_id"] for ti in failed] == ["validate"]  # only the sales source
    assert failed[0]["try_number"] == 1  # AirflowFailException: no retry of a rejection
    downstream = {ti["task_id"]: ti["state"] for ti in result["tis"] if ti["map_index"] == -1}
    assert downstream["publish"] == downstream["report"] == "upstream_failed"
    assert (published.stat().st_ino, published.read_bytes()) == before

    run = RunPaths.for_run(EXPORT_DATE.isoformat(), base=home / "runs")
    state = read_run_state(run)
    assert state["status"] == "failed" and "sales" in state["error"]
    assert "publish" not in state["stages"]
    assert "| status | failed |" in (run.report_dir / "run_report.md").read_text()
