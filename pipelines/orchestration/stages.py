"""The nightly run's stages as thin functions: the Airflow tasks and `ucv run` both call these.

Each stage takes the run id (the export date, ISO) and, for per-source stages, the source name;
it clears its own outputs from an earlier, possibly crashed, attempt, calls the stage package,
records timings/counts/peak memory in `run_state.json` and returns small counts (never personal
data), so what travels through Airflow XCom stays tiny. Heavy libraries load inside the bodies.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path
from typing import Any

from pipelines import settings
from pipelines.orchestration.run_state import (
    finish_run_state,
    read_run_state,
    record_stage,
    start_run_state,
)
from pipelines.settings import RunPaths
from pipelines.sql import quote_ident

# The stage packages' public functions this module calls.
STAGE_FUNCTIONS = {
    "pipelines.ingest": ["load_mappings", "extract_source", "validate_source",
                         "standardize_source", "combine_staged", "SourceRejected"],
    "pipelines.resolve": ["predict_and_cluster", "write_charts"],
    "pipelines.identify": ["assign_customer_ids"],
    "pipelines.golden": ["build_golden", "publish_warehouse", "export_marketing"],
}


def missing_prerequisites(required: dict[str, list[str]] = STAGE_FUNCTIONS) -> list[str]:
    """What a run still lacks: stage functions that do not import, trained models not on disk."""
    import importlib

    missing = []
    for module_name, names in required.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            missing.append(f"{module_name} ({exc})")
            continue
        missing += [f"{module_name}.{name}" for name in names if not hasattr(module, name)]
    if not any(m.startswith("pipelines.resolve") for m in missing):
        from pipelines.resolve.config import model_paths

        missing += [f"trained model {path}" for path in model_paths().values()
                    if not path.is_file()]
    return missing


class NothingLanded(FileNotFoundError):
    """No export files for the run's export date in the landing folder."""


def landing_dir_for(export_date: date) -> Path:
    return settings.landing_root() / export_date.isoformat()


def run_paths(run_id: str) -> RunPaths:
    return RunPaths.for_run(run_id)


def configured_sources() -> list[str]:
    """The source names configured in schemas/sources/*.yaml, in a stable order."""
    from pipelines.ingest import load_mappings

    return sorted(load_mappings())


def parquet_row_counts(folder: Path, names: list[str] | None = None) -> dict[str, int]:
    """Rows per Parquet file in `folder` (from the file footers, without reading the data)."""
    import pyarrow.parquet as pq

    files = [folder / f"{n}.parquet" for n in names] if names else sorted(folder.glob("*.parquet"))
    return {f.stem: pq.read_metadata(f).num_rows for f in files if f.exists()}


