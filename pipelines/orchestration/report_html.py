"""The run report people look at: report/run_report.html, one self-contained page (Jinja2,
inline SVG, no network) with tonight's figures beside last night's and the last 30 nights' trend.

Built from what the run wrote (run_state.json, summaries), the warehouse it published, and the
figures the previous published night's report kept (report/night_figures.json). Aggregates only:
no value from a customer record reaches the page (tests/test_run_report.py scans for them).
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from pipelines import settings
from pipelines.orchestration import svg
from pipelines.orchestration.report_figures import (
    CLUSTER_SIZE_BUCKETS,
    CONFIDENCE_EDGES,
    FIGURES_FILE,
    WEIGHT_EDGES,
    NightFigures,
    elapsed_stage_seconds,
    latest_run_id,
    load_figures,
    night_figures,
    save_figures,
    trend,
)
from pipelines.orchestration.run_state import read_run_state
from pipelines.settings import RunPaths

TEMPLATE = "run_report.html.j2"
TREND_SERIES = [("source_records", "source records"), ("quarantined", "quarantined rows"),
                ("customers", "customers"), ("match_pairs", "match pairs"),
                ("review_queue", "review queue"), ("id_events", "ID events"),
                ("elapsed_stage_seconds", "stage seconds (mapped tasks in parallel)")]


def render_html_report(run: RunPaths) -> str:
    """The HTML page for a run (see the module docstring)."""
    import jinja2

    state = read_run_state(run)
    stages = state.get("stages", {})
    export_counts = (stages.get("export") or {}).get("counts", {})
    min_confidence = export_counts.get("min_confidence")
    thresholds = (min_confidence,) if isinstance(min_confidence, int | float) else ()
    published = _this_runs_warehouse(run)
    live = _readable(settings.warehouse_file())
    tonight = night_figures(published, thresholds)
    if tonight is None:  # nothing published: what the run folder itself shows
        tonight = NightFigures(run_id=run.run_id, quarantine=_quarantine_from_run(run))
    else:
        save_figures(tonight, run.report_dir / FIGURES_FILE)
    history = trend(published or live)
    last = _last_night(history, run, thresholds)
    resolve_summary = _json(run.resolved_dir / "resolve_summary.json")
    identify_summary = _json(run.identified_dir / "identify_summary.json")
    ingest = _json(run.report_dir / "ingest_counts.json")

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["n"] = svg._number
    return env.get_template(TEMPLATE).render(
        run_id=run.run_id, state=state, published=published is not None,
        wall_seconds=_wall_seconds(state),
        elapsed_stage_seconds=elapsed_stage_seconds(
            {k: v.get("seconds") for k, v in stages.items()}),
        tiles=_tiles(tonight, last, ingest, export_counts, _previous_counts(history, run)),
        figures=_figures(tonight, last, resolve_summary, min_confidence),
        trend=_trend(history), stages=stages, ingest=ingest,
        parties=(resolve_summary or {}).get("party_types", {}),
        identify=identify_summary or {}, export=export_counts,
        links=_links(run), last_run_id=last.run_id if last else None)


def _last_night(history: list[dict[str, Any]], run: RunPaths,
                thresholds: tuple[float, ...]) -> NightFigures | None:
    """The figures of the latest published night before this one, as its report kept them."""
    earlier = [row for row in history
               if str(row.get("export_date") or row.get("run_id")) < run.run_id]
    if not earlier:
        return None
    previous = RunPaths.for_run(str(earlier[-1]["run_id"]))
    figures = load_figures(previous.report_dir / FIGURES_FILE)
    if figures is not None and any(t not in figures.confidence_at_or_above for t in thresholds):
        figures.confidence_at_or_above = {}  # another export threshold then: not comparable
    return figures


def _readable(path: Path) -> Path | None:
    """`path` if it is a DuckDB file this process can open read-only (a report of a failed
    night must not fail on whatever the warehouse folder holds)."""
    import duckdb

    if not path.is_file():
        return None
    try:
        with duckdb.connect(str(path), read_only=True):
            return path
    except duckdb.Error:
        return None


def _this_runs_warehouse(run: RunPaths) -> Path | None:
    """The published warehouse if this run published it (its latest `runs` row), else None."""
    import duckdb

    path = settings.warehouse_file()
    if not path.is_file():
        return None
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            return path if latest_run_id(con) == run.run_id else None
    except duckdb.Error:
        return None


def _quarantine_from_run(run: RunPaths) -> dict[tuple[str, str], int]:
    import duckdb

    files = sorted(run.quarantine_dir.glob("*.parquet")) if run.quarantine_dir.is_dir() else []
    if not files:
        return {}
    with duckdb.connect() as con:
        return {(s, r): n for s, r, n in con.execute(
            "SELECT source_system, rule, count(*) FROM (SELECT source_system, "
            "unnest(failed_checks) AS rule FROM read_parquet(?)) GROUP BY ALL",
            [[str(f) for f in files]]).fetchall()}


def _json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _wall_seconds(state: dict[str, Any]) -> float | None:
    try:
        start = datetime.fromisoformat(state["started_at"])
        end = datetime.fromisoformat(state["finished_at"])
    except (KeyError, TypeError, ValueError):
        return None
    return (end - start).total_seconds()


def _delta(now: float | int | None, before: float | int | None) -> dict[str, Any]:
    return {"now": now, "before": before,
            "change": None if now is None or before is None else now - before}


def _previous_counts(history: list[dict[str, Any]], run: RunPaths) -> dict[str, Any]:
    """Stage counts of the night before this run, from the `runs` table."""
    earlier = [row for row in history if row.get("run_id") != run.run_id]
    counts = earlier[-1].get("stage_counts") if earlier else None
    return (json.loads(counts) if isinstance(counts, str) else counts) or {}


def _exported_rows(run_id: str | None) -> int | None:
    """Rows of a night's marketing export, from its manifest (the export runs after publish,
    so the `runs` table does not hold them)."""
    manifest = settings.export_dir() / str(run_id) / "manifest.json"
    if not run_id or not manifest.is_file():
        return None
    return json.loads(manifest.read_text(encoding="utf-8")).get("row_count")


def _tiles(tonight: NightFigures, last: NightFigures | None, ingest: dict | None,
           export: dict[str, Any], previous: dict[str, Any]) -> list[dict[str, Any]]:
    sources = (ingest or {}).get("sources", {}).values()
    read = sum(s.get("rows_read", 0) for s in sources)
    quarantined = sum(s.get("rows_quarantined", 0) for s in sources)
    prev = last or NightFigures(run_id=None)
    read_before = sum((c or {}).get("rows_read", 0) for name, c in previous.items()
                      if name.startswith("validate.")) or None
    tiles = [
        {"label": "rows read", **_delta(read or None, read_before)},
        {"label": "rows quarantined", **_delta(quarantined, sum(prev.quarantine.values())
                                                if last else None)},
        {"label": "customers", **_delta(tonight.customers or None, prev.customers or None)},
        {"label": "match pairs", **_delta(tonight.match_pairs or None,
                                          prev.match_pairs or None)},
        {"label": "review queue", **_delta(sum(tonight.review_queue.values()) or None,
                                           sum(prev.review_queue.values()) if last else None)},
        {"label": "exported customers", **_delta(export.get("rows"),
                                                 _exported_rows(last.run_id if last else None))},
    ]
    return tiles


def _figures(tonight: NightFigures, last: NightFigures | None, resolve_summary: dict | None,
             min_confidence: float | None) -> list[dict[str, Any]]:
    prev = last or NightFigures(run_id=None)
    has_last = last is not None
    keys = sorted(set(tonight.quarantine) | set(prev.quarantine),
                  key=lambda k: (-tonight.quarantine.get(k, 0), k))
    quarantine_rows = [(f"{s} · {r}", tonight.quarantine.get((s, r), 0),
                        prev.quarantine.get((s, r), 0) if has_last else None) for s, r in keys]
    match_threshold = next(iter(
        (p.get("thresholds") or {}).get("match")
        for p in ((resolve_summary or {}).get("party_types") or {}).values()), None)
    events = sorted(set(tonight.id_events) | set(prev.id_events))
    reasons = sorted(set(tonight.review_queue) | set(prev.review_queue))
    above_now = tonight.confidence_at_or_above.get(min_confidence or -1)
    above_before = prev.confidence_at_or_above.get(min_confidence or -1) if has_last else None
    return [
        {"title": "Quarantine by source and rule", "id": "quarantine",
         "svg": svg.bars(quarantine_rows), **_delta(sum(tonight.quarantine.values()),
                                                     sum(prev.quarantine.values())
                                                     if has_last else None),
         "unit": "quarantined rows (a row failing two rules counts under each)"},
        {"title": "Match-weight distribution", "id": "match_weights",
         "svg": svg.histogram(WEIGHT_EDGES, tonight.weight_counts or [0] * (len(WEIGHT_EDGES) - 1),
                              prev.weight_counts if has_last and prev.weight_counts else None,
                              match_threshold, f"match threshold {match_threshold}"
                              if match_threshold is not None else ""),
         **_delta(tonight.match_pairs or None, prev.match_pairs if has_last else None),
         "unit": "scored pairs above the review floor"},
        {"title": "Cluster sizes (source records per customer)", "id": "cluster_sizes",
         "svg": svg.bars([(f"{b} record{'s' if b != '1' else ''}",
                           tonight.cluster_sizes.get(b, 0),
                           prev.cluster_sizes.get(b, 0) if has_last else None)
                          for b in CLUSTER_SIZE_BUCKETS]),
         **_delta(tonight.customers or None, prev.customers if has_last else None),
         "unit": "customers"},
        {"title": "Confidence vs the export threshold", "id": "confidence",
         "svg": svg.histogram(CONFIDENCE_EDGES,
                              tonight.confidence_counts or [0] * (len(CONFIDENCE_EDGES) - 1),
                              prev.confidence_counts if has_last and prev.confidence_counts
                              else None, min_confidence,
                              f"export threshold {min_confidence}" if min_confidence else ""),
         **_delta(above_now, above_before), "unit": "customers at or above the export threshold"},
        {"title": "ID events", "id": "id_events",
         "svg": svg.bars([(e, tonight.id_events.get(e, 0),
                           prev.id_events.get(e, 0) if has_last else None) for e in events]),
         **_delta(sum(tonight.id_events.values()), sum(prev.id_events.values())
                  if has_last else None), "unit": "events in customer_id_history"},
        {"title": "Review queue by reason", "id": "review_queue",
         "svg": svg.bars([(r, tonight.review_queue.get(r, 0),
                           prev.review_queue.get(r, 0) if has_last else None) for r in reasons]),
         **_delta(sum(tonight.review_queue.values()), sum(prev.review_queue.values())
                  if has_last else None), "unit": "pairs for stewards"},
    ]


def _trend(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    labels = [str(row.get("export_date") or row.get("run_id")) for row in history]
    series = []
    for key, title in TREND_SERIES:
        values = [row.get(key) for row in history]
        values = [float(v) if isinstance(v, int | float) else None for v in values]
        series.append({"title": title, "svg": svg.trend(labels, values) if labels else "",
                       **_delta(values[-1] if values else None,
                                values[-2] if len(values) > 1 else None)})
    return [{"nights": len(history), "first": labels[0] if labels else None,
             "series": series}] if history else []


def _links(run: RunPaths) -> list[dict[str, str]]:
    """Other files of the run worth opening, relative to the report folder."""
    found = [("Markdown report", run.report_dir / "run_report.md"),
             ("run state (JSON)", run.root / "run_state.json"),
             ("ingest accounting (JSON)", run.report_dir / "ingest_counts.json"),
             ("Great Expectations Data Docs (the rules each source is validated with)",
              run.report_dir / "data_docs.html")]
    charts = sorted(p for p in (run.report_dir / "charts").glob("*.html")) \
        if (run.report_dir / "charts").is_dir() else []
    found += [(f"Splink chart: {p.stem.replace('_', ' ')}", p) for p in charts]
    return [{"label": label, "href": os.path.relpath(path, run.report_dir)}
            for label, path in found if path.exists()]
