"""`ucv generate`: write synthetic source exports (and their ground truth) to a folder."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import typer

app = typer.Typer()


@app.command()
def generate(
    out: Path = typer.Option(..., "--out", file_okay=False, help="Output folder: landing/ and truth/ are created in it."),
    customers: int | None = typer.Option(None, "--customers", min=1, help="Number of true customers."),
    records: int | None = typer.Option(
        None, "--records", min=1, help="Alternative to --customers: aim for about this many source records."),
    seed: int = typer.Option(42, "--seed", min=0, help="Random seed; the same seed gives the same bytes."),
    export_date: datetime = typer.Option(
        "2026-11-22", "--export-date", formats=["%Y-%m-%d"], help="Date the systems exported (all dates derive from it)."),
    config_file: Path | None = typer.Option(None, "--config", exists=True, dir_okay=False, help="YAML overriding schemas/generator.yaml."),
    night: int = typer.Option(
        1, "--night", min=1, help="Night N: the same population N-1 days after --export-date, with those "
                                  "days' changes (new mobiles, new leads); records of earlier nights keep their keys."),
    profile: str | None = typer.Option(
        None, "--profile", help="Population profile from schemas/profiles/<name>/ (no_national_id, us, "
                                "leads_light); --config applies on top."),
) -> None:
    """Generate the four source exports (sales, underwriting, servicing, claims) and ground truth."""
    from rich.console import Console
    from rich.table import Table

    from pipelines.generate import EXPORT_FILES, generate_exports, load_config, records_to_customers

    if (customers is None) == (records is None):
        raise typer.BadParameter("give exactly one of --customers or --records")
    try:
        config = load_config(config_file, profile=profile)
    except (ValueError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    n_customers = customers if customers is not None else records_to_customers(int(records or 0), config)
    console = Console()
    with console.status(f"Generating exports for {n_customers:,} customers (seed {seed})..."):
        summary = generate_exports(out, n_customers, seed, export_date=date.fromisoformat(
            export_date.date().isoformat()), config=config, night=night)

    table = Table(title=f"ucv generate: {summary.customers:,} customers, seed {summary.seed}, "
                        f"export date {summary.export_date}" + (f", night {night}" if night > 1 else ""))
    table.add_column("source")
    table.add_column("file")
    table.add_column("records", justify="right")
    table.add_column("size", justify="right")
    for source, file_name in EXPORT_FILES.items():
        size = summary.files[f"landing/{file_name}"]
        table.add_row(source, file_name, f"{summary.records_per_source[source]:,}", f"{size / 2**20:,.1f} MiB")
    landing_bytes = sum(size for name, size in summary.files.items() if name.startswith("landing/"))
    table.add_row("total", "landing/", f"{summary.total_records:,}", f"{landing_bytes / 2**20:,.1f} MiB",
                  end_section=True)
    truth_bytes = sum(size for name, size in summary.files.items() if name.startswith("truth/"))
    table.add_row("truth", "ground_truth + entities", f"{summary.customers:,} entities",
                  f"{truth_bytes / 2**20:,.1f} MiB")
    console.print(table)
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in summary.stage_seconds.items())
    console.print(f"Done in {summary.elapsed_seconds:.1f} s ({stages}). Truth in {out / 'truth'}.")
