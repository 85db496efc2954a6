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


def bench_training(records_path, seed: int = 42, models_dir=None,
                   backend: str | None = None) -> dict[str, Any]:
    """Train both models once under measurement (into a scratch folder unless one is given, on
    `backend`, default the configured one); returns seconds, peak RSS, records, the model files
    and the seconds of each training step per party type."""
    import json
    import tempfile
    from pathlib import Path

    from pipelines.bench.resources import measure
    from pipelines.resolve.backend import backend_name
    from pipelines.resolve.training import profile_path, report_path, train_models

    with tempfile.TemporaryDirectory() as scratch:
        target = Path(models_dir) if models_dir else Path(scratch)
        with measure() as cost:
            written = train_models(Path(records_path), seed=seed, models_dir=target,
                                   backend=backend)
        per_party = {}
        for party_type, path in written.items():
            fit = json.loads(profile_path(path).read_text(encoding="utf-8"))
            steps = _report_seconds(report_path(path))
            per_party[party_type] = {"records": fit["training_records"], "seconds_by_step": steps}
    return {"stage": "train", "backend": backend or backend_name(),
            "records": sum(p["records"] for p in per_party.values()),
            "models": {p: path.name for p, path in written.items()},
            "per_party_type": per_party, **cost.to_dict()}


def _report_seconds(report) -> dict[str, float]:
    """The training-cost table of a report (the only place step timings are kept)."""
    import re

    text = report.read_text(encoding="utf-8")
    section = text.split("<h2>Training cost</h2>", 1)[-1].split("<h2>", 1)[0]
    return {step: float(sec) for step, sec in
            re.findall(r"<tr><td>([a-z_]+)</td><td>([0-9.]+)</td></tr>", section)}
