"""Orchestration: one nightly run as a sequence of stages, its run state and its run report.

`run_pipeline(export_date)` runs every stage without a scheduler (`ucv run`); the Airflow DAG in
dags/unified_customer_view.py wires the same functions from `stages`, one task per stage.
"""

from pipelines.orchestration.report import write_run_report
from pipelines.orchestration.run import (
    export_date_for,
    export_date_for_context,
    logical_date_for,
    run_pipeline,
)
from pipelines.orchestration.run_state import read_run_state, record_stage, run_state_path

__all__ = [
    "export_date_for",
    "export_date_for_context",
    "logical_date_for",
    "read_run_state",
    "record_stage",
    "run_pipeline",
    "run_state_path",
    "write_run_report",
]
