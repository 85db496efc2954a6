"""`ucv ingest|extract|validate|standardize`: the ingest stage from the command line."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines import cli_args

app = typer.Typer()

LANDING = typer.Option(..., "--landing", exists=True, file_okay=False, help="Folder with the landed export files.")
RUN_ID = typer.Option(..., "--run-id", callback=cli_args.run_id, help="Run id (the export date, ISO).")
SOURCES = typer.Option(None, "--source", help="Only these sources (repeatable).")


def _fail(exc: Exception) -> None:
    from rich.console import Console

    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
    raise typer.Exit(code=1)


def _run(run_id: str):
    from pipelines.settings import RunPaths

    return RunPaths.for_run(run_id).ensure()


def _mappings(sources: list[str] | None):
    from pipelines.ingest import load_mappings

    mappings = load_mappings()
    unknown = [s for s in sources or [] if s not in mappings]
    if unknown:
        raise KeyError(f"unknown source(s): {', '.join(unknown)} (known: {', '.join(mappings)})")
    return {n: m for n, m in mappings.items() if not sources or n in sources}


def _known_errors() -> tuple[type[Exception], ...]:
    from pipelines.ingest import AccountingError, MappingError, SourceRejected

    return (MappingError, SourceRejected, AccountingError, FileNotFoundError, KeyError)


@app.command()
def ingest(landing: Path = LANDING, run_id: str = RUN_ID, source: list[str] | None = SOURCES) -> None:
    """Extract, validate and standardize every source into the run folder."""
    from rich.console import Console
    from rich.table import Table

    from pipelines.ingest import ingest as run_ingest

    try:
        summary = run_ingest(landing, _run(run_id), _mappings(source))
    except _known_errors() as exc:
        _fail(exc)
        return
    table = Table(title=f"ingest {run_id}")
    for column in ("source", "files", "read", "accepted", "quarantined", "staged", "top failed checks"):
        table.add_column(column, justify="right" if column in ("read", "accepted", "quarantined",
                                                               "staged") else "left")
    for c in summary.sources.values():
        top = ", ".join(f"{k}: {v}" for k, v in sorted(c.failed_checks.items(), key=lambda kv: -kv[1])[:3])
        table.add_row(c.source, ", ".join(c.files), str(c.rows_read), str(c.rows_accepted),
                      str(c.rows_quarantined), str(c.rows_staged), top)
    console = Console()
    console.print(table)
    console.print(f"source records: {summary.source_records_path}\ncounts: {summary.counts_path}")


@app.command()
def extract(landing: Path = LANDING, run_id: str = RUN_ID, source: list[str] | None = SOURCES) -> None:
    """Landed files -> raw/<source>.parquet (text values + lineage)."""
    from pipelines.ingest import extract_source

    try:
        run = _run(run_id)
        for name, mapping in _mappings(source).items():
            result = extract_source(mapping, landing, run)
            typer.echo(f"{name}: {result.rows_read} rows from {', '.join(result.files)} "
                       f"({result.malformed_rows} malformed) -> {result.raw_path}")
    except _known_errors() as exc:
        _fail(exc)


@app.command()
def validate(run_id: str = RUN_ID, source: list[str] | None = SOURCES) -> None:
    """raw -> accepted + quarantine, with the source's Great Expectations suite."""
    from pipelines.ingest import validate_source
    from pipelines.ingest.run import previous_row_count

    cli_args.existing_run(run_id)
    try:
        run = _run(run_id)
        for name, mapping in _mappings(source).items():
            r = validate_source(mapping, run, previous_row_count(run, name))
            typer.echo(f"{name}: read {r.rows_read}, accepted {r.rows_accepted}, "
                       f"quarantined {r.rows_quarantined} {r.failed_checks or ''}")
    except _known_errors() as exc:
        _fail(exc)


@app.command()
def standardize(run_id: str = RUN_ID, source: list[str] | None = SOURCES) -> None:
    """accepted -> staged/<source>.parquet (canonical schema) and staged/source_records.parquet."""
    from pipelines.ingest import combine_staged, standardize_source
    from pipelines.standardize.records import staged_path

    cli_args.existing_run(run_id)
    try:
        run = _run(run_id)
        mappings = _mappings(source)
        for name, mapping in mappings.items():
            typer.echo(f"{name}: {standardize_source(mapping, run)}")
        # the combined file holds every source standardized for the run, not only those just
        # redone: `--source sales` used to leave it with the sales records alone, and the later
        # stages would have lost every other source's records without a word
        configured = list(_mappings(None)) if source else list(mappings)
        staged = [n for n in configured if staged_path(run, n).exists()]
        typer.echo(f"combined: {combine_staged(run, staged)}")
        if len(staged) < len(configured):
            typer.echo("not standardized yet, so not in the combined file: "
                       + ", ".join(n for n in configured if n not in staged))
    except _known_errors() as exc:
        _fail(exc)
