"""`run_state.json`: what one run did, stage by stage (timings, counts, peak memory, errors).

One file per run folder. Airflow runs mapped tasks in parallel processes, so every update is a
locked read-modify-write followed by an atomic rename: readers never see a half-written file.
The `runs` warehouse table (publish) and the benchmarks read this file. Format:

    {"run_id", "logical_date", "export_date", "landing_dir", "orchestrator", "airflow_run_id",
     "status": "running" | "success" | "failed", "started_at", "finished_at", "error",
     "stages": {"<stage>" or "<stage>.<source>": {"status", "started_at", "finished_at",
                "seconds", "peak_rss_mib", "counts": {...}, "error"}}}
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipelines.settings import RunPaths

RUN_STATE_FILE = "run_state.json"
log = logging.getLogger("ucv.stage")


def run_state_path(run: RunPaths) -> Path:
    return run.root / RUN_STATE_FILE


def read_run_state(run: RunPaths) -> dict[str, Any]:
    """The run's state as last written; an empty dict when the run has not started."""
    path = run_state_path(run)
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def write_json_atomic(path: Path, payload: Any) -> Path:
    """Write JSON to a temp file beside `path` and rename it over `path` (all or nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp creates 0600; give the file the mode any other file of the run gets (umask)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, ensure_ascii=False, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def _locked(run: RunPaths) -> Iterator[None]:
    run.root.mkdir(parents=True, exist_ok=True)
    with open(run.root / f".{RUN_STATE_FILE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def update_run_state(run: RunPaths, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Apply `change` to the stored state under a file lock and write the result atomically."""
    with _locked(run):
        state = read_run_state(run)
        change(state)
        write_json_atomic(run_state_path(run), state)
    return state


def utc_now() -> str:
    """Wall-clock timestamp for run metadata only (stage logic uses the run's dates, never this)."""
    from pipelines.clock import utc_now as clock_now

    return clock_now().isoformat(timespec="seconds")


def start_run_state(run: RunPaths, *, logical_date: str | None, export_date: str,
                    landing_dir: Path, orchestrator: str,
                    airflow_run_id: str | None = None) -> dict[str, Any]:
    """Begin a fresh state for the run, replacing any state an earlier attempt left."""
    def fresh(state: dict[str, Any]) -> None:
        state.clear()
        state.update({
            "run_id": run.run_id, "logical_date": logical_date, "export_date": export_date,
            "landing_dir": str(landing_dir), "orchestrator": orchestrator,
            "airflow_run_id": airflow_run_id, "status": "running", "started_at": utc_now(),
            "finished_at": None, "error": None, "stages": {},
        })
    return update_run_state(run, fresh)


def finish_run_state(run: RunPaths, status: str, error: str | None = None) -> dict[str, Any]:
    def finish(state: dict[str, Any]) -> None:
        state["status"] = status
        state["finished_at"] = utc_now()
        state["error"] = error
    return update_run_state(run, finish)


@contextmanager
def record_stage(run: RunPaths, stage: str) -> Iterator[dict[str, Any]]:
    """Record one stage's start, end, seconds, peak RSS and counts; a failure fails the run.

    The body fills the yielded dict with the stage's counts. When the stage that failed the run
    starts again (a retry), the run is running again, so a night that recovers ends as a success;
    other stages starting (mapped siblings still running) leave a failed run failed.
    """
    from pipelines.bench.resources import measure
    from pipelines.logs import counts_text, quiet_libraries

    quiet_libraries()

    def started(state: dict[str, Any]) -> None:
        retry_of_failure = (state.get("status") == "failed"
                            and str(state.get("error") or "").startswith(f"{stage}: "))
        state.setdefault("stages", {})[stage] = {
            "status": "running", "started_at": utc_now(), "finished_at": None,
            "seconds": None, "peak_rss_mib": None, "counts": {}, "error": None}
        if retry_of_failure:
            state["status"], state["error"], state["finished_at"] = "running", None, None

    update_run_state(run, started)
    counts: dict[str, Any] = {}
    try:
        with measure() as cost:
            yield counts
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"

        def failed(state: dict[str, Any]) -> None:
            state["stages"][stage].update({
                "status": "failed", "finished_at": utc_now(), "seconds": round(cost.seconds, 3),
                "peak_rss_mib": round(cost.peak_rss_mib, 1), "counts": counts, "error": error})
            state.update({"status": "failed", "finished_at": utc_now(),
                          "error": f"{stage}: {error}"})
        update_run_state(run, failed)
        log.error("run=%s stage=%s status=failed seconds=%.1f %s error=%s", run.run_id, stage,
                  cost.seconds, counts_text(counts), type(exc).__name__)
        raise

    def succeeded(state: dict[str, Any]) -> None:
        state["stages"][stage].update({
            "status": "success", "finished_at": utc_now(), "seconds": round(cost.seconds, 3),
            "peak_rss_mib": round(cost.peak_rss_mib, 1), "counts": counts})
    update_run_state(run, succeeded)
    log.info("run=%s stage=%s status=success seconds=%.1f peak_rss_mib=%.0f %s", run.run_id,
             stage, cost.seconds, cost.peak_rss_mib, counts_text(counts))