def _remove(*paths: Path) -> None:
    """Delete outputs an earlier attempt of a stage left behind (files or whole folders)."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _source_outputs(folder: Path, source: str) -> list[Path]:
    # <source>.parquet, its manifest, and temp files a crashed writer may have left beside them
    return [*folder.glob(f"{source}.*"), *folder.glob(f".{source}.*")]


def id_registry() -> Path:
    """The ID registry runs carry customer IDs forward from (seeded from a pre-registry warehouse)."""
    from pipelines.identify.registry import bootstrap_from_warehouse, registry_file

    registry = registry_file()
    bootstrap_from_warehouse(registry, settings.warehouse_file())
    return registry


def prepare(export_date: date, *, logical_date: str | None = None,
            landing_dir: Path | None = None, orchestrator: str = "ucv",
            airflow_run_id: str | None = None) -> list[str]:
    """Start the run folder afresh for an export date; return the configured source names.

    Rerunning a date replaces everything under data/runs/<export date>/; customer IDs come from
    the ID registry, which no rerun rolls back.
    """
    landing = Path(landing_dir) if landing_dir else landing_dir_for(export_date)
    run = run_paths(export_date.isoformat())
    run.root.mkdir(parents=True, exist_ok=True)
    _remove(*run.root.iterdir())
    run.ensure()
    start_run_state(run, logical_date=logical_date, export_date=export_date.isoformat(),
                    landing_dir=landing, orchestrator=orchestrator, airflow_run_id=airflow_run_id)
    with record_stage(run, "prepare") as counts:
        landed = ([p for p in landing.iterdir() if p.is_file() and not p.name.startswith(".")]
                  if landing.is_dir() else [])  # not the erasure sidecars
        if not landed:
            raise NothingLanded(f"no exports landed in {landing} for export date {export_date}")
        sources = configured_sources()
        counts.update(landed_files=len(landed), sources=len(sources))
    return sources


def _landing(run: RunPaths) -> Path:
    return Path(read_run_state(run)["landing_dir"])


def extract(run_id: str, source: str) -> str:
    """Landed files of one source -> raw/<source>.parquet (all text, with lineage columns)."""
    from pipelines.ingest import extract_source, load_mappings

    run = run_paths(run_id)
    with record_stage(run, f"extract.{source}") as counts:
        _remove(*_source_outputs(run.raw_dir, source))
        result = extract_source(load_mappings()[source], _landing(run), run)
        counts.update(rows_read=result.rows_read, malformed_rows=result.malformed_rows,
                      erased_rows=result.erased_rows, erased_records=result.erased_records,
                      redacted_rows=result.redacted_rows,
                      files=len(result.files))
    return source


def validate(run_id: str, source: str) -> str:
    """raw/<source> -> accepted/ + quarantine/; raises SourceRejected when the source fails."""
    from pipelines.ingest import load_mappings, validate_source
    from pipelines.ingest.run import previous_row_count

    run = run_paths(run_id)
    with record_stage(run, f"validate.{source}") as counts:
        _remove(*_source_outputs(run.accepted_dir, source),
                *_source_outputs(run.quarantine_dir, source))
        result = validate_source(load_mappings()[source], run, previous_row_count(run, source))
        counts.update(rows_read=result.rows_read, rows_accepted=result.rows_accepted,
                      rows_quarantined=result.rows_quarantined,
                      rows_redacted=result.rows_redacted,
                      failed_checks=dict(result.failed_checks))
    return source


def standardize(run_id: str, sources: list[str], incremental: bool | None = None
                ) -> dict[str, Any]:
    """accepted/<source> -> staged/<source>, all sources -> staged/source_records, and the
    ingest accounting report/ingest_counts.json (read = accepted + quarantined = staged).

    Incremental (`incremental`, else operations.yaml): rows unchanged since the base night keep
    that night's staged records (pipelines/standardize/reuse.py); every night writes the row
    fingerprints the next one compares with."""
    from pipelines.ingest import combine_staged, load_mappings
    from pipelines.orchestration.incremental import base_night, incremental_setting, record_summary
    from pipelines.standardize.reuse import standardize_incremental

    run = run_paths(run_id)
    with record_stage(run, "standardize") as counts:
        _remove(run.staged_dir)
        run.staged_dir.mkdir(parents=True)
        mappings = load_mappings()
        sources = sorted(sources)
        on = incremental_setting(incremental)
        base = base_night(run_id) if on else None
        reuse = {}
        for source in sources:
            _, stats = standardize_incremental(mappings[source], run, base if on else None)
            reuse[source] = stats
        combine_staged(run, sources)
        counts.update(parquet_row_counts(run.staged_dir))
        write_ingest_counts(run, sources)
        counts["incremental"] = int(on)
        if on:
            counts["rows_reused"] = sum(s.rows_reused for s in reuse.values())
            counts["rows_standardized"] = sum(s.rows_standardized for s in reuse.values())
            record_summary(run, "standardize", {
                "base_run": base.run_id if base else None,
                "sources": {n: {"rows": s.rows, "rows_reused": s.rows_reused,
                                "rows_standardized": s.rows_standardized, "why_not": s.reason}
                            for n, s in reuse.items()}})
    return counts


def write_ingest_counts(run: RunPaths, sources: list[str]) -> Path:
    """report/ingest_counts.json from what the per-source tasks recorded, as `ingest()` writes it.

    Extract and validate ran as separate (mapped) tasks, so their results are read back from the
    raw manifests and the run state rather than passed in memory.
    """
    import json

    from pipelines.ingest import ExtractResult, ValidationResult
    from pipelines.ingest.run import count_records, count_rows, write_counts

    recorded = read_run_state(run)["stages"]
    extracted, validated = {}, {}
    for source in sources:
        manifest = json.loads((run.raw_dir / f"{source}.json").read_text(encoding="utf-8"))
        extracted[source] = ExtractResult(
            source=source, raw_path=run.raw_dir / f"{source}.parquet", files=manifest["files"],
            rows_per_file=manifest["rows_per_file"], columns=manifest["columns"],
            malformed_rows=manifest["malformed_rows"], erased_rows=manifest.get("erased_rows", 0),
            erased_records=manifest.get("erased_records", 0),
            redacted_rows=manifest.get("redacted_rows", 0))
        v = recorded[f"validate.{source}"]["counts"]
        validated[source] = ValidationResult(
            source=source, rows_read=v["rows_read"], rows_accepted=v["rows_accepted"],
            rows_quarantined=v["rows_quarantined"], failed_checks=v["failed_checks"],
            rows_redacted=v.get("rows_redacted", 0))
    # a row's own records against accepted rows; records nested in rows (`records:`) beside them
    staged = {s: run.staged_dir / f"{s}.parquet" for s in sources}
    return write_counts(run, extracted, validated, count_rows(staged), [], count_records(staged))


def resolve(run_id: str, incremental: bool | None = None) -> dict[str, Any]:
    """staged/source_records -> resolved/match_pairs + clusters (Splink), plus model charts.

    Incremental (`incremental`, else operations.yaml): the base night's pairs among unchanged
    records are kept, only pairs touching new or changed records are scored
    (pipelines/resolve/incremental.py); clustering runs over all of them as on a full night."""
    from pipelines.orchestration.incremental import base_night, incremental_setting, record_summary
    from pipelines.resolve import predict_and_cluster, write_charts

    run = run_paths(run_id)
    with record_stage(run, "resolve") as counts:
        _remove(run.resolved_dir)
        run.resolved_dir.mkdir(parents=True)
        on = incremental_setting(incremental)
        result = predict_and_cluster(run, base=base_night(run_id) if on else None,
                                     incremental=on)
        write_charts(run)
        counts.update(resolve_counts(run))
        counts["incremental"] = int(on)
        if on:
            parties = result.summary["party_types"]
            counts["pairs_reused"] = sum(p.get("incremental", {}).get("pairs_reused", 0)
                                         for p in parties.values())
            record_summary(run, "resolve", {p: v.get("incremental") for p, v in parties.items()})
    return counts


def resolve_counts(run: RunPaths) -> dict[str, Any]:
    """Pairs, clusters (not the records in them) and the thresholds the run scored against."""
    import json

    rows = parquet_row_counts(run.resolved_dir)
    summary_file = run.resolved_dir / "resolve_summary.json"
    parties = (json.loads(summary_file.read_text(encoding="utf-8")).get("party_types", {})
               if summary_file.exists() else {})
    counts: dict[str, Any] = {"match_pairs": rows.get("match_pairs"),
                              "clustered_records": rows.get("clusters"),
                              "clusters": sum(p.get("clusters", 0) for p in parties.values())}
    for party, p in parties.items():
        counts[f"{party}_match_threshold"] = (p.get("thresholds") or {}).get("match")
    return counts


def identify(run_id: str) -> dict[str, int]:
    """Clusters + the ID registry's live state -> stable customer IDs and ID history."""
    from pipelines.identify import assign_customer_ids

    run = run_paths(run_id)
    with record_stage(run, "identify") as counts:
        _remove(run.identified_dir)
        run.identified_dir.mkdir(parents=True)
        assign_customer_ids(run, id_registry())
        counts.update(parquet_row_counts(run.identified_dir))
    return counts


