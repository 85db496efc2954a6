"""Example downstream DAG: runs when a night has published both the warehouse and the marketing
export (Airflow Assets `ucv_warehouse` and `ucv_marketing_export`), checks the export against its
manifest and records what would be handed to the marketing system. Copy it for your own consumers:
the Asset event's `extra` names the run, the file and its row count.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, get_current_context, task

from pipelines.orchestration.airflow_alerts import MARKETING_EXPORT, WAREHOUSE


@dag(
    dag_id="ucv_marketing_handoff",
    description="After each published night: check the marketing export against its manifest",
    schedule=WAREHOUSE & MARKETING_EXPORT,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"owner": "data-engineering", "retries": 1, "retry_delay": timedelta(minutes=5),
                  "execution_timeout": timedelta(minutes=10)},
    tags=["ucv", "downstream"],
    doc_md=__doc__,
)
def ucv_marketing_handoff():
    @task
    def check_export() -> dict:
        """The newest marketing export event -> files present and rows as in the manifest."""
        from pipelines.orchestration.handoff import check_marketing_export

        events = get_current_context()["triggering_asset_events"][MARKETING_EXPORT]
        return check_marketing_export(dict(events[-1].extra))

    check_export()


ucv_marketing_handoff()
