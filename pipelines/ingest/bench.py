"""Benchmark of the ingest stage: wall time per step and peak memory (RSS of the process tree).

Not a timed test: `bench_ingest` is called by the bench helper (`ucv bench`) on a generated
landing folder; the target is 1M source records in <= 60 s and <= 3 GiB peak.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.bench.resources import measure
from pipelines.ingest.extract import extract_source
from pipelines.ingest.mapping import load_mappings
from pipelines.ingest.run import combine_staged, count_rows, write_counts
from pipelines.ingest.validate import validate_source
from pipelines.settings import RunPaths


def bench_ingest(landing_dir: Path, run: RunPaths) -> dict:
    """Extract, validate and standardize every source once; seconds and peak MiB per step."""
    from pipelines.standardize.records import standardize_source

    mappings = load_mappings()
    run.ensure()
    steps: dict[str, dict] = {}
    with measure() as total:
        with measure() as m:
            extracted = {n: extract_source(mp, landing_dir, run) for n, mp in mappings.items()}
        steps["extract"] = m.to_dict()
        with measure() as m:
            validated = {n: validate_source(mp, run) for n, mp in mappings.items()}
        steps["validate"] = m.to_dict()
        with measure() as m:
            staged_paths = {n: standardize_source(mp, run) for n, mp in mappings.items()}
            combine_staged(run, list(mappings))
        steps["standardize"] = m.to_dict()
    write_counts(run, extracted, validated, count_rows(staged_paths), [])  # asserts accounting
    return {
        "rows_read": sum(e.rows_read for e in extracted.values()),
        "rows_accepted": sum(v.rows_accepted for v in validated.values()),
        "rows_per_source": {n: e.rows_read for n, e in extracted.items()},
        "steps": steps,
        "total": total.to_dict(),
    }
