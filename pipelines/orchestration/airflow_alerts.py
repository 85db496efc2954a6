"""Airflow glue for watching the nightly run: its Assets and the alert notifiers.

Imported by the DAG files (Airflow is loaded there anyway); nothing heavy. Both notifiers use
Airflow's notifier interface (`BaseNotifier`), so the same objects serve task failure callbacks
and DeadlineAlerts (the triggerer awaits `async_notify`). A channel whose Airflow connection is
not defined is off: it logs one line instead of failing the callback. Messages carry run and task
ids, the error type and its first line, never personal data.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request
from typing import Any

from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.sdk import Asset, BaseNotifier

log = logging.getLogger("ucv.alerts")

# What a night publishes. Downstream DAGs schedule on these; each event's `extra` says which run
# produced it, where the files are and how many rows they hold.
WAREHOUSE = Asset(name="ucv_warehouse", uri="x-ucv://warehouse/ucv.duckdb", group="ucv")
PARQUET_MIRROR = Asset(name="ucv_parquet_mirror", uri="x-ucv://warehouse/parquet", group="ucv")
MARKETING_EXPORT = Asset(name="ucv_marketing_export", uri="x-ucv://export/marketing",
                         group="ucv")

MAX_ERROR_CHARS = 300


def alert_message(context: dict[str, Any]) -> dict[str, Any]:
    """The facts of an alert from an Airflow context (task failure or missed deadline)."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    deadline = context.get("deadline")
    exception = context.get("exception")
    first_line = str(exception).strip().splitlines()[0] if exception else ""
    facts = {
        "kind": "deadline_missed" if deadline else "task_failed",
        "dag_id": _get(dag_run, "dag_id") or _get(ti, "dag_id"),
        "run_id": _get(dag_run, "run_id") or _get(ti, "run_id"),
        "logical_date": str(_get(dag_run, "logical_date") or ""),
        "task_id": _get(ti, "task_id"),
        "map_index": _get(ti, "map_index"),
        "try_number": _get(ti, "try_number"),
        "error": (f"{type(exception).__name__}: {first_line}"[:MAX_ERROR_CHARS]
                  if exception else None),
        "deadline": str(_get(deadline, "deadline_time") or "") or None,
    }
    what = (f"missed its deadline {facts['deadline']}" if deadline
            else f"task {facts['task_id']} failed")
    facts["text"] = f"UCV nightly {facts['run_id']}: {what}" + (
        f" — {facts['error']}" if facts["error"] else "")
    return facts


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _connection(conn_id: str | None):
    """The Airflow connection, or None when it is not defined (the channel is off)."""
    if not conn_id:
        return None
    from airflow.sdk import Connection

    try:
        return Connection.get(conn_id)
    except Exception:  # AirflowNotFoundException and friends: not configured here
        log.info("alert channel off: no Airflow connection %r", conn_id)
        return None


class WebhookNotifier(BaseNotifier):
    """POST the alert as JSON to the URL of an http connection (Slack/Teams/any receiver)."""

    template_fields = ("conn_id",)

    def __init__(self, conn_id: str = "ucv_webhook", timeout_seconds: float = 10, **kwargs):
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.timeout_seconds = timeout_seconds

    @staticmethod
    def url_of(conn) -> str:
        host = str(conn.host or "")
        if "://" in host:
            return host
        endpoint = (conn.extra_dejson or {}).get("endpoint", "")
        port = f":{conn.port}" if conn.port else ""
        return f"{conn.schema or 'https'}://{host}{port}/{endpoint.lstrip('/')}"

    def notify(self, context) -> None:
        conn = _connection(self.conn_id)
        if conn is None:
            return
        request = urllib.request.Request(
            self.url_of(conn), data=json.dumps(alert_message(context)).encode("utf-8"),
            headers={"Content-Type": "application/json",
                     **({"Authorization": f"Bearer {conn.password}"} if conn.password else {})},
            method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
            log.info("alert sent to webhook %s: HTTP %s", self.conn_id, response.status)

    async def async_notify(self, context) -> None:
        await asyncio.to_thread(self.notify, context)


class EmailNotifier(SmtpNotifier):
    """The provider's SMTP notifier with our message; off when its smtp connection is missing."""

    def __init__(self, to: list[str] | tuple[str, ...], from_email: str | None = None,
                 smtp_conn_id: str = "ucv_smtp", **kwargs):
        super().__init__(to=list(to), from_email=from_email, smtp_conn_id=smtp_conn_id,
                         subject="", html_content="", **kwargs)

    def notify(self, context) -> None:
        if _connection(self.smtp_conn_id) is None or not self.to:
            return
        facts = alert_message(context)
        self.subject = facts["text"][:150]
        rows = "".join(f"<tr><th>{k}</th><td>{_escape(v)}</td></tr>"
                       for k, v in facts.items() if k != "text" and v not in (None, ""))
        self.html_content = f"<p>{_escape(facts['text'])}</p><table>{rows}</table>"
        super().notify(context)
        log.info("alert mailed through %s to %d recipient(s)", self.smtp_conn_id,
                 len(list(self.to)))

    async def async_notify(self, context) -> None:
        await asyncio.to_thread(self.notify, context)


def _escape(value: Any) -> str:
    import html

    return html.escape(str(value))


def failure_notifiers(operations) -> list[BaseNotifier]:
    """The configured channels, for `on_failure_callback`."""
    notifiers: list[BaseNotifier] = []
    if operations.smtp_conn_id and operations.smtp_to:
        notifiers.append(EmailNotifier(operations.smtp_to, operations.smtp_from,
                                       operations.smtp_conn_id))
    if operations.webhook_conn_id:
        notifiers.append(WebhookNotifier(operations.webhook_conn_id))
    return notifiers


def deadline_alerts(operations) -> list:
    """DeadlineAlerts: a run not finished `run_deadline` after its scheduled start, per channel."""
    from airflow.sdk.definitions.deadline import AsyncCallback, DeadlineAlert, DeadlineReference

    alerts = []
    if operations.webhook_conn_id:
        alerts.append(DeadlineAlert(
            reference=DeadlineReference.DAGRUN_LOGICAL_DATE, interval=operations.run_deadline,
            callback=AsyncCallback(WebhookNotifier, kwargs={"conn_id": operations.webhook_conn_id}),
            name="ucv_run_late_webhook"))
    if operations.smtp_conn_id and operations.smtp_to:
        alerts.append(DeadlineAlert(
            reference=DeadlineReference.DAGRUN_LOGICAL_DATE, interval=operations.run_deadline,
            callback=AsyncCallback(EmailNotifier, kwargs={
                "to": list(operations.smtp_to), "from_email": operations.smtp_from,
                "smtp_conn_id": operations.smtp_conn_id}),
            name="ucv_run_late_email"))
    return alerts