def golden(run_id: str, incremental: bool | None = None) -> dict[str, int]:
    """Survivorship -> golden customers, policy links, 360° profiles.

    Incremental (`incremental`, else operations.yaml): customers nothing happened to keep the base
    night's golden record (pipelines/golden/incremental.py)."""
    from pipelines.golden import build_golden
    from pipelines.orchestration.incremental import base_night, incremental_setting, record_summary

    run = run_paths(run_id)
    with record_stage(run, "golden") as counts:
        _remove(run.golden_dir)
        run.golden_dir.mkdir(parents=True)
        on = incremental_setting(incremental)
        result = build_golden(run, date.fromisoformat(run_id), incremental=on,
                              base=base_night(run_id) if on else None)
        counts.update(parquet_row_counts(run.golden_dir))
        counts["incremental"] = int(on)
        if result.reuse is not None:
            counts["customers_reused"] = result.reuse.customers_reused
            record_summary(run, "golden", result.reuse.as_dict())
    return counts


def publish(run_id: str, replace_live: bool = False) -> dict[str, int]:
    """Register the run's IDs and swap its tables in as the live warehouse (atomically).

    A run for an older date than the live warehouse's only registers its IDs (a historic rebuild),
    unless `replace_live`; counts are read back from the live warehouse.
    """
    from pipelines.golden import publish_warehouse
    from pipelines.identify.registry import commit_run, replaces_live

    run = run_paths(run_id)
    registry = id_registry()
    with record_stage(run, "publish") as counts:
        live = replaces_live(registry, run_id, replace_live)
        if live:
            publish_warehouse(run, before_swap=lambda: commit_run(registry, run, live=True))
        else:
            commit_run(registry, run, live=False)
        if settings.warehouse_file().exists():
            counts.update(warehouse_counts(settings.warehouse_file()))
        counts["replaced_live"] = int(live)
    return counts


