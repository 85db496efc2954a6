"""Retention: after N+3 nights only the last N of each kind remain; the live state is intact."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from pipelines import settings
from pipelines.orchestration.retention import (
    RetentionConfig,
    apply_retention,
    load_retention,
)

N = 7


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("UCV_HOME", str(tmp_path))
    monkeypatch.delenv("UCV_RETENTION_NIGHTS", raising=False)
    return tmp_path


def nights(n: int) -> list[str]:
    return [(date(2026, 11, 1) + timedelta(days=i)).isoformat() for i in range(n)]


def fabricate(home, dates: list[str]) -> None:
    """What N+3 nights leave: run folders, landed exports, dated exports, one mirror per night."""
    mirror = settings.warehouse_dir() / "parquet"
    for sequence, day in enumerate(dates, start=1):
        (home / "runs" / day / "golden").mkdir(parents=True)
        (home / "runs" / day / "golden" / "customers.parquet").write_bytes(b"PAR1")
        (home / "landing" / day).mkdir(parents=True)
        (home / "landing" / day / "sales_leads.csv").write_text("lead_id\n")
        (home / "export" / day).mkdir(parents=True)
        (home / "export" / day / f"marketing_customers_{day}.csv").write_text("x\n")
        (mirror / f"{sequence:06d}-{day}").mkdir(parents=True)
    (mirror / "current").symlink_to(f"{len(dates):06d}-{dates[-1]}")
    settings.warehouse_file().write_bytes(b"the live warehouse")
    (home / "registry").mkdir()
    (home / "registry" / "ids.duckdb").write_bytes(b"the ID registry")


def test_after_n_plus_3_nights_only_the_last_n_remain_and_the_live_state_is_intact(home):
    dates = nights(N + 3)
    fabricate(home, dates)

    removed = apply_retention(current_run_id=dates[-1])

    assert removed == {"run_folders": 3, "landing": 3, "exports": 3, "mirror_versions": 3}
    for folder in ("runs", "landing", "export"):
        assert sorted(p.name for p in (home / folder).iterdir()) == dates[-N:]
    mirror = settings.warehouse_dir() / "parquet"
    kept = sorted(p.name for p in mirror.iterdir() if not p.is_symlink())
    assert kept == [f"{i:06d}-{d}" for i, d in enumerate(dates, start=1)][-N:]
    assert (mirror / "current").resolve().name == f"{N + 3:06d}-{dates[-1]}"
    assert settings.warehouse_file().read_bytes() == b"the live warehouse"
    assert (home / "registry" / "ids.duckdb").read_bytes() == b"the ID registry"
    assert apply_retention(current_run_id=dates[-1]) == dict.fromkeys(removed, 0)


def test_the_finishing_run_and_the_live_mirror_are_kept_even_when_old(home):
    dates = nights(5)
    fabricate(home, dates)
    mirror = settings.warehouse_dir() / "parquet"
    (mirror / "current").unlink()
    (mirror / "current").symlink_to(f"000001-{dates[0]}")  # an older night republished live

    apply_retention(current_run_id=dates[0], config=RetentionConfig(1, 1, 1, 1))

    assert sorted(p.name for p in (home / "runs").iterdir()) == [dates[0], dates[-1]]
    assert sorted(p.name for p in mirror.iterdir() if not p.is_symlink()) == [
        f"000001-{dates[0]}", f"000005-{dates[-1]}"]


def test_retention_comes_from_identify_yaml_and_the_environment_overrides_it(tmp_path,
                                                                            monkeypatch):
    monkeypatch.delenv("UCV_RETENTION_NIGHTS", raising=False)
    assert load_retention() == RetentionConfig(7, 7, 7, 7)  # the shipped schemas/identify.yaml
    own = tmp_path / "identify.yaml"
    own.write_text("retention:\n  run_folders: 3\n  exports: 30\n")
    assert load_retention(own) == RetentionConfig(run_folders=3, landing=7, exports=30,
                                                  mirror_versions=7)
    monkeypatch.setenv("UCV_RETENTION_NIGHTS", "2")
    assert load_retention(own) == RetentionConfig(2, 2, 2, 2)
    own.write_text("retention:\n  landing: 0\n")
    monkeypatch.delenv("UCV_RETENTION_NIGHTS")
    with pytest.raises(ValueError, match="at least 1"):
        load_retention(own)
