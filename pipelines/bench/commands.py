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
                   "pipeline ÷ Splink", "pipeline ÷ hand-written", "comparisons/record", "precision", "recall"):
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


@app.command("bench-incremental")
def bench_incremental_command(
    records: int = typer.Option(100_000, "--records", "-n", min=1,
                                help="Source records of night 1 (night 2 adds ~1 %, changes ~0.5 %)."),
    seed: int = typer.Option(42, min=0, help="Generator seed (exports are reused per size and seed)."),
    results_dir: Path = typer.Option(None, file_okay=False,
                                     help="Where <date>-incremental-<N>.json goes (default bench/results)."),
) -> None:
    """A full night against an incremental night on the same exports: seconds per stage and
    how far apart the results are (pairwise cluster agreement, records, IDs, weights)."""
    from rich.console import Console

    from pipelines.bench.incremental import bench_incremental
    from pipelines.bench.run import RESULTS_DIR, results_file
    from pipelines.clock import utc_now
    from pipelines.settings import data_root

    figures = bench_incremental(records, seed, data_root() / "bench")
    figures["date"] = utc_now().date().isoformat()
    out_dir = results_dir or RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    out = results_file(out_dir, f"{figures['date']}-incremental-{records}")
    out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    Console().print_json(json.dumps(figures))
    Console().print(f"results: {out}")


@app.command("bench-train")
def bench_train(
    records: Path = typer.Option(..., exists=True, dir_okay=False,
                                 help="staged source_records.parquet to train on"),
    seed: int = typer.Option(42, min=0, help="seed of the random sampling for u"),
    backend: list[str] = typer.Option(None, "--backend", "-b",
                                      help="Engine to train on (duckdb or spark; default the "
                                           "configured one). Repeat for both: the models and "
                                           "their clusters are compared too."),
    results_dir: Path = typer.Option(None, file_okay=False,
                                     help="Where train-<records>.json (or, with two backends, "
                                          "<date>-train-backends-<records>.json) goes "
                                          "(default bench/results)."),
) -> None:
    """Training cost: `ucv train` once on the given records; seconds, peak RSS, seconds per step."""
    from rich.console import Console

    from pipelines.bench.run import RESULTS_DIR, results_file
    from pipelines.resolve.backend import BACKENDS
    from pipelines.resolve.bench import bench_training

    engines = tuple(dict.fromkeys(backend or []))
    unknown = [e for e in engines if e not in BACKENDS]
    if unknown:
        raise typer.BadParameter(f"unknown backend {unknown[0]!r} (expected one of "
                                 f"{', '.join(BACKENDS)})", param_hint="--backend")
    if len(engines) > 1:
        from pipelines.bench.training import bench_training_backends

        path = bench_training_backends(records, seed, engines, results_dir or RESULTS_DIR)
        Console().print_json(path.read_text(encoding="utf-8"))
        Console().print(f"results: {path}")
        return
    figures = bench_training(records, seed=seed, backend=engines[0] if engines else None)
    out_dir = results_dir or RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    out = results_file(out_dir, f"train-{figures['records']}")
    out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    Console().print_json(json.dumps(figures))
    Console().print(f"results: {out}")


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


@app.command("bench-serve")
def bench_serve_command(
    records: int = typer.Option(1_000_000, "--records", "-n",
                                help="Use the warehouse `ucv bench --records N` left in data/bench."),
    warehouse: Path = typer.Option(None, help="Or load-test this published warehouse file."),
    requests: int = typer.Option(400, help="Requests per endpoint and concurrency level (bounded)."),
    concurrency: list[int] = typer.Option([1, 8], help="Client threads (repeat for several levels)."),
    seed: int = typer.Option(0, help="Seed drawing the stored records used as queries."),
    results_dir: Path = typer.Option(None, help="Where <date>-serve.json goes (default bench/results)."),
) -> None:
    """Load-test `ucv serve` on loopback: cold start, p50/p95/p99 per endpoint and concurrency."""
    from rich.console import Console
    from rich.table import Table

    from pipelines.bench.run import RESULTS_DIR, results_file
    from pipelines.bench.serve import bench_serve
    from pipelines.clock import utc_now
    from pipelines.settings import data_root

    target = warehouse or data_root() / "bench" / f"home-{records}" / "warehouse" / "ucv.duckdb"
    if not target.exists():
        raise typer.BadParameter(f"no warehouse at {target}: run `ucv bench --records {records}` "
                                 "first, or give --warehouse")
    console = Console()
    with console.status(f"starting ucv serve on {target} and load-testing it..."):
        figures = bench_serve(target, requests_per_endpoint=requests, concurrency=tuple(concurrency),
                              seed=seed)
    figures["date"] = utc_now().date().isoformat()
    out_dir = results_dir or RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    out = results_file(out_dir, f"{figures['date']}-serve")
    out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    table = Table(title=f"ucv serve on {target.name}: cold start {figures['cold_start_seconds']} s")
    for header in ("endpoint", "concurrency", "p50 ms", "p95 ms", "p99 ms", "req/s", "errors",
                   "client CPU ms/req"):
        table.add_column(header, justify="right")
    for endpoint, levels in figures["endpoints"].items():
        for level, r in levels.items():
            table.add_row(endpoint, level[1:], str(r["p50_ms"]), str(r["p95_ms"]), str(r["p99_ms"]),
                          str(r["throughput_rps"]), str(r["errors"]), str(r["client_cpu_ms_per_request"]))
    console.print(table)
    console.print(f"results: {out}")
