from datetime import UTC, datetime, timedelta

from pipelines.clock import utc_now
from pipelines.orchestration.run_state import utc_now as run_state_timestamp


def test_ucv_now_pins_the_clock(monkeypatch):
    monkeypatch.setenv("UCV_NOW", "2026-11-23T02:00:00")
    assert utc_now() == datetime(2026, 11, 23, 2, tzinfo=UTC)  # naive means UTC
    assert run_state_timestamp() == "2026-11-23T02:00:00+00:00"
    monkeypatch.setenv("UCV_NOW", "2026-11-23T03:00:00+01:00")
    assert utc_now() == datetime(2026, 11, 23, 2, tzinfo=UTC)


def test_without_ucv_now_the_clock_is_the_wall_clock(monkeypatch):
    monkeypatch.delenv("UCV_NOW", raising=False)
    assert abs(utc_now() - datetime.now(UTC)) < timedelta(seconds=5)
