"""`make run`: land sample exports if none are landed, then one full nightly run through Airflow.

Which date: the most recent export date already landed in data/landing/; when nothing is landed,
yesterday (UTC) — sample exports (20,000 customers, seed 42) are generated into data/sample/ once
and copied into data/landing/<yesterday>/. The Airflow run's logical date is the export date + 1
day at 02:00 UTC, exactly as the nightly schedule would run it. `--date YYYY-MM-DD` picks the
export date. A date the DAG cannot run (before its start date, nothing landed) is refused before
Airflow starts, and a run that did not happen is never reported as one.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from rich.console import Console

from pipelines import clock, settings
from pipelines.orchestration.airflow_local import (
    LOCAL_AIRFLOW_HOME,
    airflow_env,
    dags_test,
    migrate_db,
)
from pipelines.orchestration.operations import ensure_pools
from pipelines.orchestration.run_state import read_run_state, utc_now
from pipelines.orchestration.schedule import START_DATE, first_export_date, logical_datetime_for
from pipelines.orchestration.stages import landing_dir_for, run_paths
from pipelines.orchestration.summary import print_run_summary

SAMPLE_CUSTOMERS = 20_000
SAMPLE_SEED = 42


def sample_dir() -> Path:
    return settings.data_root() / "sample"


def landed_export_dates() -> list[date]:
    """Export dates with at least one landed file, oldest first."""
    root = settings.landing_root()
    dates = []
    for folder in root.glob("*") if root.is_dir() else []:
        try:
            day = date.fromisoformat(folder.name)
        except ValueError:
            continue
        if any(p.is_file() for p in folder.iterdir()):
            dates.append(day)
    return sorted(dates)


class CannotRun(Exception):
    """A date `make run` will not hand to Airflow, with the reason and what to do instead."""


def choose_export_date(requested: str | None, today: date) -> date:
    """The requested date, else the latest landed date, else yesterday."""
    if requested:
        return date.fromisoformat(requested)
    landed = landed_export_dates()
    return landed[-1] if landed else today - timedelta(days=1)


def check_runnable(export_date: date) -> None:
    """Refuse an export date the DAG would not process; `CannotRun` says why and what instead.

    Airflow runs no task for a logical date before the DAG's start date, yet reports the run a
    success: such a date must never reach `airflow dags test`.
    """
    if export_date < first_export_date():
        raise CannotRun(
            f"export date {export_date} is before the DAG's first night: its run (logical date "
            f"{logical_datetime_for(export_date):%Y-%m-%d %H:%M} UTC) would be before the DAG's "
            f"start date {START_DATE}, so Airflow would run no task. The first export date the "
            f"DAG processes is {first_export_date()}; to process {export_date} anyway, run it "
            f"without Airflow: ucv run --date {export_date}")
    landed = landed_export_dates()
    if landed and export_date not in landed:
        raise CannotRun(
            f"nothing is landed for export date {export_date} in {landing_dir_for(export_date)}; "
            f"landed dates: {', '.join(str(d) for d in landed[-5:])}")


def parse_date(text: str) -> str:
    """argparse type: an export date written YYYY-MM-DD."""
    from pipelines.cli_args import iso_date

    try:
        return str(iso_date(text))
    except Exception as exc:  # typer.BadParameter: say it argparse's way
        raise argparse.ArgumentTypeError(str(exc)) from None


def land_sample_exports(export_date: date, console: Console) -> Path:
    """Copy the sample exports (generated once) into data/landing/<export date>/."""
    landing = settings.landing_root() / export_date.isoformat()
    if landing.is_dir() and any(p.is_file() for p in landing.iterdir()):
        return landing
    sample_landing = sample_dir() / "landing"
    if not (sample_landing.is_dir() and any(sample_landing.iterdir())):
        from pipelines.generate import generate_exports

        console.print(f"generating sample exports: {SAMPLE_CUSTOMERS:,} customers, seed "
                      f"{SAMPLE_SEED} -> {sample_dir()}")
        generate_exports(sample_dir(), customers=SAMPLE_CUSTOMERS, seed=SAMPLE_SEED,
                         export_date=export_date)
    # copy beside the target and rename, so a half-copied folder never looks landed
    tmp = landing.with_name(f".{landing.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(sample_landing, tmp)
    shutil.rmtree(landing, ignore_errors=True)
    tmp.rename(landing)
    console.print(f"landed sample exports in {landing}")
    return landing


def follow_run(process, run_id: str, launched_at: str, console: Console) -> int:
    """Wait for the Airflow process, printing each stage as run_state.json records it."""
    shown: set[tuple[str, str]] = set()
    while True:
        finished = process.poll() is not None
        state = this_run_state(run_id, launched_at)
        for name, stage in state.get("stages", {}).items():
            status = stage.get("status")
            if status in ("success", "failed") and (name, status) not in shown:
                shown.add((name, status))
                mark = "[green]done[/green]" if status == "success" else "[red]failed[/red]"
                console.print(f"  {mark} {name:<24} {stage.get('seconds') or 0:7.1f} s")
        if finished:
            return process.returncode
        time.sleep(1)


def this_run_state(run_id: str, launched_at: str) -> dict:
    """The run state written by the run launched at `launched_at`; {} while (or if) it has not
    started: until `prepare` starts afresh, the file may still describe an earlier run."""
    run = run_paths(run_id)
    state = read_run_state(run) if run.root.exists() else {}
    return state if state.get("started_at", "") >= launched_at else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--date", type=parse_date, help="export date to process (YYYY-MM-DD)")
    args = parser.parse_args(argv)
    console = Console(soft_wrap=True)  # paths whole, also when stdout is a file or a pipe
    started = time.perf_counter()

    export_date = choose_export_date(args.date, clock.utc_now().date())
    logical_date = logical_datetime_for(export_date)
    try:
        check_runnable(export_date)
    except CannotRun as exc:
        console.print(f"[red]make run: {exc}[/red]", highlight=False)
        return 2
    console.print(f"export date {export_date} (run id), Airflow logical date {logical_date}")
    if not landed_export_dates():
        land_sample_exports(export_date, console)

    env = airflow_env(LOCAL_AIRFLOW_HOME)
    env["UCV_TASK_RETRIES"] = "0"  # fail fast here; the scheduled DAG retries (docs/operations.md)
    env["UCV_DEADLINE_ALERTS"] = "0"  # no scheduler evaluates them under `dags test` (DAG file)
    log_file = LOCAL_AIRFLOW_HOME / "logs" / "make_run" / f"{export_date}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text("")
    console.print(f"airflow db migrate, pools, then airflow dags test (log: {log_file})")
    migrate_db(env, log_file)
    ensure_pools(env, log_file)
    launched_at = utc_now()
    exit_code = follow_run(dags_test(logical_date.isoformat(), env, log_file),
                           export_date.isoformat(), launched_at, console)

    state = this_run_state(export_date.isoformat(), launched_at)
    if not state:
        console.print(f"[red]Airflow ran no task of this night (exit code {exit_code}): nothing "
                      f"was processed and nothing published.[/red] See {log_file}")
        return exit_code or 1
    print_run_summary(run_paths(export_date.isoformat()), console)
    console.print(f"wall time {time.perf_counter() - started:.0f} s (Airflow log: {log_file})")
    if exit_code != 0 or state.get("status") != "success":
        console.print(f"[red]the Airflow run failed (exit code {exit_code})[/red]; details in "
                      f"{log_file}")
        if not read_run_state(run_paths(export_date.isoformat())).get("error"):
            console.print("\n".join(log_file.read_text().splitlines()[-15:]), markup=False)
        return exit_code or 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
