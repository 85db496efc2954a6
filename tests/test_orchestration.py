"""Run state, run folder lifecycle, run report and the stage order of `ucv run`, without Airflow.

The stage packages are replaced by small fakes here; tests/test_run_pipeline.py runs the real ones.
"""

from __future__ import annotations

import json
import multiprocessing
from datetime import date, datetime

import pytest

from pipelines import settings
from pipelines.orchestration import report as report_module
from pipelines.orchestration import run as run_module
from pipelines.orchestration import stages
from pipelines.orchestration.graph import documented_edges
from pipelines.orchestration.run_state import (
    finish_run_state,
    read_run_state,
    record_stage,
    start_run_state,
)
from pipelines.settings import RunPaths

EXPORT_DATE = date(2026, 11, 22)
AIRFLOW_ONLY_TASKS = {"wait_for_exports"}


@pytest.fixture
def ucv_home(tmp_path, monkeypatch):
    monkeypatch.setenv("UCV_HOME", str(tmp_path))
    return tmp_path


def land(home, export_date=EXPORT_DATE, files=("sales_leads.csv",)):
    folder = home / "landing" / export_date.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        (folder / name).write_text("lead_id\nL1\n")
    return folder


def started_run(home) -> RunPaths:
    run = RunPaths.for_run(EXPORT_DATE.isoformat()).ensure()
    start_run_state(run, logical_date="2026-11-23", export_date=EXPORT_DATE.isoformat(),
                    landing_dir=home / "landing", orchestrator="test")
    return run


# --- dates -----------------------------------------------------------------------------------

def test_a_run_processes_the_exports_of_the_day_before_its_logical_date():
    assert run_module.export_date_for(date(2026, 11, 23)) == EXPORT_DATE
    assert run_module.export_date_for(datetime(2026, 11, 23, 2, 0)) == EXPORT_DATE
    assert run_module.logical_date_for(EXPORT_DATE) == date(2026, 11, 23)


def test_airflow_context_gives_export_date_with_fallbacks_and_override():
    at_two = datetime(2026, 11, 23, 2, 0)
    assert run_module.export_date_for_context(logical_date=at_two, run_after=at_two) == (
        EXPORT_DATE, "2026-11-23T02:00:00")
    # Airflow 3 manual runs may carry no logical date: the run-after date decides
    assert run_module.export_date_for_context(logical_date=None, run_after=at_two) == (
        EXPORT_DATE, None)
    assert run_module.export_date_for_context(logical_date=at_two, run_after=at_two,
                                              requested="2026-01-05")[0] == date(2026, 1, 5)


# --- run_state.json --------------------------------------------------------------------------

def test_record_stage_writes_timings_memory_and_counts(ucv_home):
    run = started_run(ucv_home)
    with record_stage(run, "resolve") as counts:
        ballast = bytearray(50 * 2**20)  # 50 MiB the sampler should see
        counts["match_pairs"] = 12
        del ballast
    stage = read_run_state(run)["stages"]["resolve"]
    assert stage["status"] == "success"
    assert stage["counts"] == {"match_pairs": 12}
    assert stage["seconds"] >= 0 and stage["finished_at"] >= stage["started_at"]
    assert stage["peak_rss_mib"] > 50


def test_a_failing_stage_fails_the_run_and_a_successful_retry_revives_it(ucv_home):
    run = started_run(ucv_home)
    with pytest.raises(ValueError, match="boom"), record_stage(run, "golden"):
        raise ValueError("boom")
    state = read_run_state(run)
    assert state["status"] == "failed"
    assert state["stages"]["golden"]["status"] == "failed"
    assert "golden: ValueError: boom" == state["error"]
    with record_stage(run, "customers_360"):  # another task going on: the run stays failed
        pass
    assert read_run_state(run)["status"] == "failed"
    with record_stage(run, "golden"):
        pass
    state = read_run_state(run)
    assert state["status"] == "running" and state["error"] is None
    assert state["stages"]["golden"]["status"] == "success"
    finish_run_state(run, "success")
    assert read_run_state(run)["status"] == "success"


def _record_many(root: str, worker: int) -> None:
    run = RunPaths(run_id="2026-11-22", root=__import__("pathlib").Path(root))
    for i in range(15):
        with record_stage(run, f"extract.w{worker}_{i}") as counts:
            counts["rows"] = i


def test_parallel_tasks_updating_run_state_lose_no_stage(ucv_home):
    """Mapped Airflow tasks run in parallel processes: every update must survive."""
    run = started_run(ucv_home)
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_record_many, args=(str(run.root), w)) for w in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    stages_done = read_run_state(run)["stages"]
    assert len(stages_done) == 45
    assert all(s["status"] == "success" for s in stages_done.values())
    assert not list(run.root.glob(".run_state.json.*.tmp"))


# --- the run folder: fresh start, baseline, landing ------------------------------------------

