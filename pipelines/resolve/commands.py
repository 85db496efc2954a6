"""`ucv train`, `ucv link`, `ucv evaluate`, `ucv resolve-charts`: entity resolution commands."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pipelines import cli_args

app = typer.Typer()


def _run(run_id: str, runs_dir: Path | None):
    from pipelines.settings import RunPaths

    return RunPaths.for_run(run_id, base=runs_dir)


@app.command()
def train(
    records: Path = typer.Option(..., exists=True, dir_okay=False,
                                 help="canonical source_records.parquet to train on"),
    seed: int = typer.Option(42, min=0, help="seed of the random sampling for u"),
    models_dir: Path = typer.Option(None, help="where to write models (default schemas/models, "
                                               "or <UCV_CONFIG_DIR>/models)"),
    truth: Path = typer.Option(None, help="folder with ground_truth.parquet: report precision "
                                          "and recall of the new model"),
    overrides: Path = typer.Option(None, help="steward decisions to report agreement with "
                                              "(default stewardship/overrides.csv)"),
    expected_records: int = typer.Option(None, min=1, help="records nightly runs will resolve, "
                                         "when training on a sample: blocking rules are judged at "
                                         "that size (training.blocking.expected_records)"),
) -> None:
    """Build and train person and organization models from the data (a deliberate step)."""
    from rich.console import Console

    from pipelines.identify.overrides import DEFAULT_OVERRIDES_FILE
    from pipelines.resolve import train_models
    from pipelines.resolve.training import TrainingError, report_path
    from pipelines.settings import CONFIG_DIR, MODELS_DIR, SCHEMAS_DIR

    console = Console()
    try:
        with console.status("profiling fields, training Splink models (u sampling, EM)..."):
            written = train_models(records, seed=seed, models_dir=models_dir or MODELS_DIR,
                                   truth_dir=truth, overrides_path=overrides or
                                   DEFAULT_OVERRIDES_FILE, expected_records=expected_records)
    except TrainingError as error:
        console.print(f"[red]ucv train:[/] {error}", soft_wrap=True)
        raise typer.Exit(1) from None
    for party_type, path in written.items():
        console.print(f"{party_type}: [bold]{path}[/] (report: {report_path(path).name})")
    # a configuration folder's resolution.yaml needs only these lines (merged over the project's)
    target = (CONFIG_DIR / "resolution.yaml") if CONFIG_DIR else SCHEMAS_DIR / "resolution.yaml"
    base = target.parent
    console.print(f"\nTo use them, put these lines in {target}:\n", soft_wrap=True)
    lines = ["models:"] + [
        f"  {p}: {path.relative_to(base) if path.is_relative_to(base) else path}"
        for p, path in written.items()]
    typer.echo("\n".join(lines))  # plain: lines to copy, never wrapped


@app.command()
def link(
    run_id: str = typer.Option(..., callback=cli_args.run_id, help="run whose staged source records to resolve"),
    runs_dir: Path = typer.Option(None, help="runs folder (default data/runs)"),
    charts: bool = typer.Option(True, help="also write Splink charts to the run report"),
) -> None:
    """Score candidate pairs and cluster them with the trained models (no retraining)."""
    from rich.console import Console
    from rich.table import Table

    from pipelines.resolve import predict_and_cluster, write_charts

    console = Console()
    run = cli_args.existing_run(run_id, runs_dir)
    with console.status(f"resolving {run.run_id}..."):
        result = predict_and_cluster(run)
        chart_files = write_charts(run) if charts else []
    table = Table(title=f"Resolution of run {run.run_id}")
    for column in ("party", "records", "compared", "per rec.", "kept", "links", "clusters", "s"):
        table.add_column(column, justify="right")
    for party_type, s in result.summary["party_types"].items():
        table.add_row(party_type, f"{s['records']:,}", f"{s['comparisons']:,}",
                      f"{s['comparisons_per_record']:.2f}", f"{s['pairs_kept']:,}",
                      f"{s['links']:,}", f"{s['clusters']:,}", f"{sum(s['seconds'].values()):.1f}")
    console.print(table)
    console.print(f"wrote {result.match_pairs_path}, {result.clusters_path}, {result.summary_path}"
                  + (f" and {len(chart_files)} charts" if chart_files else ""))


@app.command()
def evaluate(
    run_id: str = typer.Option(..., callback=cli_args.run_id, help="run whose clusters to evaluate"),
    truth: Path = typer.Option(..., exists=True, file_okay=False, help="folder with ground_truth.parquet (the generator's truth/)"),
    runs_dir: Path = typer.Option(None, help="runs folder (default data/runs)"),
    as_json: bool = typer.Option(False, "--json", help="print the full result as JSON"),
    ceiling: bool = typer.Option(False, "--ceiling", help="also the evidence ceiling: the recall "
                                 "an oracle weighting of the same comparison levels reaches at "
                                 "precision 0.995 (is a shortfall the weights' or the evidence's?)"),
) -> None:
    """Pairwise and B-cubed precision/recall, false merges and splits against ground truth."""
    from rich.console import Console

    from pipelines.resolve import evaluate as evaluate_clusters
    from pipelines.resolve import evaluation_table
    from pipelines.resolve.config import PARTY_TYPES
    from pipelines.resolve.evaluate import kind_table, write_evaluation
    from pipelines.resolve.predict import CLUSTERS_FILE, MATCH_PAIRS_FILE, load_model

    run = cli_args.existing_run(run_id, runs_dir)
    records = run.staged_dir / "source_records.parquet"
    models = None
    if records.is_file():  # blocking recall needs the staged records and the models' rules
        try:
            models = {party: load_model(party) for party in PARTY_TYPES}
        except FileNotFoundError as missing:
            Console().print(f"blocking recall not measured: {missing}")
    result = evaluate_clusters(run.resolved_dir / CLUSTERS_FILE,
                               run.resolved_dir / MATCH_PAIRS_FILE, truth,
                               records_path=records, models=models, ceiling=ceiling)
    path = write_evaluation(result, run.report_dir)
    console = Console()
    if as_json:
        console.print_json(json.dumps(result))
        return
    console.print(evaluation_table(result))
    console.print(kind_table(result))
    console.print("hard negatives merged: " + ", ".join(
        f"{kind} {v['merged']}/{v['entity_pairs']}"
        for kind, v in result["hard_negative_groups"].items()))
    if "evidence_ceiling" in result:
        top = result["evidence_ceiling"]
        console.print("evidence ceiling (oracle weights of the same levels, false merges undone): "
                      + ", ".join(f"P {s['pairwise_precision']:.4f} R {s['pairwise_recall']:.4f}"
                                  for s in top["sweep"])
                      + f"; recall at precision {top['precision_floor']}: {top['recall_at_floor']}")
    console.print(f"wrote {path}")
