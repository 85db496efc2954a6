"""`ucv run`: one nightly run without Airflow, the same stages in the same order as the DAG."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import typer

from pipelines import cli_args

app = typer.Typer()


@app.command("run")
def run_command(
    export_date: str = typer.Option(..., "--date", callback=cli_args.iso_date,
                                    help="Export date to process (YYYY-MM-DD): reads "
                                         "data/landing/<date>/, writes data/runs/<date>/."),
    landing: Path | None = typer.Option(None, exists=True, file_okay=False,
                                        help="Read the exports from this folder instead."),
    replace_live: bool = typer.Option(False, help="Publish even when a later night's warehouse is "
                                      "live (default: an older date is rebuilt, not published)."),
    incremental: bool | None = typer.Option(
        None, "--incremental/--full", help="Incremental night: reuse the last successful night's "
        "unchanged records and pairs, score only new and changed ones; --full re-resolves "
        "everything (default: `incremental` in schemas/operations.yaml, off)."),
) -> None:
    """Run every stage for one export date and publish the warehouse (no scheduler needed)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from pipelines.orchestration.run import run_pipeline
    from pipelines.orchestration.stages import landing_dir_for, run_paths
    from pipelines.orchestration.summary import print_run_summary

    console = Console(soft_wrap=True)
    day = date.fromisoformat(export_date)
    folder = landing or landing_dir_for(day)
    if not (folder.is_dir() and any(p.is_file() for p in folder.iterdir())):
        raise cli_args.DataProblem(f"no exports landed in {folder} for export date {day}")
    console.print(f"running the pipeline for export date {day} (exports in {folder})")
    progress = Progress(TextColumn("{task.description:<24}"), BarColumn(), TextColumn(
        "{task.completed}/{task.total} stages"), TimeElapsedColumn(), console=console,
        transient=True, disable=not console.is_terminal)
    bar = progress.add_task("prepare", total=None)

    def on_stage(name: str, done: int, total: int) -> None:
        progress.update(bar, description=name, completed=done, total=total or None)
        if not console.is_terminal:  # a log file gets one line per stage instead of a bar
            console.print(f"  stage {name}")

    try:
        with progress:
            run = run_pipeline(day, landing_dir=landing, on_stage=on_stage,
                               replace_live=replace_live, incremental=incremental,
                               stage_processes=True)
    except Exception as exc:
        print_run_summary(run_paths(day.isoformat()), console)
        console.print(f"[red]run failed:[/red] {escape(f'{type(exc).__name__}: {exc}')}")
        raise typer.Exit(1) from exc
    print_run_summary(run, console)
