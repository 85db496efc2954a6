"""Being told: the landing sensor waits then fails with a clear message, failures and missed
deadlines reach SMTP and webhook receivers on 127.0.0.1 through Airflow notifiers."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest
from alert_receivers import airflow_connections, smtp_receiver, webhook_receiver

from pipelines.orchestration.landing import ExportsLate, check_landing, exports_ready
from pipelines.orchestration.operations import OperationsConfigError, load_operations

EXPORT_DATE = date(2026, 11, 22)


@pytest.fixture
def ucv_home(tmp_path, monkeypatch):
    monkeypatch.setenv("UCV_HOME", str(tmp_path))
    return tmp_path


def test_landing_check_names_the_sources_still_missing(ucv_home):
    folder = ucv_home / "landing" / EXPORT_DATE.isoformat()
    folder.mkdir(parents=True)
    (folder / "sales_leads_1.csv").write_text("lead_id\n")
    check = check_landing(EXPORT_DATE)
    assert check.landed["sales"] == 1 and "sales" not in check.missing
    assert set(check.missing) == set(check.landed) - {"sales"}
    start = datetime(2026, 11, 23, 2, tzinfo=UTC)
    # before the deadline: not ready, keep waiting
    assert not exports_ready(EXPORT_DATE, scheduled_start=start, wait=timedelta(hours=4),
                             now=start + timedelta(hours=3)).complete
    with pytest.raises(ExportsLate) as late:
        exports_ready(EXPORT_DATE, scheduled_start=start, wait=timedelta(hours=4),
                      now=start + timedelta(hours=4))
    message = str(late.value)
    assert "not landed by the deadline 2026-11-23 06:00 UTC (4 h after the run's start)" in message
    assert all(source in message for source in check.missing) and "landed: sales" in message


def test_operations_yaml_is_checked(tmp_path):
    bad = tmp_path / "operations.yaml"
    bad.write_text("landing: {wait_minutes: -5}\n")
    with pytest.raises(OperationsConfigError, match="landing.wait_minutes must be a positive"):
        load_operations(bad)
    ops = load_operations()
    assert ops.pool_of("resolve") == "ucv_heavy" and ops.pool_of("prepare") is None


def test_notifiers_reach_local_receivers_on_a_failure_and_a_missed_deadline(monkeypatch):
    from pipelines.orchestration.airflow_alerts import EmailNotifier, WebhookNotifier

    with smtp_receiver() as smtp, webhook_receiver() as hook:
        for name, value in airflow_connections(smtp.server_address[1],
                                               hook.server_address[1]).items():
            monkeypatch.setenv(name, value)
        failure = {"ti": {"task_id": "validate", "dag_id": "unified_customer_view",
                          "run_id": "scheduled__2026-11-23T02:00:00+00:00", "map_index": 2,
                          "try_number": 1},
                   "exception": RuntimeError("sales: column 'email' drifted\nmore detail")}
        WebhookNotifier("ucv_webhook")(failure)
        EmailNotifier(["oncall@localhost"], "ucv@localhost", "ucv_smtp")(failure)
        # a DeadlineAlert: the triggerer builds the notifier with the context and awaits it
        deadline = {"dag_run": {"dag_id": "unified_customer_view", "run_id": "scheduled__x"},
                    "deadline": {"deadline_time": "2026-11-23T09:00:00+00:00"}}
        asyncio.run(_await(WebhookNotifier(conn_id="ucv_webhook", context=deadline)))

    first, late = hook.posts
    assert first["path"] == "/alerts/ucv"
    assert first["json"]["kind"] == "task_failed" and first["json"]["task_id"] == "validate"
    assert first["json"]["error"] == "RuntimeError: sales: column 'email' drifted"
    assert late["json"]["kind"] == "deadline_missed"
    assert "missed its deadline 2026-11-23T09:00:00+00:00" in late["json"]["text"]
    (mail,) = smtp.messages
    assert mail["To"] == "oncall@localhost"
    assert mail["Subject"].startswith("UCV nightly scheduled__2026-11-23T02:00:00+00:00: task "
                                      "validate failed")


async def _await(notifier):
    await notifier


def test_a_channel_without_its_connection_is_off_and_says_so(monkeypatch, caplog):
    from pipelines.orchestration.airflow_alerts import WebhookNotifier

    monkeypatch.delenv("AIRFLOW_CONN_UCV_NOWHERE", raising=False)
    with caplog.at_level("INFO", logger="ucv.alerts"):
        WebhookNotifier("ucv_nowhere")({"ti": {"task_id": "x"}})
    assert "alert channel off: no Airflow connection 'ucv_nowhere'" in caplog.text


@pytest.mark.slow
def test_the_sensor_waits_then_fails_the_run_and_the_receivers_hear_of_it(tmp_path):
    from orchestration_support import migrated_airflow_env, run_dag_test

    config = tmp_path / "config"
    config.mkdir()
    # 30 s after the sensor first looks, checked every 2 s
    (config / "operations.yaml").write_text(
        "landing: {wait_minutes: 0.5, poke_seconds: 2}\nrun_deadline_minutes: 60\n"
        "alerts:\n  smtp: {conn_id: ucv_smtp, to: [oncall@localhost], from_email: ucv@localhost}\n"
        "  webhook: {conn_id: ucv_webhook}\n")
    env = migrated_airflow_env(tmp_path / "airflow", tmp_path / "ucv")
    env["UCV_CONFIG_DIR"] = str(config)
    now = datetime.now(UTC).replace(microsecond=0)
    with smtp_receiver() as smtp, webhook_receiver() as hook:
        env.update(airflow_connections(smtp.server_address[1], hook.server_address[1]))
        result = run_dag_test(env, now.isoformat())

    states = {ti["task_id"]: ti["state"] for ti in result["tis"]}
    assert result["state"] == "failed"
    assert states["wait_for_exports"] == "failed"
    assert states["prepare"] == "upstream_failed" and states["publish"] == "upstream_failed"
    assert result["reschedules"].get("wait_for_exports", 0) >= 1  # it waited before failing
    assert result["asset_events"] == []  # nothing published, no downstream run
    (alert,) = [p["json"] for p in hook.posts]
    assert alert["task_id"] == "wait_for_exports"
    assert "not landed by the deadline" in alert["error"] and "no file for claims" in alert["error"]
    (mail,) = smtp.messages
    assert "wait_for_exports failed" in mail["Subject"]
