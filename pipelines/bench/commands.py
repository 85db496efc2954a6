"""`ucv bench`: whole-pipeline benchmarks with per-stage cost and the ratio to bare Splink."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer()


@app.command()
def bench(
    records: list[int] = typer.Option([100_000, 1_000_000], "--records", "-n", min=1,
                                      help="Source records per size (repeat for several sizes)."),
    seed: int = typer.Option(42, min=0, help="Generator seed (exports are reused per size and seed)."),
    results_dir: Path = typer.Option(None, file_okay=False, help="Where <date>.json goes (default bench/results)."),
) -> None:
    """Run the whole pipeline at each size; per-stage time, peak memory, counts, bare-Splink ratio."""
    from rich.console import Console
    from rich.table import Table

    from pipelines.bench.run import RESULTS_DIR, summary_table
    from pipelines.bench.run import bench as run_bench

    out = run_bench(sorted(records), seed=seed, results_dir=results_dir or RESULTS_DIR)
    results = json.loads(out.read_text(encoding="utf-8"))
    table = Table(title=f"ucv bench — {results['machine']['cores']} cores, "
                        f"{results['machine']['memory_gib']} GiB")
    for header in ("size", "source records", "pipeline s", "peak GiB", "bare Splink s",
                   "pipeline ÷ Splink", "comparisons/record", "precision", "recall"):
        table.add_column(header, justify="right")
    for row in summary_table(results):
        table.add_row(*row)
    console = Console()
    console.print(table)
    for size, r in results["sizes"].items():
        stages = Table(title=f"stages at {int(size):,} requested records")
        for header in ("stage", "seconds", "peak RSS MiB"):
            stages.add_column(header, justify="right")
        for name, s in r["stages"].items():
            stages.add_row(name, str(s["seconds"]), str(s["peak_rss_mib"]))
        console.print(stages)
    console.print(f"results: {out}")


@app.command("bench-backends")
def bench_backends_command(
    records: list[int] = typer.Option([100_000], "--records", "-n", min=1,
                                      help="Source records per size (repeat for several sizes)."),
    seed: int = typer.Option(42, min=0, help="Generator seed (exports are reused per size and seed)."),
    results_dir: Path = typer.Option(None, file_okay=False, help="Where <date>-backends.json goes (default bench/results)."),
) -> None:
    """Resolve the same records on DuckDB and on Spark (local mode): time, memory, agreement."""
    from rich.console import Console

    from pipelines.bench.backends import bench_backends
    from pipelines.bench.run import RESULTS_DIR

    out = bench_backends(sorted(records), seed=seed, results_dir=results_dir or RESULTS_DIR)
    Console().print_json(out.read_text(encoding="utf-8"))
    Console().print(f"results: {out}")