def test_prepare_refuses_an_empty_landing_folder(ucv_home, monkeypatch):
    monkeypatch.setattr(stages, "configured_sources", lambda: ["sales"])
    (ucv_home / "landing" / EXPORT_DATE.isoformat()).mkdir(parents=True)
    with pytest.raises(stages.NothingLanded, match="no exports landed"):
        stages.prepare(EXPORT_DATE)
    state = read_run_state(stages.run_paths(EXPORT_DATE.isoformat()))
    assert state["status"] == "failed" and state["error"].startswith("prepare: NothingLanded")


def test_prepare_clears_the_run_folder_and_keeps_no_warehouse_copy(ucv_home, monkeypatch):
    """IDs come from the ID registry, so a run folder holds no snapshot of the warehouse (a copy of
    personal data that erasure would have to chase); a legacy `baseline/` folder is removed."""
    monkeypatch.setattr(stages, "configured_sources", lambda: ["claims", "sales"])
    land(ucv_home)
    settings.warehouse_dir().mkdir(parents=True)
    settings.warehouse_file().write_bytes(b"published before the run")
    run = stages.run_paths(EXPORT_DATE.isoformat())
    (run.root / "baseline").mkdir(parents=True)
    (run.root / "baseline" / "ucv.duckdb").write_bytes(b"old snapshot")

    assert stages.prepare(EXPORT_DATE, logical_date="2026-11-23") == ["claims", "sales"]
    assert not (run.root / "baseline").exists()
    (run.staged_dir / "source_records.parquet").write_bytes(b"left by the first attempt")
    state = read_run_state(run)
    assert state["run_id"] == "2026-11-22" and state["logical_date"] == "2026-11-23"
    assert state["status"] == "running" and state["stages"]["prepare"]["counts"] == {
        "landed_files": 1, "sources": 2}

    stages.prepare(EXPORT_DATE)
    assert not (run.staged_dir / "source_records.parquet").exists()
    assert list(read_run_state(run)["stages"]) == ["prepare"]
    assert settings.warehouse_file().read_bytes() == b"published before the run"


# --- the stage order and failure semantics of `ucv run` -----------------------------------------

@pytest.fixture
def fake_stages(ucv_home, monkeypatch):
    """Stage functions that only record their calls; prepare stays real. The stages run in this
    process (UCV_STAGE_PROCESSES=0): a forked stage's record of its call would stay in the child."""
    calls: list[tuple] = []
    monkeypatch.setenv("UCV_STAGE_PROCESSES", "0")
    monkeypatch.setattr(stages, "configured_sources", lambda: ["claims", "sales"])

    def fake(name):
        def stage(*args):
            calls.append((name, *args[1:]))
            return args[-1] if name in ("extract", "validate") else {}
        return stage

    for name in ("extract", "validate", "standardize", "resolve", "identify", "golden",
                 "publish", "export", "report"):
        monkeypatch.setattr(stages, name, fake(name))
    land(ucv_home)
    return calls


def test_ucv_run_calls_the_stages_in_an_order_the_dag_allows(fake_stages):
    run_module.run_pipeline(EXPORT_DATE)
    order = ["prepare"] + [call[0] for call in fake_stages]
    assert ("extract", "sales") in fake_stages and ("validate", "claims") in fake_stages
    assert ("standardize", ["claims", "sales"]) in fake_stages
    first, last = {}, {}
    for i, name in enumerate(order):
        first.setdefault(name, i)
        last[name] = i
    # waiting for late exports is the scheduler's job; `ucv run` checks the landing up front
    edges = {(u, d) for u, d in documented_edges() if u not in AIRFLOW_ONLY_TASKS}
    for upstream, downstream in edges:
        assert last[upstream] < first[downstream], (upstream, downstream)
    assert set(order) == {t for edge in edges for t in edge}


def test_a_rejected_source_stops_the_run_before_publish(fake_stages, monkeypatch):
    def reject(run_id, source):
        with record_stage(stages.run_paths(run_id), f"validate.{source}"):
            raise RuntimeError(f"{source}: column 'email' drifted")

    monkeypatch.setattr(stages, "validate", reject)
    with pytest.raises(RuntimeError, match="drifted"):
        run_module.run_pipeline(EXPORT_DATE)
    called = {call[0] for call in fake_stages}
    assert called == {"extract"}
    state = read_run_state(stages.run_paths(EXPORT_DATE.isoformat()))
    assert state["status"] == "failed" and "drifted" in state["error"]


# --- the run report --------------------------------------------------------------------------

