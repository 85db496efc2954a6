"""What a person wants to see after a run: how it went, where the outputs are, what to open next."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipelines import settings
from pipelines.orchestration.report import HTML_REPORT_FILE, REPORT_FILE
from pipelines.orchestration.run_state import read_run_state
from pipelines.settings import RunPaths

# The counts worth a glance, in this order; read from the published warehouse.
KEY_TABLES = ["source_records", "quarantine", "customers", "match_pairs", "customer_policy_links",
              "customer_id_history", "review_queue", "runs"]
FIRST_QUERY = ("SELECT party_type, count(*) AS customers, round(avg(confidence), 3) AS confidence "
               "FROM customers GROUP BY party_type ORDER BY party_type")


def print_run_summary(run: RunPaths, console: Console | None = None) -> None:
    """Print run status and stage timings; for a successful run, the outputs and what to open.

    A run that failed or never started published nothing: its summary says so and shows no
    warehouse figures, which would be an earlier night's.
    """
    from pipelines.orchestration.stages import warehouse_counts

    console = console or Console(soft_wrap=True)
    state = read_run_state(run)
    status = state.get("status", "not started")
    stages = Table(title=f"run {run.run_id}: {status}")
    for column in ("stage", "status", "seconds", "peak RSS MiB"):
        stages.add_column(column, justify="left" if column in ("stage", "status") else "right")
    for name, stage in state.get("stages", {}).items():
        stages.add_row(name, stage.get("status"), f"{stage.get('seconds') or 0:.1f}",
                       f"{stage.get('peak_rss_mib') or 0:.0f}")
    console.print(stages)
    if state.get("error"):
        console.print(f"[red]error:[/red] {escape(str(state['error']))}")
    report = run.report_dir / HTML_REPORT_FILE
    if status != "success":
        console.print(f"run folder: {run.root}")
        if report.exists():
            console.print(f"report:     {report}")
        console.print("nothing was published by this run; the warehouse and export stay as the "
                      "last successful run left them")
        return

    warehouse = settings.warehouse_file()
    export = state.get("stages", {}).get("export", {}).get("counts", {})
    counts = warehouse_counts(warehouse) if warehouse.exists() else {}
    if counts:
        table = Table(title="published warehouse")
        table.add_column("table")
        table.add_column("rows", justify="right")
        for name in [t for t in KEY_TABLES if t in counts] + sorted(set(counts) - set(KEY_TABLES)):
            table.add_row(name, f"{counts[name]:,}")
        console.print(table)
    print_next_steps(run, export, console)


def print_next_steps(run: RunPaths, export: dict, console: Console) -> None:
    """What a newcomer opens next, every path whole (soft wrap: no breaks inside a path)."""
    warehouse = settings.warehouse_file()
    export_folder = Path(export["path"]).parent if export.get("path") else settings.export_dir()
    csv_files = sorted(export_folder.glob("*.csv")) if export_folder.is_dir() else []
    rows = f" ({export['rows']:,} customers)" if "rows" in export else ""
    # double quotes outside, single inside: pastes into any POSIX shell as printed
    ucv = Path(sys.executable).parent / "ucv"  # `ucv sql`: the pinned DuckDB CLI, read-only
    query = (f"{shlex.quote(str(ucv))} sql --warehouse {shlex.quote(str(warehouse))} "
             f"-c {shlex.quote(FIRST_QUERY)}")
    console.print("\n[bold]open next[/bold]")
    for label, value in [
        ("run report", _existing(run.report_dir / HTML_REPORT_FILE)),
        ("  (Markdown)", _existing(run.report_dir / REPORT_FILE)),
        ("warehouse", _existing(warehouse)),
        ("  Parquet mirror", _mirror()),
        (f"marketing export{rows}", str(csv_files[0]) if csv_files else str(export_folder)),
        ("  its manifest", _existing(export_folder / "manifest.json")),
        ("data dictionary", str(settings.PROJECT_ROOT / "docs" / "data_dictionary.md")),
        ("example queries", str(settings.PROJECT_ROOT / "docs" / "example_queries.sql")),
        ("a first query", query),
    ]:
        console.print(f"{label + ':':<30} {escape(value)}", highlight=False)


def _mirror() -> str:
    """The published mirror's version folder (what `parquet/LATEST` names)."""
    from pipelines.golden import current_mirror

    try:
        return str(current_mirror())
    except FileNotFoundError:
        return f"{settings.warehouse_dir() / 'parquet'} (not written)"


def _existing(path: Path) -> str:
    return str(path) if path.exists() else f"{path} (not written)"
