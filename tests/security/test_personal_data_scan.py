"""Charts, reports, logs, XCom and the Airflow DB carry no personal data (issue 15, finding 1).

A DAG run on a sample whose Latin names and e-mails carry a canary; then every file the run
wrote outside the personal-data stores (landing, run data folders, warehouse, export) is searched
for the canary and for every e-mail, phone and ID of the run's records — inside HTML, JSON,
Parquet and SQLite too.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from security_support import (
    CANARY,
    distinctive_values,
    files_under,
    is_personal_data_store,
    pii_hits,
)

pytestmark = pytest.mark.slow


def test_the_canary_reached_the_data(canary_run):
    failed = [ti for ti in canary_run.result["tis"] if ti["state"] != "success"]
    assert canary_run.result["state"] == "success" and not failed, failed
    assert canary_run.planted_cells > 500
    staged = pq.read_table(canary_run.run.staged_dir / "source_records.parquet").to_pylist()
    carrying = [r for r in staged if CANARY.lower() in str(r.get("email")).lower()]
    assert len(carrying) > 300, "canaries must survive standardization, else the scan proves nothing"
    # the charts the issue found personal data in exist and were scanned
    charts = {p.name for p in (canary_run.run.report_dir / "charts").glob("*.html")}
    assert {"person_waterfall.html", "organization_waterfall.html"} <= charts


def test_no_personal_data_outside_the_personal_data_stores(canary_run):
    home = canary_run.home
    scanned = [p for p in files_under(home) if not is_personal_data_store(p, home)]
    assert any(p.name == "run_report.md" for p in scanned)
    values = distinctive_values(canary_run.run.staged_dir / "source_records.parquet")
    assert len(values) > 500
    assert pii_hits(scanned, [CANARY, *values]) == {}


def test_no_personal_data_in_airflow_logs_xcom_or_metadata_db(canary_run):
    files = list(files_under(canary_run.airflow_home))
    assert any(p.name.endswith(".db") for p in files) and any(p.suffix == ".log" for p in files)
    values = distinctive_values(canary_run.run.staged_dir / "source_records.parquet")
    assert pii_hits(files, [CANARY, *values]) == {}
