"""Have tonight's exports landed? One check per configured source, and the deadline after which
waiting stops: the logic behind the DAG's `wait_for_exports` sensor, testable without Airflow."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path


class ExportsLate(RuntimeError):
    """The landing deadline passed with sources still missing; the message names them."""


@dataclass(frozen=True)
class LandingCheck:
    folder: Path
    landed: dict[str, int]  # source -> files matching its file_pattern
    missing: list[str]

    @property
    def complete(self) -> bool:
        return not self.missing


def check_landing(export_date: date, landing_dir: Path | None = None) -> LandingCheck:
    """Which configured sources have at least one file matching their `file_pattern` (and its
    control file, where the mapping declares row counts in one)."""
    from pipelines.ingest import load_mappings
    from pipelines.orchestration.stages import landing_dir_for

    folder = Path(landing_dir) if landing_dir else landing_dir_for(export_date)
    landed: dict[str, int] = {}
    for name, mapping in sorted(load_mappings().items()):
        files = [p for p in folder.glob(mapping.file_pattern) if p.is_file()] \
            if folder.is_dir() else []
        declared = mapping.declared_rows
        if declared is not None and declared.control_file is not None:
            # a data file counts once its control file is there (often written last, as a
            # "done" marker); a control file the pattern matches too is no data file
            controls = {declared.control_name(p.name) for p in files}
            files = [p for p in files if p.name not in controls
                     and p.with_name(declared.control_name(p.name) or "").is_file()]
        landed[name] = len(files)
    return LandingCheck(folder, landed, [name for name, n in landed.items() if n == 0])


def landing_deadline(scheduled_start: datetime, wait: timedelta) -> datetime:
    return scheduled_start + wait


def exports_ready(export_date: date, *, scheduled_start: datetime, wait: timedelta,
                  now: datetime, landing_dir: Path | None = None) -> LandingCheck:
    """One check: the landing state; `ExportsLate` once `now` is past the deadline and a source
    is still missing (so the run fails with the reason instead of waiting on)."""
    check = check_landing(export_date, landing_dir)
    deadline = landing_deadline(scheduled_start, wait)
    if not check.complete and now >= deadline:
        raise ExportsLate(
            f"exports for {export_date} not landed by the deadline {deadline:%Y-%m-%d %H:%M} "
            f"UTC ({_minutes(wait)} after the run's start): no file for {', '.join(check.missing)} in "
            f"{check.folder} (landed: {', '.join(s for s, n in check.landed.items() if n) or 'none'}"
            "). Land the files and clear the task, or trigger with another export_date.")
    return check


def _minutes(wait: timedelta) -> str:
    minutes = wait.total_seconds() / 60
    return f"{minutes / 60:g} h" if minutes >= 60 else f"{minutes:g} min"
