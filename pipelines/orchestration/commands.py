"""`ucv run`: one nightly run without Airflow, the same stages in the same order as the DAG."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import typer

app = typer.Typer()


@app.command("run")
def run_command(
    export_date: str = typer.Option(..., "--date", help="Export date to process (YYYY-MM-DD): "
                                    "reads data/landing/<date>/, writes data/runs/<date>/."),
    landing: Path | None = typer.Option(None, help="Read the exports from this folder instead."),
    replace_live: bool = typer.Option(False, help="Publish even when a later night's warehouse is "
                                      "live (default: an older date is rebuilt, not published)."),
) -> None:
    """Run every stage for one export date and publish the warehouse (no scheduler needed)."""
    from rich.console import Console

    from pipelines.orchestration.run import run_pipeline
    from pipelines.orchestration.stages import run_paths
    from pipelines.orchestration.summary import print_run_summary

    console = Console()
    day = date.fromisoformat(export_date)
    try:
        console.print(f"running the pipeline for export date {day}")
        run = run_pipeline(day, landing_dir=landing, replace_live=replace_live)
    except Exception as exc:
        print_run_summary(run_paths(day.isoformat()), console)
        console.print(f"[red]run failed:[/red] {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from exc
    print_run_summary(run, console)
