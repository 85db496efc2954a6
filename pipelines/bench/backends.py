"""`ucv bench-backends`: resolution on DuckDB and on Spark (local mode) on the same staged records.

Generates (or reuses) the bench exports of one size, ingests them once, then runs the resolve
stage with each engine and reports seconds, peak memory, comparisons and how far the two agree
(pairs clustered together by both / by either). Spark pays a JVM start-up and per-job overhead that
only a cluster amortises; the figure to read is the per-comparison cost, for sizing a cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from pipelines.bench.agreement import cluster_agreement
from pipelines.bench.run import EXPORT_DATE, RESULTS_DIR, generated_exports, machine, results_file
from pipelines.clock import utc_now
from pipelines.settings import RunPaths, data_root


def compare_backends(records: int, seed: int = 42, work: Path | None = None) -> dict[str, Any]:
    """Resolve the same staged records on both engines; returns cost and agreement figures."""
    import duckdb

    from pipelines.bench.resources import measure
    from pipelines.ingest import ingest
    from pipelines.resolve import predict_and_cluster

    work = work or data_root() / "bench"
    gen_dir, _ = generated_exports(records, seed, work)
    home = work / f"backends-{records}"
    shutil.rmtree(home, ignore_errors=True)
    base = home / "runs"
    staged = RunPaths.for_run("duckdb", base=base)
    ingest(gen_dir / "landing", staged)
    results: dict[str, Any] = {}
    clusters: dict[str, Path] = {}
    for engine in ("duckdb", "spark"):
        run = staged if engine == "duckdb" else RunPaths.for_run(engine, base=base)
        if run is not staged:
            run.staged_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy(staged.staged_dir / "source_records.parquet", run.staged_dir)
        os.environ["UCV_RESOLUTION_BACKEND"] = engine
        try:
            with measure() as cost:
                result = predict_and_cluster(run)
        finally:
            os.environ.pop("UCV_RESOLUTION_BACKEND", None)
        clusters[engine] = result.clusters_path
        comparisons = result.summary["comparisons"]
        results[engine] = {**cost.to_dict(), "comparisons": comparisons,
                           "microseconds_per_comparison":
                               round(1e6 * cost.seconds / comparisons, 1) if comparisons else None,
                           "per_party": {p: v.get("seconds") for p, v in
                                         result.summary["party_types"].items()}}
    con = duckdb.connect()
    results["agreement"] = cluster_agreement(con, clusters["duckdb"], clusters["spark"],
                                             labels=("duckdb", "spark"))
    results["source_records"] = int(con.execute(
        "SELECT count(*) FROM read_parquet(?)",
        [str(staged.staged_dir / "source_records.parquet")]).fetchall()[0][0])
    return results


def bench_backends(sizes: list[int], seed: int = 42, results_dir: Path = RESULTS_DIR) -> Path:
    """Every size in its own process; writes `bench/results/<date>-backends.json`."""
    import subprocess

    today = utc_now().date().isoformat()
    out: dict[str, Any] = {"date": today, "seed": seed, "export_date": EXPORT_DATE.isoformat(),
                           "machine": machine(), "sizes": {}}
    results_dir.mkdir(parents=True, exist_ok=True)
    for records in sizes:
        part = results_dir / f".backends-{records}.json"
        subprocess.run([sys.executable, "-m", "pipelines.bench.backends", str(records),
                        str(seed), str(part)], check=True)
        out["sizes"][str(records)] = json.loads(part.read_text(encoding="utf-8"))
        part.unlink()
    path = results_file(results_dir, f"{today}-backends")
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":  # one size in a fresh process: records seed out.json
    n, s, target = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    target.write_text(json.dumps(compare_backends(n, s), indent=2), encoding="utf-8")
