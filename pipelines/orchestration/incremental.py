"""Incremental nights: which earlier night a run builds on, and whether it does.

An incremental night reuses the base night's staged records of unchanged rows
(`pipelines/standardize/reuse.py`) and its match pairs among unchanged records
(`pipelines/resolve/incremental.py`); identify, golden and publish run on the whole result as on
any night. The base night is the latest earlier run folder that finished successfully (the last
published night in date order; retention keeps 7). Opt-in: `incremental: true` in
`schemas/operations.yaml` or `ucv run --incremental`; `--full` forces a full night.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from pipelines import settings
from pipelines.settings import RunPaths

SUMMARY_FILE = "incremental.json"


def _is_date(name: str) -> bool:
    try:
        date.fromisoformat(name)
    except ValueError:
        return False
    return len(name) == 10


def base_night(run_id: str, runs_dir: Path | None = None) -> RunPaths | None:
    """The latest run before `run_id` whose run_state says success (None: there is none)."""
    runs = runs_dir or settings.data_root() / "runs"
    if not runs.is_dir():
        return None
    for folder in sorted((p for p in runs.iterdir()
                          if p.is_dir() and _is_date(p.name) and p.name < run_id), reverse=True):
        state = folder / "run_state.json"
        try:
            status = json.loads(state.read_text(encoding="utf-8")).get("status")
        except (OSError, ValueError):
            continue
        if status == "success":
            return RunPaths(run_id=folder.name, root=folder)
    return None


def incremental_setting(requested: bool | None) -> bool:
    """`requested` (True: --incremental, False: --full) or else operations.yaml `incremental`."""
    if requested is not None:
        return requested
    from pipelines.orchestration.operations import load_operations

    return load_operations().incremental


MODES = {"config": None, "incremental": True, "full": False}


def mode_flag(mode: str | None) -> bool | None:
    """The DAG's `mode` param as `incremental_setting` takes it (None or unknown: the config)."""
    return MODES.get(mode or "config")


def summary_path(run: RunPaths) -> Path:
    return run.report_dir / SUMMARY_FILE


def record_summary(run: RunPaths, stage: str, payload: dict) -> Path:
    """report/incremental.json: per stage what was reused from which night (counts only)."""
    from pipelines.orchestration.run_state import write_json_atomic

    path = summary_path(run)
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    data[stage] = payload
    return write_json_atomic(path, data)
