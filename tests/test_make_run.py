"""`make run` never hands Airflow a date it cannot run and never reports a run it did not do;
the summary ends with what to open next, every path whole."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

import pytest
from rich.console import Console

from pipelines import make_run
from pipelines.orchestration import schedule
from pipelines.orchestration.run_state import finish_run_state, record_stage, start_run_state
from pipelines.orchestration.summary import print_run_summary
from pipelines.settings import RunPaths


@pytest.fixture
def ucv_home(tmp_path, monkeypatch):
    monkeypatch.setenv("UCV_HOME", str(tmp_path))
    return tmp_path


def land(home, day: date) -> None:
    folder = home / "landing" / day.isoformat()
    folder.mkdir(parents=True)
    (folder / "sales_leads.csv").write_text("lead_id\nL1\n")


class FakeProcess:
    """`airflow dags test` that exits at once, as it does for a date it runs no task for."""

    returncode = 0

    def poll(self):
        return 0


def no_airflow(monkeypatch, process=None):
    launched = []
    monkeypatch.setattr(make_run, "migrate_db", lambda env, log: None)
    monkeypatch.setattr(make_run, "ensure_pools", lambda env, log: None)
    monkeypatch.setattr(make_run, "dags_test",
                        lambda logical, env, log: launched.append(logical) or process)
    monkeypatch.setattr(make_run, "LOCAL_AIRFLOW_HOME", make_run.settings.data_root() / ".af")
    return launched


def test_the_logical_date_is_the_scheduled_02_00_after_the_export_date():
    assert schedule.logical_datetime_for(date(2026, 11, 22)) == datetime(2026, 11, 23, 2, 0,
                                                                         tzinfo=UTC)
    assert schedule.SCHEDULE_CRON == "0 2 * * *"
    assert schedule.first_export_date() == date(2025, 12, 31)


def test_a_date_before_the_dags_start_is_refused_before_airflow_starts(ucv_home, monkeypatch,
                                                                      capsys):
    land(ucv_home, date(2025, 6, 30))
    launched = no_airflow(monkeypatch)
    assert make_run.main(["--date", "2025-06-30"]) == 2
    out = capsys.readouterr().out
    assert launched == []
    assert "before the DAG's first night" in out and "start date 2026-01-01" in out
    assert "ucv run --date 2025-06-30" in out
    assert "success" not in out


def test_a_date_with_nothing_landed_is_refused(ucv_home, monkeypatch, capsys):
    land(ucv_home, date(2026, 11, 21))
    launched = no_airflow(monkeypatch)
    assert make_run.main(["--date", "2026-11-22"]) == 2
    assert launched == []
    assert "nothing is landed for export date 2026-11-22" in capsys.readouterr().out


def test_a_malformed_date_is_a_usage_error(ucv_home, capsys):
    with pytest.raises(SystemExit) as exit_:
        make_run.main(["--date", "2026-02-30"])
    assert exit_.value.code == 2
    assert "not a calendar date" in capsys.readouterr().err


def test_a_run_airflow_did_not_do_is_not_reported(ucv_home, monkeypatch, capsys):
    land(ucv_home, date(2026, 11, 22))
    # an earlier night's state for the same date must not be shown as this run's
    old = RunPaths.for_run("2026-11-22").ensure()
    monkeypatch.setenv("UCV_NOW", "2026-11-23T03:00:00+00:00")
    start_run_state(old, logical_date="x", export_date="2026-11-22", landing_dir=ucv_home,
                    orchestrator="airflow")
    finish_run_state(old, "success")
    monkeypatch.setenv("UCV_NOW", "2026-12-01T09:00:00+00:00")
    launched = no_airflow(monkeypatch, FakeProcess())
    assert make_run.main(["--date", "2026-11-22"]) == 1
    out = capsys.readouterr().out
    assert launched == ["2026-11-23T02:00:00+00:00"]
    assert "Airflow ran no task of this night" in out
    assert "run 2026-11-22: success" not in out


def test_airflow_runs_with_make_runs_airflow_home_and_logs_there(ucv_home, monkeypatch):
    land(ucv_home, date(2026, 11, 22))
    no_airflow(monkeypatch)
    launched = []
    monkeypatch.setattr(make_run, "dags_test",
                        lambda logical, env, log: launched.append((env, log)) or FakeProcess())
    make_run.main(["--date", "2026-11-22"])
    [(env, log)] = launched
    # one Airflow home for the metadata DB and the log (tests point it at a temporary folder)
    assert env["AIRFLOW_HOME"] == str(make_run.LOCAL_AIRFLOW_HOME)
    assert log.is_relative_to(make_run.LOCAL_AIRFLOW_HOME)


def summary_text(run: RunPaths) -> str:
    out = io.StringIO()
    print_run_summary(run, Console(file=out, width=80, soft_wrap=True))  # not a terminal
    return out.getvalue()


def test_a_failed_run_says_nothing_was_published(ucv_home):
    run = RunPaths.for_run("2026-11-22").ensure()
    start_run_state(run, logical_date=None, export_date="2026-11-22", landing_dir=ucv_home,
                    orchestrator="ucv")
    with pytest.raises(RuntimeError), record_stage(run, "validate.sales"):
        raise RuntimeError("column 'email' drifted")
    text = summary_text(run)
    assert "failed" in text and "drifted" in text
    assert "nothing was published by this run" in text
    assert "published warehouse" not in text and "open next" not in text


def test_a_successful_run_ends_with_what_to_open_next_paths_whole(tmp_path, monkeypatch):
    home = tmp_path / ("a-long-data-root-" * 5)  # paths longer than the 80 columns
    monkeypatch.setenv("UCV_HOME", str(home))
    run = RunPaths.for_run("2026-11-22").ensure()
    start_run_state(run, logical_date=None, export_date="2026-11-22", landing_dir=home,
                    orchestrator="ucv")
    export = home / "export" / "2026-11-22"
    export.mkdir(parents=True)
    (export / "marketing_customers_2026-11-22.csv").write_text("customer_id\n")
    (export / "manifest.json").write_text("{}")
    with record_stage(run, "export") as counts:
        counts.update(path=str(export / "marketing_customers_2026-11-22.parquet"), rows=12)
    finish_run_state(run, "success")
    text = summary_text(run)
    assert "open next" in text
    for path in (run.report_dir / "run_report.html", export / "manifest.json",
                 export / "marketing_customers_2026-11-22.csv", home / "warehouse" / "ucv.duckdb"):
        assert str(path) in text, path  # on one line, not broken at column 80
    assert "SELECT party_type, count(*)" in text
