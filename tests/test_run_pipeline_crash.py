"""Crashes mid-run: a stage dying after writing part of its outputs, and a killed process.

Either way, running again must leave no duplicate rows and the same outputs as a run that was
never interrupted (compared by fingerprints of every output, warehouse table and export).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from orchestration_support import (
    EXPORT_DATE,
    end_to_end_skip_reason,
    fingerprints,
    generate_sample,
    land,
)

from pipelines import settings
from pipelines.orchestration import stages
from pipelines.orchestration.run import run_pipeline
from pipelines.orchestration.run_state import read_run_state

RUN_ID = EXPORT_DATE.isoformat()


@pytest.fixture(scope="module")
def sample_landing(tmp_path_factory):
    if reason := end_to_end_skip_reason():
        pytest.skip(reason)
    return generate_sample(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, sample_landing) -> dict[str, str]:
    """Fingerprints of a run that nothing interrupted."""
    home = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UCV_HOME", str(home))
        land(home, sample_landing)
        run_pipeline(EXPORT_DATE)
        return fingerprints()


@pytest.fixture
def home(tmp_path, monkeypatch, sample_landing):
    monkeypatch.setenv("UCV_HOME", str(tmp_path))
    land(tmp_path, sample_landing)
    return tmp_path


def test_a_stage_crashing_after_partial_writes_then_retried_leaves_no_duplicates(
        home, uninterrupted, monkeypatch):
    """Like an Airflow task retry: the crashed stage runs again on its own, then the rest."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import pipelines.golden as golden_package

    real_build_golden = golden_package.build_golden

    def crash_after_writing(run, export_date=None):
        real_build_golden(run, export_date)
        customers = run.golden_dir / "customers.parquet"
        table = pq.read_table(customers)
        pq.write_table(pa.concat_tables([table, table]), customers)  # a half-done append
        pq.write_table(table, run.golden_dir / "customers_part2.parquet")  # a stray part file
        raise RuntimeError("worker lost after writing part of golden/")

    monkeypatch.setattr(golden_package, "build_golden", crash_after_writing)
    with pytest.raises(RuntimeError, match="worker lost"):
        run_pipeline(EXPORT_DATE)
    assert read_run_state(stages.run_paths(RUN_ID))["status"] == "failed"
    assert not settings.warehouse_file().exists()

    monkeypatch.setattr(golden_package, "build_golden", real_build_golden)
    for stage in (stages.golden, stages.publish, stages.export, stages.report):
        stage(RUN_ID)
    assert read_run_state(stages.run_paths(RUN_ID))["status"] == "success"
    assert fingerprints() == uninterrupted


def test_a_killed_run_rerun_gives_the_uninterrupted_outputs(home, uninterrupted):
    run = stages.run_paths(RUN_ID)
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "run", "--date", RUN_ID],
        env={**os.environ, "UCV_HOME": str(home)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            recorded = read_run_state(run).get("stages", {}) if run.root.exists() else {}
            if "identify" in recorded:  # resolve has written its outputs
                break
            time.sleep(0.05)
        assert process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert read_run_state(run)["status"] == "running"  # nobody could record the end

    run_pipeline(EXPORT_DATE)
    assert read_run_state(run)["status"] == "success"
    assert fingerprints() == uninterrupted
