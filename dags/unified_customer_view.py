"""Unified customer view, nightly: landed source exports -> resolved customers -> published warehouse.

The run with logical date D (02:00 UTC) processes the exports landed for the day before,
`data/landing/<D-1>/`; that export date is the run id and names the run folder `data/runs/<D-1>/`.
Trigger with conf `{"export_date": "YYYY-MM-DD"}` to (re)process another landed date.
Tasks are thin calls into `pipelines.orchestration.stages`; XCom carries source names and counts
only. See `docs/operations.md` for the task graph, reruns, backfills and production set-up.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, PokeReturnValue, dag, get_current_context, task

from pipelines.orchestration.airflow_alerts import (
    MARKETING_EXPORT,
    PARQUET_MIRROR,
    WAREHOUSE,
    deadline_alerts,
    failure_notifiers,
)
from pipelines.orchestration.operations import load_operations
from pipelines.orchestration.schedule import SCHEDULE_CRON, START_DATE

OPERATIONS = load_operations()  # schemas/operations.yaml: landing wait, deadline, alerts, pools


def _run(context=None) -> tuple[str, str | None]:
    """The run id (export date, ISO) and logical date of the current DAG run."""
    from pipelines.orchestration.run import export_date_for_context

    context = context or get_current_context()
    export_date, logical_date = export_date_for_context(
        logical_date=context.get("logical_date"), run_after=context["dag_run"].run_after,
        requested=context["params"].get("export_date"))
    return export_date.isoformat(), logical_date


def _incremental() -> bool | None:
    """The run's `mode` param: True (incremental), False (full) or None (operations.yaml)."""
    from pipelines.orchestration.incremental import mode_flag

    return mode_flag(get_current_context()["params"].get("mode"))


def _report_failure(context) -> None:
    """A failed task leaves a run report saying which stage failed and why."""
    from pipelines.orchestration import stages

    stages.report_failure(_run(context)[0])


DEFAULT_ARGS = {
    "owner": "data-engineering",
    # `make run` sets UCV_TASK_RETRIES=0: a one-off local run should fail fast, not wait 5 minutes
    "retries": int(os.environ.get("UCV_TASK_RETRIES", "2")),
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": True,
    "execution_timeout": timedelta(hours=4),
    # the run report first, then every configured alert channel (schemas/operations.yaml)
    "on_failure_callback": [_report_failure, *failure_notifiers(OPERATIONS)],
}


