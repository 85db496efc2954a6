"""When the nightly DAG runs, in one place: the DAG file and `make run` both read these.

The run with logical date D (D at 02:00 UTC) processes the exports landed for D-1, and Airflow
runs no task for a logical date before START_DATE, so `make run` refuses such a date up front.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

RUN_HOUR_UTC = 2
SCHEDULE_CRON = f"0 {RUN_HOUR_UTC} * * *"
START_DATE = date(2026, 1, 1)


def logical_datetime_for(export_date: date) -> datetime:
    """The scheduled logical date (UTC) of the run that processes `export_date`."""
    return datetime.combine(export_date + timedelta(days=1), time(RUN_HOUR_UTC), tzinfo=UTC)


def first_export_date() -> date:
    """The earliest export date the DAG runs: the one its start date's run processes."""
    return START_DATE - timedelta(days=1)