def export(run_id: str) -> dict[str, Any]:
    """The marketing export of top-confidence, consenting customers for the export date."""
    from pipelines.golden import export_marketing

    run = run_paths(run_id)
    with record_stage(run, "export") as counts:
        written = export_marketing(run, date.fromisoformat(run_id))
        counts.update(_describe_export(written))
        manifest = Path(str(counts.get("path", ""))).parent / "manifest.json"
        if manifest.is_file():
            import json

            counts["min_confidence"] = json.loads(manifest.read_text(encoding="utf-8")).get(
                "min_confidence")
    return counts


def published_asset_extra(run_id: str, asset: str, counts: dict[str, Any]) -> dict[str, Any]:
    """What an Airflow Asset event says about what was published: run, where, how many rows."""
    extra: dict[str, Any] = {"run_id": run_id}
    if asset == "ucv_marketing_export":
        path = Path(str(counts.get("path", "")))
        extra.update(path=str(path), rows=counts.get("rows"),
                     manifest=str(path.parent / "manifest.json"))
    elif asset == "ucv_parquet_mirror":
        from pipelines.golden import current_mirror

        # the immutable version folder, resolved now: a consumer reading it later never mixes
        # two publishes (parquet/current would move under it)
        extra["path"] = str(current_mirror())
    else:
        extra.update(path=str(settings.warehouse_file()), customers=counts.get("customers"),
                     source_records=counts.get("source_records"))
    if asset != "ucv_marketing_export":
        # an older date rebuilt without replacing the live night: the Asset did not change
        extra["replaced_live"] = bool(counts.get("replaced_live", 1))
    return extra


def report(run_id: str) -> str:
    """Apply retention, write the run report (HTML + Markdown, Data Docs link) and mark the run
    a success; returns the Markdown report's path."""
    from pipelines.orchestration.data_docs import link_data_docs
    from pipelines.orchestration.report import write_run_report
    from pipelines.orchestration.retention import apply_retention

    run = run_paths(run_id)
    with record_stage(run, "report") as counts:
        # the run got here, so it succeeded: older nights beyond the kept ones go now
        counts.update({f"retention_removed_{k}": v
                       for k, v in apply_retention(current_run_id=run_id).items()})
        link_data_docs(run.report_dir)
        path = write_run_report(run)
        counts["report_bytes"] = path.stat().st_size
    finish_run_state(run, "success")
    write_run_report(run)  # once more, so the report shows the final status and its own timing
    return str(path)


def report_failure(run_id: str) -> Path | None:
    """Write the run report of a failed run (which stage failed, and why); never raises."""
    from pipelines.orchestration.report import write_run_report

    run = run_paths(run_id)
    try:
        return write_run_report(run) if run.root.exists() else None
    except Exception:  # the report must not hide the failure it reports
        return None


def warehouse_counts(warehouse: Path) -> dict[str, int]:
    """Rows per table of a published DuckDB warehouse, opened read-only."""
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
            "ORDER BY table_name").fetchall()]
        return {t: con.execute(f"SELECT count(*) FROM {quote_ident(t)}").fetchall()[0][0] for t in tables}


def _describe_export(written: Any) -> dict[str, Any]:
    """Counts from whatever export_marketing returns: a path to the file, or a dict of counts."""
    if isinstance(written, dict):
        return {k: v for k, v in written.items() if isinstance(v, int | float | str)}
    if isinstance(written, str | Path) and Path(written).exists():
        path = Path(written)
        out: dict[str, Any] = {"path": str(path)}
        if path.suffix == ".parquet":
            out["rows"] = parquet_row_counts(path.parent, [path.stem]).get(path.stem, 0)
        return out
    return {}