def test_run_report_shows_stages_quality_figures_and_chart_links(ucv_home):
    run = started_run(ucv_home)
    with record_stage(run, "extract.sales") as counts:
        counts["sales"] = 1234
    (run.report_dir / "ingest_counts.json").write_text(json.dumps({
        "run_id": run.run_id,
        "sources": {"sales": {"rows_read": 1234, "rows_accepted": 1200,
                              "rows_quarantined": 34}}}))
    (run.resolved_dir / "resolve_summary.json").write_text(json.dumps({"clusters": 987}))
    (run.report_dir / "charts").mkdir()
    (run.report_dir / "charts" / "match_weights.html").write_text("<html></html>")
    finish_run_state(run, "success")

    text = report_module.write_run_report(run).read_text()
    assert "# Run report — 2026-11-22" in text
    assert "| status | success |" in text
    assert "| extract.sales | success |" in text and "sales=1,234" in text
    assert "| sales | 1,234 | 1,200 | 34 |" in text
    assert "Rows read 1,234 = accepted 1,200 + quarantined 34 + erased 0 (2.76% quarantined)." in text
    assert "| clusters | 987 |" in text
    assert "[match_weights](charts/match_weights.html)" in text


def test_run_report_says_when_a_summary_is_missing(ucv_home):
    text = report_module.render_run_report(started_run(ucv_home))
    assert "(not written by this run)" in text and "(none)" in text


# --- make run: which date, and landing the sample -------------------------------------------

def test_make_run_processes_the_latest_landed_date_else_yesterday(ucv_home):
    from pipelines import make_run

    today = date(2026, 11, 23)
    assert make_run.choose_export_date(None, today) == date(2026, 11, 22)
    land(ucv_home, date(2026, 11, 20))
    land(ucv_home, date(2026, 11, 21))
    (ucv_home / "landing" / "2026-11-22").mkdir()  # an empty folder is not landed
    (ucv_home / "landing" / "notes").mkdir()
    assert make_run.landed_export_dates() == [date(2026, 11, 20), date(2026, 11, 21)]
    assert make_run.choose_export_date(None, today) == date(2026, 11, 21)
    assert make_run.choose_export_date("2026-11-20", today) == date(2026, 11, 20)


def test_make_run_lands_the_existing_sample_without_regenerating_it(ucv_home, monkeypatch):
    from rich.console import Console

    from pipelines import make_run

    sample = ucv_home / "sample" / "landing"
    sample.mkdir(parents=True)
    (sample / "claims.csv").write_text("claim_no\nC1\n")
    monkeypatch.setitem(__import__("sys").modules, "pipelines.generate", None)  # must not import
    landing = make_run.land_sample_exports(EXPORT_DATE, Console(quiet=True))
    assert landing == ucv_home / "landing" / "2026-11-22"
    assert (landing / "claims.csv").read_text() == "claim_no\nC1\n"
    assert not list(landing.parent.glob(".*.tmp"))


# --- the local Airflow: project-local home, our DAG only, 127.0.0.1 only ------------------------

def test_local_airflow_stays_on_localhost_with_its_own_home(tmp_path):
    from pipelines.orchestration import airflow_local

    env = airflow_local.airflow_env(tmp_path / "home", port=8123, parallelism=3)
    assert env["AIRFLOW_HOME"] == str(tmp_path / "home") and (tmp_path / "home").is_dir()
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(settings.PROJECT_ROOT / "dags")
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "3"
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8123/execution/"
    assert airflow_local.LOCAL_AIRFLOW_HOME == settings.PROJECT_ROOT / ".airflow"


def test_the_dag_accounts_records_nested_in_rows_beside_the_rows(tmp_path, monkeypatch):
    """The DAG's standardize task checks a row's own records against the accepted rows, and
    counts the records nested in them (`records:`, the broker export) beside them."""
    import dataclasses
    import json

    from canary import broker_notifications

    import pipelines.ingest
    from pipelines.ingest import ingest
    from pipelines.ingest.mapping import load_mapping
    from pipelines.orchestration.run_state import record_stage
    from pipelines.settings import EXPECTATIONS_DIR, SOURCES_DIR

    monkeypatch.setenv("UCV_HOME", str(tmp_path / "home"))
    broker = load_mapping(SOURCES_DIR / "optional" / "broker.yaml", EXPECTATIONS_DIR)
    mappings = {"broker": dataclasses.replace(broker)}
    monkeypatch.setattr(pipelines.ingest, "load_mappings", lambda *args: mappings)
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "broker_claims_2026-11-22.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in broker_notifications()),
        encoding="utf-8")
    run = stages.run_paths(EXPORT_DATE.isoformat())
    summary = ingest(landing, run, mappings).sources["broker"]
    assert summary.records_staged > summary.rows_staged  # nested records were staged
    with record_stage(run, "validate.broker") as counts:  # as the mapped validate task records
        counts.update(rows_read=summary.rows_read, rows_accepted=summary.rows_accepted,
                      rows_quarantined=summary.rows_quarantined, failed_checks=[])
    report = json.loads(stages.write_ingest_counts(run, ["broker"]).read_text(encoding="utf-8"))
    entry = report["sources"]["broker"]
    assert entry["rows_staged"] == summary.rows_accepted
    assert entry["records_staged"] == summary.records_staged
