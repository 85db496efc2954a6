"""`ucv bench`: the whole pipeline at given sizes, per-stage cost, and the ratio to bare Splink.

For each size (source records) it generates exports once (reused afterwards, keyed by size and
seed), lands them in a data root of its own (`data/bench/home-<N>`), runs one first-night pipeline
run, reads per-stage seconds / peak RSS / counts from the run state, runs bare Splink on the same
standardized records, scores the result against the ground truth, and writes
`bench/results/<date>.json`. Each size runs in a fresh process so one size's memory cannot
flatter or burden the next.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

from pipelines.clock import utc_now
from pipelines.settings import PROJECT_ROOT, data_root

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
EXPORT_DATE = date(2026, 11, 22)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import psutil

    return {"cores": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform()}


def generated_exports(records: int, seed: int, work: Path) -> tuple[Path, dict[str, Any]]:
    """Exports of about `records` source records, generated once per (size, seed) and reused."""
    from pipelines.generate import generate_exports, records_to_customers

    out = work / f"gen-{records}-seed{seed}"
    summary_file = out / "truth" / "generation_summary.json"
    if not summary_file.exists():
        shutil.rmtree(out, ignore_errors=True)
        generate_exports(out, customers=records_to_customers(records), seed=seed,
                         export_date=EXPORT_DATE)
    return out, json.loads(summary_file.read_text(encoding="utf-8"))


def bench_one_size(records: int, seed: int = 42, work: Path | None = None) -> dict[str, Any]:
    """Run the pipeline once on about `records` source records; returns the measured figures."""
    from pipelines.bench.baseline import bare_splink
    from pipelines.bench.handwritten import handwritten_splink
    from pipelines.bench.resources import measure
    from pipelines.orchestration.run import run_pipeline
    from pipelines.orchestration.run_state import read_run_state
    from pipelines.resolve import evaluate

    work = work or data_root() / "bench"
    gen_dir, generation = generated_exports(records, seed, work)

    # a data root of its own: a first night, with no previous warehouse
    home = work / f"home-{records}"
    shutil.rmtree(home, ignore_errors=True)
    landing = home / "landing" / EXPORT_DATE.isoformat()
    landing.mkdir(parents=True)
    for f in sorted((gen_dir / "landing").iterdir()):
        os.link(f, landing / f.name)
    previous_home = os.environ.get("UCV_HOME")
    os.environ["UCV_HOME"] = str(home)
    try:
        with measure() as pipeline_cost:
            run = run_pipeline(EXPORT_DATE, stage_processes=True)  # as `ucv run`
        state = read_run_state(run)
        staged = run.staged_dir / "source_records.parquet"
        baseline = bare_splink(staged)
        quality = evaluate(run.resolved_dir / "clusters.parquet",
                           run.resolved_dir / "match_pairs.parquet", gen_dir / "truth")
    finally:
        if previous_home is None:
            os.environ.pop("UCV_HOME", None)
        else:
            os.environ["UCV_HOME"] = previous_home

    # the same exports through a hand-written Splink script (issue 19's other yardstick); it trains
    # its models, which a nightly run does not, so its time is reported with and without training
    handwritten = handwritten_splink(gen_dir / "landing", work / f"handwritten-{records}", seed=seed,
                                     truth_dir=gen_dir / "truth")
    hand_seconds = handwritten["seconds"]
    resolve_summary = json.loads((run.resolved_dir / "resolve_summary.json").read_text())
    stage_rows = {name: {"seconds": s.get("seconds"), "peak_rss_mib": s.get("peak_rss_mib"),
                         "counts": s.get("counts", {})}
                  for name, s in state.get("stages", {}).items()}
    return {
        "records_requested": records,
        "source_records": resolve_summary["records"],
        "generation": {k: generation.get(k) for k in ("customers", "records_per_source",
                                                      "total_records", "elapsed_seconds")},
        "pipeline": pipeline_cost.to_dict(),
        "stages": stage_rows,
        "resolve": {"comparisons": resolve_summary["comparisons"],
                    "comparisons_per_record": resolve_summary["comparisons_per_record"]},
        "bare_splink": baseline,
        "pipeline_over_bare_splink": round(pipeline_cost.seconds / baseline["seconds"], 2)
        if baseline["seconds"] else None,
        "handwritten_splink": handwritten,
        "pipeline_over_handwritten": round(pipeline_cost.seconds / hand_seconds["total"], 2)
        if hand_seconds.get("total") else None,
        "pipeline_over_handwritten_without_training": round(
            pipeline_cost.seconds / (hand_seconds["total"] - hand_seconds.get("train", 0)), 2)
        if hand_seconds.get("total", 0) - hand_seconds.get("train", 0) > 0 else None,
        "quality": quality,
    }


def results_file(results_dir: Path, stem: str) -> Path:
    """`<stem>.json` in `results_dir`, or `<stem>-2.json`, `-3`, ... when a run of the same day
    already wrote one: results are committed as evidence, a second run never overwrites them."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path, n = results_dir / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = results_dir / f"{stem}-{n}.json"
    return path


def bench(sizes: list[int], seed: int = 42, results_dir: Path = RESULTS_DIR,
          today: date | None = None) -> Path:
    """Benchmark every size in its own process; writes and returns `bench/results/<date>.json`."""
    results: dict[str, Any] = {"date": (today or utc_now().date()).isoformat(), "seed": seed,
                               "machine": machine(), "sizes": {}}
    results_dir.mkdir(parents=True, exist_ok=True)
    for records in sizes:
        part = results_dir / f".size-{records}.json"
        subprocess.run([sys.executable, "-m", "pipelines.bench.run", str(records), str(seed),
                        str(part)], check=True)
        results["sizes"][str(records)] = json.loads(part.read_text(encoding="utf-8"))
        part.unlink()
    out = results_file(results_dir, results["date"])
    out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    return out


def summary_table(results: dict[str, Any]) -> list[list[str]]:
    """Rows of the README table: one per size, the figures the targets are stated in."""
    rows = []
    for size, r in results["sizes"].items():
        q = r.get("quality", {}).get("overall", r.get("quality", {}))
        rows.append([f"{int(size):,}", f"{r['source_records']:,}",
                     f"{r['pipeline']['seconds']:.0f}", f"{r['pipeline']['peak_rss_mib'] / 1024:.2f}",
                     f"{r['bare_splink']['seconds']:.0f}", f"{r['pipeline_over_bare_splink']}",
                     f"{r.get('pipeline_over_handwritten', '')}",
                     f"{r['resolve']['comparisons_per_record']}",
                     str(q.get("pairwise_precision", q.get("precision", ""))),
                     str(q.get("pairwise_recall", q.get("recall", "")))])
    return rows


if __name__ == "__main__":  # one size in a fresh process: records seed out.json
    n, s, target = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    target.write_text(json.dumps(bench_one_size(n, s), indent=2, default=str), encoding="utf-8")