@dag(
    dag_id="unified_customer_view",
    description="Nightly: landed exports -> validated, resolved customers -> published "
                "warehouse, Parquet mirror and marketing export",
    schedule=CronTriggerTimetable(SCHEDULE_CRON, timezone="UTC"),
    start_date=pendulum.datetime(START_DATE.year, START_DATE.month, START_DATE.day, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=12),
    # Only a scheduler evaluates deadlines; `airflow dags test` (make run, tests) turns them off
    # with UCV_DEADLINE_ALERTS=0, as Airflow 3.3.2's dag.test() fails a successful run that has
    # DeadlineAlerts (it looks their ids up in the DB with the alert objects themselves).
    deadline=deadline_alerts(OPERATIONS) if os.environ.get("UCV_DEADLINE_ALERTS") != "0" else None,
    default_args=DEFAULT_ARGS,
    params={"export_date": Param(None, type=["null", "string"],
                                 description="Landed export date to process (default: day "
                                             "before the logical date)"),
            "mode": Param("config", type="string", enum=["config", "incremental", "full"],
                          description="incremental: reuse the last successful night's unchanged "
                                      "records and pairs; full: re-resolve everything; config: "
                                      "`incremental` in schemas/operations.yaml")},
    tags=["ucv", "nightly", "customer-data"],
    doc_md=__doc__,
)
def unified_customer_view():
    @task.sensor(mode="reschedule", poke_interval=OPERATIONS.landing_poke,
                 timeout=OPERATIONS.landing_wait + timedelta(minutes=30), retries=0)
    def wait_for_exports() -> PokeReturnValue:
        """Wait (slot freed between checks) until every source has landed; fail at the deadline."""
        from datetime import date

        from airflow.sdk.exceptions import AirflowFailException

        from pipelines.clock import utc_now
        from pipelines.orchestration.landing import ExportsLate, exports_ready

        # waiting starts at the scheduled 02:00, or when this sensor first looked if that was
        # later (a manual trigger, a backfill, a busy scheduler): every run gets the whole wait
        context = get_current_context()
        dag_run = context["dag_run"]
        first_look = context["ti"].get_first_reschedule_date(context) or utc_now()
        start = max(t for t in (dag_run.logical_date, dag_run.run_after, first_look) if t)
        try:
            check = exports_ready(date.fromisoformat(_run()[0]), scheduled_start=start,
                                  wait=OPERATIONS.landing_wait, now=utc_now())
        except ExportsLate as exc:
            raise AirflowFailException(str(exc)) from exc
        return PokeReturnValue(is_done=check.complete, xcom_value=check.landed)

    @task
    def prepare() -> list[str]:
        """Start the run folder afresh; return the configured source names to map over."""
        from datetime import date

        from pipelines.orchestration import stages

        run_id, logical_date = _run()
        return stages.prepare(date.fromisoformat(run_id), logical_date=logical_date,
                              orchestrator="airflow",
                              airflow_run_id=get_current_context()["run_id"])

    @task(map_index_template="{{ task.op_kwargs['source'] }}")
    def extract(source: str) -> str:
        """One source's landed files -> raw Parquet with lineage columns."""
        from airflow.sdk.exceptions import AirflowFailException

        from pipelines.ingest import SourceRejected
        from pipelines.orchestration import stages

        try:
            return stages.extract(_run()[0], source)
        except SourceRejected as exc:  # unreadable export: a retry reads the same bytes
            raise AirflowFailException(str(exc)) from exc

    @task(map_index_template="{{ task.op_kwargs['source'] }}")
    def validate(source: str) -> str:
        """Great Expectations checks; a rejected source fails the run at once (no retries)."""
        from airflow.sdk.exceptions import AirflowFailException

        from pipelines.ingest import SourceRejected
        from pipelines.orchestration import stages

        try:
            return stages.validate(_run()[0], source)
        except SourceRejected as exc:
            raise AirflowFailException(str(exc)) from exc

    @task
    def standardize(sources: list[str]) -> dict:
        """Every accepted source -> the canonical staged records."""
        from pipelines.orchestration import stages

        return stages.standardize(_run()[0], list(sources), _incremental())

    @task(pool=OPERATIONS.pool_of("resolve"))
    def resolve() -> dict:
        """Splink scoring and clustering; persons and organizations separately."""
        from pipelines.orchestration import stages

        return stages.resolve(_run()[0], _incremental())

    @task
    def identify() -> dict:
        """Stable customer IDs carried forward from the ID registry (never reissued)."""
        from pipelines.orchestration import stages

        return stages.identify(_run()[0])

    @task(pool=OPERATIONS.pool_of("golden"))
    def golden() -> dict:
        """Golden records, customer-policy links and 360° profiles."""
        from pipelines.orchestration import stages

        return stages.golden(_run()[0], _incremental())

    @task(pool=OPERATIONS.pool_of("publish"), outlets=[WAREHOUSE, PARQUET_MIRROR])
    def publish() -> dict:
        """Register the IDs, swap the new warehouse in atomically (not for an older date); tell the
        Assets which run it holds."""
        from pipelines.orchestration import stages

        counts = stages.publish(_run()[0])
        events = get_current_context()["outlet_events"]
        for asset in (WAREHOUSE, PARQUET_MIRROR):
            events[asset].extra = stages.published_asset_extra(_run()[0], asset.name, counts)
        return counts

    @task(outlets=[MARKETING_EXPORT])
    def export() -> dict:
        """The marketing export for the export date; the Asset event names file and rows."""
        from pipelines.orchestration import stages

        counts = stages.export(_run()[0])
        get_current_context()["outlet_events"][MARKETING_EXPORT].extra = (
            stages.published_asset_extra(_run()[0], MARKETING_EXPORT.name, counts))
        return counts

    @task
    def report() -> str:
        """report/run_report.html (and .md): figures, pictures, trend; marks the run a success."""
        from pipelines.orchestration import stages

        return stages.report(_run()[0])

    sources = prepare()
    wait_for_exports() >> sources
    validated = validate.expand(source=extract.expand(source=sources))
    standardize(validated) >> resolve() >> identify() >> golden() >> publish() >> export() >> report()


unified_customer_view()
