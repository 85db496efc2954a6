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

    def crash_after_writing(run, export_date=None, **options):
        real_build_golden(run, export_date, **options)
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


# Where a run is killed: (stage, module, function); the whole process group gets SIGKILL right
# after the function returns (its outputs written, the stage not finished) or, for `before:`, as
# it is called. One point inside every stage; publish at each step of write -> register -> swap.
KILL_POINTS = [
    ("prepare", "pipelines.orchestration.stages", "configured_sources"),
    ("extract", "pipelines.ingest", "extract_source"),               # after the first source
    ("validate", "pipelines.ingest", "validate_source"),
    ("standardize", "pipelines.ingest", "combine_staged"),
    ("resolve", "pipelines.resolve", "predict_and_cluster"),         # before the charts
    ("identify", "pipelines.identify", "assign_customer_ids"),
    ("golden", "pipelines.golden", "build_golden"),
    ("publish", "pipelines.golden.publish", "audit_warehouse"),      # file half-built
    ("publish", "pipelines.identify.registry", "_insert_publication"),  # registry mid-commit
    ("publish", "pipelines.golden.publish", "before:swap_in"),       # registered, not swapped
    ("publish", "pipelines.golden.publish", "before:prune_mirrors"),  # swapped, not pruned
    ("export", "pipelines.golden.export", "write_safe_csv"),         # temp files written
    ("report", "pipelines.orchestration.report", "write_run_report"),
]

# Runs the stages from `first` on, in a fresh process, as an Airflow task retry does (every task
# runs in its own process), with SIGKILL planted at the kill point (or none: "-").
KILL_SCRIPT = r"""
import importlib, os, signal, sys
from datetime import date
from pipelines.orchestration import stages
module_name, point, day, first = sys.argv[1:5]
sources = stages.configured_sources()  # before the kill point is planted (prepare calls it too)
if module_name != "-":
    module = importlib.import_module(module_name)
    name = point.removeprefix("before:")
    real = getattr(module, name)
    def die():
        os.killpg(os.getpgid(0), signal.SIGKILL)
    def killed(*args, **kwargs):
        if point.startswith("before:"):
            die()
        result = real(*args, **kwargs)
        die()
        return result
    setattr(module, name, killed)
order = ["prepare", "extract", "validate", "standardize", "resolve", "identify", "golden",
         "publish", "export", "report"]
run = {
    "prepare": lambda: stages.prepare(date.fromisoformat(day)),
    "extract": lambda: [stages.extract(day, s) for s in sources],
    "validate": lambda: [stages.validate(day, s) for s in sources],
    "standardize": lambda: stages.standardize(day, sources),
}
for stage in order[order.index(first):]:
    run.get(stage, lambda: getattr(stages, stage)(day))()
"""


def run_stages_from(home, first: str, module_name: str = "-", point: str = "-"
                    ) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, module_name, point, RUN_ID, first],
        env={**os.environ, "UCV_HOME": str(home)}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)


@pytest.mark.slow
def test_a_run_killed_inside_every_stage_then_retried_equals_a_clean_run(home, uninterrupted):
    """SIGKILL (whole process group) inside each stage in turn; each time the killed stage is
    retried in a fresh process and must get past what the kill left; the outputs of the night
    that finally completes equal a clean run's, table by table, row by row."""
    run = stages.run_paths(RUN_ID)
    killed_in = "prepare"
    for stage, module_name, point in KILL_POINTS:
        process = run_stages_from(home, killed_in, module_name, point)  # retry the killed stage
        killed_in = stage
        assert process.returncode == -signal.SIGKILL, (
            f"not killed at {module_name}.{point}: {process.stderr.decode()[-2000:]}")
        assert read_run_state(run)["status"] == "running", f"{point}: the run recorded its end"

    finished = run_stages_from(home, "report")
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]
    assert read_run_state(run)["status"] == "success"
    assert fingerprints() == uninterrupted
    warehouse = settings.warehouse_dir()
    assert not list(warehouse.glob(".building-*")), "a half-built warehouse was left behind"
    versions = [p.name for p in (warehouse / "parquet").iterdir() if not p.is_symlink()]
    assert (warehouse / "parquet" / "current").resolve().name in versions
