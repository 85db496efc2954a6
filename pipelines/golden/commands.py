"""`ucv` commands of the golden stage: golden, publish, export-marketing, sql, lookup,
data-dictionary, golden-accuracy."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import typer

from pipelines import cli_args

app = typer.Typer()


def _run(run_id: str):
    return cli_args.existing_run(run_id)


@app.command()
def golden(run_id: str = typer.Option(..., callback=cli_args.run_id,
                                    help="run folder (the export date, ISO)"),
           export_date: str = typer.Option(None, callback=cli_args.iso_date, help="defaults to the run_id")) -> None:
    """Survivorship -> golden customers, customer–policy links, 360° profiles (golden/)."""
    from rich import print

    from pipelines.golden import build_golden

    result = build_golden(_run(run_id), date.fromisoformat(export_date or run_id))
    for table, rows in result.counts.items():
        print(f"{table:24} {rows:>10,}  {result.paths[table]}")


@app.command()
def publish(run_id: str = typer.Option(..., callback=cli_args.run_id, help="run folder to publish"),
            warehouse_dir: Path = typer.Option(None, help="defaults to data/warehouse")) -> None:
    """Publish the run's tables as the warehouse: DuckDB file + Parquet mirror, swapped atomically."""
    from rich import print

    from pipelines.golden import publish_warehouse

    print(f"published {publish_warehouse(_run(run_id), warehouse_dir)}")


@app.command("export-marketing")
def export_marketing(run_id: str = typer.Option(..., callback=cli_args.run_id,
                                                help="run folder to export from"),
                     export_date: str = typer.Option(None, callback=cli_args.iso_date, help="defaults to the run_id"),
                     export_dir: Path = typer.Option(None, help="defaults to data/export")) -> None:
    """Marketing file of consenting customers above the confidence threshold (Parquet, CSV, manifest)."""
    import json

    from rich import print

    from pipelines.golden import export_marketing as export

    path = export(_run(run_id), date.fromisoformat(export_date or run_id), export_dir)
    manifest = json.loads((path.parent / "manifest.json").read_text())
    print(f"{manifest['row_count']:,} customers (confidence >= {manifest['min_confidence']}) "
          f"-> {path.parent}")


@app.command()
def sql(command: str = typer.Option(None, "--command", "-c", help="run this SQL and exit"),
        warehouse: Path = typer.Option(None, help="DuckDB file; defaults to the published one"),
        mirror: bool = typer.Option(False, help="query the current Parquet mirror instead")) -> None:
    """A SQL shell on the published warehouse, read-only (the pinned DuckDB CLI, duckdb-cli)."""
    import subprocess

    from pipelines.golden.publish import sql_shell_command

    path = warehouse if mirror else cli_args.published_warehouse(warehouse)
    try:
        argv = sql_shell_command(path, mirror, command)
    except FileNotFoundError as problem:  # no mirror published, or no duckdb CLI installed
        raise cli_args.DataProblem(str(problem)) from None
    raise typer.Exit(subprocess.run(argv).returncode)


@app.command()
def lookup(customer_id: str = typer.Option(None, "--id", help="customer ID"),
           phone: str = typer.Option(None, help="phone number, any format"),
           email: str = typer.Option(None, help="e-mail address"),
           policy: str = typer.Option(None, help="policy number"),
           name: str = typer.Option(None, help="person or company name"),
           warehouse: Path = typer.Option(None, help="DuckDB file; defaults to the published one"),
           limit: int = typer.Option(10, min=1, max=1000, help="at most this many candidates")) -> None:
    """Print one customer's 360° view; several candidates, ranked, when the key is ambiguous."""
    from rich.console import Console

    from pipelines.golden.lookup import lookup as find
    from pipelines.golden.lookup_view import candidates_table, profile_table

    if sum(bool(key) for key in (customer_id, phone, email, policy, name)) != 1:
        raise typer.BadParameter("give exactly one of --id, --phone, --email, --policy, --name")
    console = Console()
    found = find(customer_id, phone=phone, email=email, policy=policy, name=name,
                 warehouse=cli_args.published_warehouse(warehouse), limit=limit)
    if not found:
        console.print("[yellow]no customer found[/yellow]")
        raise typer.Exit(1)
    if len(found) > 1:
        console.print(candidates_table(found))
        console.print("[dim]best candidate below; look it up by --id for another[/dim]")
    console.print(profile_table(found[0]))


@app.command("data-dictionary")
def data_dictionary(check: bool = typer.Option(False, help="fail if docs/ is out of date")) -> None:
    """Write docs/data_dictionary.md from schemas/warehouse.yaml (or --check it is up to date)."""
    from rich import print

    from pipelines.golden.dictionary import (
        DATA_DICTIONARY_FILE,
        data_dictionary_markdown,
        write_data_dictionary,
    )

    if check:
        current = DATA_DICTIONARY_FILE.read_text(encoding="utf-8") if DATA_DICTIONARY_FILE.exists() else ""
        if current != data_dictionary_markdown():
            print(f"[red]{DATA_DICTIONARY_FILE} is out of date: run `ucv data-dictionary`[/red]")
            raise typer.Exit(1)
        print(f"{DATA_DICTIONARY_FILE} is up to date")
        return
    print(f"wrote {write_data_dictionary()}")


@app.command("golden-accuracy")
def golden_accuracy(truth_dir: Path = typer.Option(..., exists=True, file_okay=False,
                                                   help="the generator's truth/ folder"),
                    run_id: str = typer.Option(None, callback=cli_args.run_id,
                                               help="a run folder; else the warehouse"),
                    warehouse: Path = typer.Option(None, help="DuckDB file or warehouse folder")
                    ) -> None:
    """Share of customers whose golden name, birth date and mobile phone equal the true values."""
    from rich import print

    from pipelines.golden import golden_accuracy as measure

    source = _run(run_id) if run_id else cli_args.published_warehouse(warehouse)
    print(measure(source, truth_dir))
