"""What a person wants to see after a run: where the outputs are and the key counts."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipelines import settings
from pipelines.orchestration.report import REPORT_FILE
from pipelines.orchestration.run_state import read_run_state
from pipelines.settings import RunPaths

# The counts worth a glance, in this order; read from the published warehouse.
KEY_TABLES = ["source_records", "quarantine", "customers", "match_pairs", "customer_policy_links",
              "customer_id_history", "review_queue", "runs"]


def print_run_summary(run: RunPaths, console: Console | None = None) -> None:
    """Print run status, stage timings, output locations and warehouse counts."""
    from pipelines.orchestration.stages import warehouse_counts

    console = console or Console()
    state = read_run_state(run)
    stages = Table(title=f"run {run.run_id}: {state.get('status', 'not started')}")
    for column in ("stage", "status", "seconds", "peak RSS MiB"):
        stages.add_column(column, justify="left" if column in ("stage", "status") else "right")
    for name, stage in state.get("stages", {}).items():
        stages.add_row(name, stage.get("status"), f"{stage.get('seconds') or 0:.1f}",
                       f"{stage.get('peak_rss_mib') or 0:.0f}")
    console.print(stages)
    if state.get("error"):
        console.print(f"[red]error:[/red] {state['error']}")

    warehouse = settings.warehouse_file()
    export = state.get("stages", {}).get("export", {}).get("counts", {})
    console.print(f"run folder: {run.root}")
    console.print(f"warehouse:  {warehouse if warehouse.exists() else '(not published)'}")
    rows = f" ({export['rows']:,} customers)" if "rows" in export else ""
    console.print(f"export:     {export.get('path') or settings.export_dir()}{rows}")
    console.print(f"report:     {_existing(run.report_dir / REPORT_FILE)}")
    if warehouse.exists():
        counts = warehouse_counts(warehouse)
        table = Table(title="published warehouse")
        table.add_column("table")
        table.add_column("rows", justify="right")
        for name in [t for t in KEY_TABLES if t in counts] + sorted(set(counts) - set(KEY_TABLES)):
            table.add_row(name, f"{counts[name]:,}")
        console.print(table)


def _existing(path: Path) -> str:
    return str(path) if path.exists() else f"{path} (not written)"
