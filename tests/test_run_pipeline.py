"""`ucv run` end to end on a few hundred generated customers: a full run, a rerun, a rejected source.

Checks compare output fingerprints (row multisets of every Parquet output, warehouse table and
export), so a duplicated or changed row anywhere fails them.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from orchestration_support import (
    EXPORT_DATE,
    drift_csv_header,
    end_to_end_skip_reason,
    fingerprints,
    generate_sample,
    land,
)

from pipelines import settings
from pipelines.orchestration import stages
from pipelines.orchestration.run import run_pipeline
from pipelines.orchestration.run_state import read_run_state


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """One run of a small sample in its own data root: (home, landing, state, fingerprints)."""
    if reason := end_to_end_skip_reason():
        pytest.skip(reason)
    landing = generate_sample(tmp_path_factory.mktemp("sample"))
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UCV_HOME", str(home))
        land(home, landing)
        run = run_pipeline(EXPORT_DATE)
        return home, landing, read_run_state(run), fingerprints()


@pytest.fixture
def home(first_run, monkeypatch):
    monkeypatch.setenv("UCV_HOME", str(first_run[0]))
    return first_run[0]


def test_a_run_publishes_customers_and_records_every_stage(first_run, home):
    _, _, state, _ = first_run
    assert state["status"] == "success", state["error"]
    assert state["run_id"] == "2026-11-22" and state["logical_date"] == "2026-11-23"
    sources = stages.configured_sources()
    expected = {"prepare", "standardize", "resolve", "identify", "golden", "publish", "export",
                "report", *(f"{s}.{src}" for s in ("extract", "validate") for src in sources)}
    assert set(state["stages"]) == expected
    assert all(s["status"] == "success" and s["peak_rss_mib"] > 0 and s["seconds"] >= 0
               for s in state["stages"].values())

    published = state["stages"]["publish"]["counts"]
    assert 0 < published["customers"] < published["source_records"]
    assert published["source_records"] == state["stages"]["standardize"]["counts"][
        "source_records"]
    read = sum(state["stages"][f"extract.{s}"]["counts"]["rows_read"] for s in sources)
    assert read == published["source_records"] + published["quarantine"]

    run = stages.run_paths(EXPORT_DATE.isoformat())
    report = (run.report_dir / "run_report.md").read_text()
    assert "| status | success |" in report and "rows_accepted" in report
    assert state["stages"]["export"]["counts"]["rows"] > 0


def test_rerunning_a_date_gives_identical_outputs(first_run, home):
    run_pipeline(EXPORT_DATE)
    assert fingerprints() == first_run[3]
    assert read_run_state(stages.run_paths(EXPORT_DATE.isoformat()))["status"] == "success"


def test_a_rejected_source_fails_the_run_and_keeps_the_published_warehouse(first_run, home):
    from pipelines.ingest import SourceRejected

    published = settings.warehouse_file()
    before = (published.stat().st_ino, published.read_bytes())
    next_day = EXPORT_DATE + timedelta(days=1)
    drift_csv_header(land(home, first_run[1], next_day))

    with pytest.raises(SourceRejected, match="sales"):
        run_pipeline(next_day)

    state = read_run_state(stages.run_paths(next_day.isoformat()))
    assert state["status"] == "failed" and "sales" in state["error"]
    assert state["stages"]["validate.sales"]["status"] == "failed"
    assert not {"standardize", "publish", "export"} & set(state["stages"])
    assert (published.stat().st_ino, published.read_bytes()) == before
    assert "| status | failed |" in (stages.run_paths(next_day.isoformat()).report_dir
                                     / "run_report.md").read_text()
