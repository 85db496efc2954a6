"""The run report's figures, computed in DuckDB from a published warehouse: aggregates only
(counts per source, rule, bin, event, reason), never a value from a customer record.

Each night's report keeps its figures (report/night_figures.json), so the next night's report
shows last night's value beside tonight's for every figure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.sql import quote_ident

# Shared bin edges, so tonight's and last night's histograms compare bin by bin.
WEIGHT_EDGES = [float(w) for w in range(-10, 71, 4)]  # match weights, clamped into the ends
CONFIDENCE_EDGES = [i / 20 for i in range(21)]
CLUSTER_SIZE_BUCKETS = ["1", "2", "3", "4", "5", "6-10", "11+"]
TREND_NIGHTS = 30


@dataclass
class NightFigures:
    """One night's figures (tonight's or last night's)."""

    run_id: str | None
    quarantine: dict[tuple[str, str], int] = field(default_factory=dict)  # (source, rule) -> rows
    weight_counts: list[int] = field(default_factory=list)
    cluster_sizes: dict[str, int] = field(default_factory=dict)  # bucket -> customers
    confidence_counts: list[int] = field(default_factory=list)
    confidence_at_or_above: dict[float, int] = field(default_factory=dict)
    id_events: dict[str, int] = field(default_factory=dict)
    review_queue: dict[str, int] = field(default_factory=dict)  # reason -> pairs
    customers: int = 0
    match_pairs: int = 0


FIGURES_FILE = "night_figures.json"


def save_figures(night: NightFigures, path: Path) -> Path:
    """Keep a night's figures beside its report, so the next night can show them beside its own."""
    from pipelines import fileio

    payload = {**night.__dict__,
               "quarantine": [[s, r, n] for (s, r), n in sorted(night.quarantine.items())],
               "confidence_at_or_above": [[t, n] for t, n in night.confidence_at_or_above.items()]}
    return fileio.write_text(path, json.dumps(payload, indent=1) + "\n")


def load_figures(path: Path) -> NightFigures | None:
    if not path.is_file():
        return None
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["quarantine"] = {(s, r): n for s, r, n in raw.get("quarantine", [])}
    raw["confidence_at_or_above"] = {t: n for t, n in raw.get("confidence_at_or_above", [])}
    known = NightFigures.__dataclass_fields__
    return NightFigures(**{k: v for k, v in raw.items() if k in known})


def latest_run_id(con) -> str | None:
    rows = con.execute("SELECT run_id FROM runs ORDER BY publish_sequence DESC LIMIT 1").fetchall()
    return rows[0][0] if rows else None


def night_figures(warehouse: Path | None, thresholds: tuple[float, ...] = ()) -> NightFigures | None:
    """Figures of the night a warehouse holds; None when there is no warehouse (a first night)."""
    import duckdb

    if warehouse is None or not Path(warehouse).is_file():
        return None
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables").fetchall()}
        night = NightFigures(run_id=latest_run_id(con) if "runs" in tables else None)
        if "quarantine" in tables:
            night.quarantine = {(s, r): n for s, r, n in con.execute(
                "SELECT source_system, rule, count(*) FROM (SELECT source_system, "
                "unnest(failed_checks) AS rule FROM quarantine) GROUP BY ALL").fetchall()}
        if "match_pairs" in tables:
            night.weight_counts = _binned(con, "SELECT match_weight AS v FROM match_pairs",
                                          WEIGHT_EDGES)
            night.match_pairs = con.execute("SELECT count(*) FROM match_pairs").fetchall()[0][0]
        if "customers" in tables:
            night.customers = con.execute("SELECT count(*) FROM customers").fetchall()[0][0]
            night.cluster_sizes = dict(con.execute("""
                SELECT CASE WHEN n_source_records <= 5 THEN CAST(n_source_records AS VARCHAR)
                            WHEN n_source_records <= 10 THEN '6-10' ELSE '11+' END, count(*)
                  FROM customers GROUP BY ALL""").fetchall())
            night.confidence_counts = _binned(con, "SELECT confidence AS v FROM customers",
                                              CONFIDENCE_EDGES)
            for threshold in thresholds:
                night.confidence_at_or_above[threshold] = con.execute(
                    "SELECT count(*) FROM customers WHERE confidence >= ?",
                    [threshold]).fetchall()[0][0]
        if "customer_id_history" in tables and night.run_id:
            night.id_events = dict(con.execute(
                "SELECT event, count(*) FROM customer_id_history WHERE run_id = ? GROUP BY ALL",
                [night.run_id]).fetchall())
        if "review_queue" in tables:
            night.review_queue = dict(con.execute(
                "SELECT reason, count(*) FROM review_queue GROUP BY ALL").fetchall())
    return night


def _binned(con, values_sql: str, edges: list[float]) -> list[int]:
    """Counts per bin of `edges` (values outside go to the first or last bin), set-based."""
    lo, step, n = edges[0], edges[1] - edges[0], len(edges) - 1
    rows = dict(con.execute(
        f"SELECT least(greatest(CAST(floor((v - ?) / ?) AS INTEGER), 0), ?) AS bin, count(*) "
        f"FROM ({values_sql}) WHERE v IS NOT NULL GROUP BY ALL", [lo, step, n - 1]).fetchall())
    return [rows.get(i, 0) for i in range(n)]


def trend(warehouse: Path | None, nights: int = TREND_NIGHTS) -> list[dict[str, Any]]:
    """The last `nights` published runs from the `runs` table, oldest first."""
    import duckdb

    if warehouse is None or not Path(warehouse).is_file():
        return []
    with duckdb.connect(str(warehouse), read_only=True) as con:
        if not con.execute("SELECT count(*) FROM information_schema.tables "
                           "WHERE table_name = 'runs'").fetchall()[0][0]:
            return []
        # timestamps with a time zone as text: fetching them as Python objects needs pytz
        select = ", ".join(
            f"CAST({quote_ident(name)} AS VARCHAR) AS {quote_ident(name)}" if "TIME ZONE" in kind
            else quote_ident(name)
            for name, kind in con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'runs' ORDER BY ordinal_position").fetchall())
        cursor = con.execute(f"""
            SELECT * FROM (SELECT {select} FROM runs
                           ORDER BY export_date DESC, publish_sequence DESC LIMIT ?)
             ORDER BY export_date, publish_sequence""", [nights])
        columns = [d[0] for d in cursor.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    for row in rows:
        row["elapsed_stage_seconds"] = elapsed_stage_seconds(row.get("stage_seconds"))
    return rows


def elapsed_stage_seconds(stage_seconds: Any) -> float | None:
    """Stage time of a run with mapped tasks counted as parallel: the slowest source of each
    mapped stage, plus every other stage (what the run takes with one slot per source)."""
    if isinstance(stage_seconds, str):
        stage_seconds = json.loads(stage_seconds)
    if not isinstance(stage_seconds, dict) or not stage_seconds:
        return None
    groups: dict[str, float] = {}
    for name, seconds in stage_seconds.items():
        stage = name.split(".", 1)[0]
        groups[stage] = max(groups.get(stage, 0.0), float(seconds or 0))
    return round(sum(groups.values()), 1)
