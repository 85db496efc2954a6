"""`bench_resolve(run)`: wall time and peak memory of predict + cluster on a run's staged records."""

from __future__ import annotations

from typing import Any

from pipelines.settings import RunPaths


def bench_resolve(run: RunPaths, models: dict | None = None) -> dict[str, Any]:
    """Resolve the run once under measurement; returns seconds, peak RSS and the resolve summary."""
    from pipelines.bench.resources import measure
    from pipelines.resolve.predict import predict_and_cluster

    with measure() as cost:
        result = predict_and_cluster(run, models)
    summary = result.summary
    return {
        "stage": "resolve",
        "records": summary["records"],
        "comparisons": summary["comparisons"],
        "comparisons_per_record": summary["comparisons_per_record"],
        "per_party_type": {p: {k: s[k] for k in ("records", "comparisons",
                                                 "comparisons_per_record", "links", "clusters",
                                                 "seconds")}
                           for p, s in summary["party_types"].items()},
        **cost.to_dict(),
    }
