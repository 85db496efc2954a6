"""`ucv identify`, `overrides-check`, `review-list`, `review-decide`, `resolve`, `resolve-bench`, `erase`.

Stable customer IDs for a run, the steward workflow (queue -> decision -> override file), and
real-time resolution of one record against the published warehouse.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pipelines import cli_args

app = typer.Typer()

DECISION_HELP = "must_link (same customer) or cannot_link (different customers)"


def _overrides_file(path: Path | None) -> Path:
    from pipelines.identify.overrides import DEFAULT_OVERRIDES_FILE

    return path or DEFAULT_OVERRIDES_FILE


@app.command()
def identify(
    run_id: str = typer.Option(..., callback=cli_args.run_id, help="run (export date) whose resolved clusters get IDs"),
    registry: Path = typer.Option(None, help="ID registry to carry IDs forward from (default data/registry/ids.duckdb)"),
    overrides: Path = typer.Option(None, help="steward override file (default stewardship/overrides.csv)"),
    runs_dir: Path = typer.Option(None, help="runs folder (default data/runs)"),
) -> None:
    """Carry customer IDs forward, apply steward overrides, build the review queue."""
    from rich.console import Console
    from rich.table import Table

    from pipelines.identify import assign_customer_ids
    from pipelines.orchestration.stages import id_registry

    console = Console()
    run = cli_args.existing_run(run_id, runs_dir)
    with console.status(f"assigning customer IDs for {run_id}..."):
        result = assign_customer_ids(run, registry or id_registry(),
                                     overrides_file=_overrides_file(overrides))
    table = Table(title=f"identify {run_id}")
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, value in [("records", result.n_records), ("customers", result.n_customers),
                         ("IDs kept", result.n_kept), *result.events.items(),
                         ("review queue rows", result.n_review)]:
        table.add_row(str(label), f"{value:,}")
    console.print(table)
    for problem in result.overrides["unknown_record_ids"] + result.overrides["cross_party_type"]:
        console.print(f"[yellow]override not applied:[/] {problem}")
    console.print(f"outputs in {run.identified_dir}")


@app.command("overrides-check")
def overrides_check(
    overrides: Path = typer.Option(None, exists=True, dir_okay=False,
                                   help="override file (default stewardship/overrides.csv)"),
    warehouse: Path = typer.Option(None, help="check record ids against this warehouse (default: current)"),
) -> None:
    """Validate the override file: malformed rows, contradictions, and record ids nobody knows."""
    import duckdb
    from rich.console import Console

    from pipelines import settings
    from pipelines.identify.overrides import OverridesInvalid, load_overrides

    console = Console()
    path = _overrides_file(overrides)
    try:
        decisions = load_overrides(path)
    except OverridesInvalid as err:
        for problem in err.problems:
            console.print(f"[red]{problem}[/]")
        raise typer.Exit(1) from err
    console.print(f"{path}: {len(decisions)} decisions "
                  f"({sum(o.decision == 'must_link' for o in decisions)} must_link, "
                  f"{sum(o.decision == 'cannot_link' for o in decisions)} cannot_link)")
    wh = warehouse or settings.warehouse_file()
    if not decisions or not wh.exists():
        return
    ids = sorted({rid for o in decisions for rid in o.pair})
    con = duckdb.connect(str(wh), read_only=True)
    try:
        known = {r[0] for r in con.execute(
            "select source_record_id from source_records where source_record_id in "
            "(select unnest(?::varchar[]))", [ids]).fetchall()}
    finally:
        con.close()
    unknown = [rid for rid in ids if rid not in known]
    for rid in unknown:
        console.print(f"[yellow]unknown record id (not in {wh.name}):[/] {rid}")
    if unknown:
        raise typer.Exit(1)


@app.command("review-list")
def review_list(
    run_id: str = typer.Option(..., callback=cli_args.run_id, help="run whose review queue to show"),
    limit: int = typer.Option(20, min=1, help="rows to show, most uncertain first"),
    reason: str = typer.Option(None, help="only this reason (borderline_pair, weak_cluster_link, ...)"),
    runs_dir: Path = typer.Option(None, help="runs folder (default data/runs)"),
) -> None:
    """Show the pairs stewards should decide, with the per-comparison match weights."""
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    queue = pd.read_parquet(cli_args.existing_file(cli_args.existing_run(run_id, runs_dir)
                                                   .identified_dir / "review_queue.parquet",
                                                   "review queue"))
    if reason:
        queue = queue[queue["reason"] == reason]
    table = Table(title=f"review queue {run_id}: {len(queue):,} rows")
    for column in ("review_id", "reason", "pair", "customers", "weight", "evidence (match weight per comparison)"):
        table.add_column(column)
    for row in queue.head(limit).itertuples():
        evidence = json.loads(row.evidence) if isinstance(row.evidence, str) else {}
        shown = ", ".join(f"{k} {v['match_weight']:+.1f}" for k, v in evidence.items()
                          if v.get("match_weight") is not None)
        table.add_row(row.review_id, row.reason, f"{row.source_record_id_l}\n{row.source_record_id_r}",
                      f"{row.customer_id_l}\n{row.customer_id_r}", f"{row.match_weight:.2f}", shown)
    Console().print(table)


@app.command("review-decide")
def review_decide(
    decision: str = typer.Option(..., help=DECISION_HELP),
    by: str = typer.Option(..., "--by", help="who decides (name or user id)"),
    reason: str = typer.Option(..., help="why: the evidence the steward relied on"),
    pair: tuple[str, str] | None = typer.Option(None, help="the two source_record_ids"),
    review_id: str = typer.Option(None, help="a review_queue row instead of --pair"),
    run_id: str = typer.Option(None, callback=cli_args.run_id, help="run whose queue holds --review-id"),
    at: str = typer.Option(None, help="decision time, ISO (default: now, UTC)"),
    overrides: Path = typer.Option(None, help="override file (default stewardship/overrides.csv)"),
    runs_dir: Path = typer.Option(None, help="runs folder (default data/runs)"),
) -> None:
    """Record a steward decision as an override; it applies from the next run on, every run."""
    import pandas as pd
    from rich.console import Console

    from pipelines.clock import utc_now
    from pipelines.identify.overrides import OverridesInvalid, append_override, utc_timestamp

    console = Console()
    left, right = pair or (None, None)
    if review_id:
        if not run_id:
            raise typer.BadParameter("--review-id needs --run-id")
        queue = pd.read_parquet(cli_args.existing_file(cli_args.existing_run(run_id, runs_dir)
                                                       .identified_dir / "review_queue.parquet",
                                                       "review queue"))
        match = queue[queue["review_id"] == review_id]
        if match.empty:
            raise typer.BadParameter(f"no review row {review_id} in run {run_id}")
        left, right = match.iloc[0]["source_record_id_l"], match.iloc[0]["source_record_id_r"]
    if not left or not right:
        raise typer.BadParameter("give --pair LEFT RIGHT or --review-id")
    path = _overrides_file(overrides)
    try:
        written = append_override(path, left, right, decision, by, at or utc_timestamp(utc_now()), reason)
    except OverridesInvalid as err:
        for problem in err.problems:
            console.print(f"[red]{problem}[/]")
        raise typer.Exit(1) from err
    console.print(f"{written.decision} {written.source_record_id_l} / {written.source_record_id_r} "
                  f"by {written.decided_by} -> {path}")


@app.command("resolve")
def resolve_command(
    source: str = typer.Option(..., help="source system whose shape the record has (sales, claims, ...)"),
    record: str = typer.Option(None, help="the record as a JSON object"),
    file: Path = typer.Option(None, dir_okay=False, help="a JSON file holding the record instead of --record"),
    top_k: int = typer.Option(5, min=1, max=100, help="how many customers to return"),
    warehouse: Path = typer.Option(None, help="warehouse to resolve against (default: the published one)"),
) -> None:
    """Is this record someone we already know? Best existing customers with probability and evidence."""
    from rich.console import Console
    from rich.table import Table

    from pipelines.identify.realtime import resolve_record

    if (record is None) == (file is None):
        raise typer.BadParameter("give exactly one of --record or --file")
    payload = cli_args.json_record(record) if record is not None else cli_args.json_record_file(file)
    warehouse = cli_args.published_warehouse(warehouse)
    candidates = resolve_record(payload, source, warehouse=warehouse, top_k=top_k)
    console = Console()
    if not candidates:
        console.print("no existing customer found: this is a new customer")
        return
    table = Table(title=f"best existing customers for one {source} record")
    for column in ("customer_id", "probability", "weight", "matched record", "evidence"):
        table.add_column(column)
    for c in candidates:
        evidence = ", ".join(f"{k} {v:+.1f}" for k, v in c.evidence.items())
        table.add_row(c.customer_id, f"{c.match_probability:.4f}", f"{c.match_weight:.2f}",
                      c.source_record_id, evidence)
    console.print(table)


@app.command("resolve-bench")
def resolve_bench(
    warehouse: Path = typer.Option(None, help="warehouse to query (default: the published one)"),
    queries: int = typer.Option(1000, min=1, help="timed queries (after 20 warm-up queries)"),
    seed: int = typer.Option(0, min=0, help="seed drawing the stored records used as queries"),
) -> None:
    """Real-time resolution latency in a warm process: p50/p95/p99 per query, and the hit rate."""
    from rich.console import Console

    from pipelines.identify.bench import bench_realtime

    console = Console()
    with console.status("loading the warehouse and models, then timing queries..."):
        figures = bench_realtime(cli_args.published_warehouse(warehouse), n_queries=queries, seed=seed)
    console.print_json(json.dumps(figures))


@app.command()
def erase(
    customer_id: list[str] = typer.Option(None, "--customer-id", help="erase this customer (all its records)"),
    source_record: list[str] = typer.Option(None, "--source-record", help="erase this source record only (<source>:<key>)"),
    national_id: list[str] = typer.Option(None, "--national-id", help="erase every customer holding this national ID"),
    email: list[str] = typer.Option(None, "--email", help="erase every customer holding this e-mail"),
    phone: list[str] = typer.Option(None, "--phone", help="erase every customer holding this phone number"),
) -> None:
    """Remove a person for good: warehouse, mirrors, run folders, exports, landed files; tombstone."""
    from rich.console import Console
    from rich.table import Table

    from pipelines.identify.erase import ErasureRequest, NothingToErase
    from pipelines.identify.erase import erase as run_erasure

    console = Console()
    request = ErasureRequest(customer_ids=customer_id or [], source_records=source_record or [],
                             emails=email or [], phones=phone or [],
                             national_ids=national_id or [])
    if request.is_empty():
        console.print("[red]name at least one of --customer-id, --source-record, --national-id, "
                      "--email, --phone[/]")
        raise typer.Exit(2)
    try:
        report = run_erasure(request)
    except NothingToErase as exc:
        console.print(f"[yellow]{exc}[/]")
        raise typer.Exit(1) from exc
    table = Table(title=f"erasure {report.erasure}")
    table.add_column("location")
    table.add_column("action")
    table.add_column("rows removed", justify="right")
    for location in report.locations:
        table.add_row(location["location"], location["action"],
                      f"{location['rows_removed']:,}" if "rows_removed" in location else "")
    console.print(table)
    console.print(f"{report.records_erased:,} source records erased; customers erased: "
                  f"{', '.join(report.customers_erased) or 'none'}; customers touched: "
                  f"{report.customers_touched:,}; tombstones added: {report.tombstones_added:,}; "
                  f"steward decisions removed: {report.overrides_removed:,}")
    console.print(f"report: {report.report_file}")
