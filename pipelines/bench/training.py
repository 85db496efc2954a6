"""`ucv bench-train --backend duckdb --backend spark`: training on each engine, same records and seed.

Reports per engine the seconds, peak memory and seconds per training step; then how far the two
models differ (m, u, match weight per level, the prior) and how far their clusters agree when both
resolve the same records on DuckDB (pairs clustered together by both / by either). Spark draws its
u sample with its own hash function (Splink's deterministic sampling), so u differs by sampling
noise; m comes from EM on the same blocked pairs.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pipelines.bench.agreement import cluster_agreement
from pipelines.clock import utc_now


def _weight(level: dict[str, Any]) -> float | None:
    m, u = level.get("m_probability"), level.get("u_probability")
    return math.log2(m / u) if m and u else None


def parameter_differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """How far two trained models of the same settings differ, level by level (null levels
    skipped): the largest absolute m and u differences, the largest relative u difference, the
    largest match-weight difference in bits (with the level it occurs at) and the prior ratio.
    Raises ValueError when the models do not have the same comparisons and levels."""
    rows: list[dict[str, Any]] = []
    if [c["output_column_name"] for c in a["comparisons"]] != \
            [c["output_column_name"] for c in b["comparisons"]]:
        raise ValueError("the models have different comparisons")
    for ca, cb in zip(a["comparisons"], b["comparisons"], strict=True):
        la, lb = ca["comparison_levels"], cb["comparison_levels"]
        if [x.get("label_for_charts") for x in la] != [x.get("label_for_charts") for x in lb]:
            raise ValueError(f"{ca['output_column_name']}: the models have different levels")
        for x, y in zip(la, lb, strict=True):
            if x.get("is_null_level"):
                continue
            row: dict[str, Any] = {"level": f"{ca['output_column_name']}: "
                                            f"{x.get('label_for_charts')}"}
            for key, short in (("m_probability", "m"), ("u_probability", "u")):
                if x.get(key) is not None and y.get(key) is not None:
                    row[short] = abs(x[key] - y[key])
            if x.get("u_probability") and y.get("u_probability"):
                row["u_relative"] = abs(x["u_probability"] / y["u_probability"] - 1)
            wa, wb = _weight(x), _weight(y)
            if wa is not None and wb is not None:
                row["weight_bits"] = abs(wa - wb)
            rows.append(row)

    def largest(key: str) -> dict[str, Any]:
        best = max((r for r in rows if key in r), key=lambda r: r[key], default=None)
        return {"value": round(best[key], 6), "level": best["level"]} if best else {}

    weights = sorted(r["weight_bits"] for r in rows if "weight_bits" in r)
    return {
        "levels": len(rows),
        "max_abs_m": largest("m"), "max_abs_u": largest("u"),
        "max_relative_u": largest("u_relative"), "max_weight_bits": largest("weight_bits"),
        "median_weight_bits": round(weights[len(weights) // 2], 6) if weights else None,
        "levels_over_1_bit": sum(1 for w in weights if w > 1.0),
        "prior_ratio": round(a["probability_two_random_records_match"]
                             / b["probability_two_random_records_match"], 6),
    }


def compare_training_backends(records_path: Path, seed: int = 42,
                              backends: tuple[str, ...] = ("duckdb", "spark")) -> dict[str, Any]:
    """Train on each engine under measurement, then compare the models and their clusters
    (both resolved on DuckDB, so only the training engine differs)."""
    import duckdb

    from pipelines.resolve.bench import bench_training
    from pipelines.resolve.predict import predict_and_cluster
    from pipelines.settings import RunPaths

    out: dict[str, Any] = {"records_path": str(records_path), "seed": seed, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
        root = Path(scratch)
        models: dict[str, dict[str, Path]] = {}
        for engine in backends:
            figures = bench_training(records_path, seed=seed, models_dir=root / engine,
                                     backend=engine)
            out["backends"][engine] = figures
            models[engine] = {p: root / engine / name for p, name in figures["models"].items()}
        if len(backends) < 2:
            return out
        first, second = backends[:2]
        out["parameter_differences"] = {
            party: parameter_differences(
                json.loads(models[first][party].read_text(encoding="utf-8")),
                json.loads(models[second][party].read_text(encoding="utf-8")))
            for party in models[first] if party in models[second]}
        clusters = {}
        for engine in (first, second):
            run = RunPaths.for_run(f"models-{engine}", base=root / "runs")
            run.staged_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy(records_path, run.staged_dir / "source_records.parquet")
            clusters[engine] = predict_and_cluster(run, models=models[engine]).clusters_path
        with duckdb.connect() as con:
            out["cluster_agreement"] = {
                "resolved_on": "duckdb", "first": first, "second": second,
                **cluster_agreement(con, clusters[first], clusters[second], labels=("first", "second"))}
    return out


def bench_training_backends(records_path: Path, seed: int, backends: tuple[str, ...],
                            results_dir: Path) -> Path:
    """Writes `bench/results/<date>-train-backends-<records>.json`."""
    from pipelines.bench.run import machine, results_file

    figures = compare_training_backends(records_path, seed, backends)
    today = utc_now().date().isoformat()
    records = next(iter(figures["backends"].values()))["records"]
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_file(results_dir, f"{today}-train-backends-{records}")
    path.write_text(json.dumps({"date": today, "machine": machine(), **figures}, indent=2)
                    + "\n", encoding="utf-8")
    return path
