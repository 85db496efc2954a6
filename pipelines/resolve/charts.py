"""Splink charts for the run report, saved as HTML with inline JavaScript (they open offline).

Per party type: match weights and m/u parameters of the model, a waterfall for sample pairs
around the match threshold, the match-weight histogram of kept pairs; and the cluster sizes.
Charts hold no personal data: a waterfall shows each comparison's level and weight, never the
compared values (the report is read by more people than the warehouse; stewards see values in
`review_queue`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipelines import fileio
from pipelines.resolve.backend import database_api, duckdb_connection
from pipelines.resolve.config import PARTY_TYPES, thresholds
from pipelines.resolve.features import create_comparison_table
from pipelines.resolve.predict import CLUSTERS_FILE, MATCH_PAIRS_FILE, load_model
from pipelines.settings import RunPaths
from pipelines.sql import quote_literal

WATERFALL_PAIRS = 12


def _save(chart_dict_or_chart, path: Path) -> Path:
    from splink.internals.html_utils import chart_html

    if isinstance(chart_dict_or_chart, dict):
        html = chart_html(chart_dict_or_chart, inline=True, fullhtml=True)
    else:
        html = chart_dict_or_chart.to_html(inline=True)
    return fileio.write_text(path, html)


def _sample_pairs_sql(pairs_path: Path, party_type: str, match: float, n: int) -> str:
    """Pairs nearest the match threshold on both sides, plus the strongest and weakest kept."""
    third = max(n // 3, 1)
    return f"""
        WITH p AS (SELECT source_record_id_l, source_record_id_r, match_weight
                   FROM read_parquet({quote_literal(pairs_path)}) WHERE party_type = {quote_literal(party_type)}),
        near_above AS (SELECT * FROM p WHERE match_weight >= {match}
                       ORDER BY match_weight, source_record_id_l LIMIT {third}),
        near_below AS (SELECT * FROM p WHERE match_weight < {match}
                       ORDER BY match_weight DESC, source_record_id_l LIMIT {third}),
        extremes AS (
            (SELECT * FROM p ORDER BY match_weight DESC, source_record_id_l LIMIT {third // 2 + 1})
            UNION ALL
            (SELECT * FROM p ORDER BY match_weight, source_record_id_l LIMIT {third // 2 + 1}))
        SELECT DISTINCT source_record_id_l, source_record_id_r
        FROM (FROM near_above UNION ALL FROM near_below UNION ALL FROM extremes)
    """


def party_charts(run: RunPaths, party_type: str, out_dir: Path,
                 models: dict | None = None) -> list[Path]:
    """Model charts and sample waterfalls of one party type.

    The waterfalls are drawn from the run's own scored pairs (levels, term-frequency adjustments
    and weights as `match_pairs` holds them) under the model with the prior the run scored with,
    so they show what the night decided; the Splink input is built for the sampled records only
    (rebuilding it for every record cost a fifth of the resolve stage at 1M)."""
    import json

    from splink import Linker

    from pipelines.resolve.predict import SUMMARY_FILE, load_training_profile, scale_prior

    records_path = run.staged_dir / "source_records.parquet"
    pairs_path = run.resolved_dir / MATCH_PAIRS_FILE
    summary_path = run.resolved_dir / SUMMARY_FILE
    db_api = database_api("duckdb")
    con = duckdb_connection(db_api)
    party = quote_literal(party_type)
    cut = thresholds(party_type)
    has_pairs = pairs_path.is_file()
    if has_pairs:
        con.execute(f"""CREATE OR REPLACE TABLE sample_pairs AS
            {_sample_pairs_sql(pairs_path, party_type, cut.match, WATERFALL_PAIRS)}""")
        ids = ("SELECT source_record_id_l FROM sample_pairs "
               "UNION SELECT source_record_id_r FROM sample_pairs")
    else:
        ids = "SELECT NULL::VARCHAR"
    con.execute(f"""CREATE OR REPLACE TABLE chart_records AS
        SELECT * FROM read_parquet({quote_literal(records_path)}) r WHERE party_type = {party}
        AND (source_record_id IN ({ids}) OR source_record_id IN (
             SELECT source_record_id FROM read_parquet({quote_literal(records_path)})
             WHERE party_type = {party} ORDER BY source_record_id LIMIT 2))""")
    if create_comparison_table(con, "chart_records", party_type, "records") == 0:
        return []
    summary = (json.loads(summary_path.read_text(encoding="utf-8"))
               if summary_path.is_file() else {})
    n_records = int(((summary.get("party_types") or {}).get(party_type) or {}).get("records", 0))
    model = scale_prior(load_model(party_type, models),
                        load_training_profile(party_type, models), n_records)
    linker = Linker(db_api.register("records"), model, log_level=logging.WARNING)
    written = [
        _save(linker.visualisations.match_weights_chart(),
              out_dir / f"{party_type}_match_weights.html"),
        _save(linker.visualisations.m_u_parameters_chart(),
              out_dir / f"{party_type}_m_u_parameters.html"),
    ]
    if not has_pairs:
        return written
    scored = con.execute(f"""
        SELECT p.* FROM read_parquet({quote_literal(pairs_path)}) p
        JOIN sample_pairs s USING (source_record_id_l, source_record_id_r)
        WHERE p.party_type = {party}
        ORDER BY p.match_weight DESC, p.source_record_id_l, p.source_record_id_r""")
    columns = [d[0] for d in scored.description]
    records = [dict(zip(columns, row, strict=True)) for row in scored.fetchall()]
    if records:
        chart = linker.visualisations.waterfall_chart(records, remove_sensitive_data=True)
        written.append(_save(chart, out_dir / f"{party_type}_waterfall.html"))
    histogram = con.execute(f"""
        SELECT floor(match_weight) AS bin, count(*) AS pairs
        FROM read_parquet({quote_literal(pairs_path)}) WHERE party_type = {party}
        GROUP BY 1 ORDER BY 1""").fetchall()
    written.append(_save(_bar_spec(
        [{"match_weight": b, "pairs": n} for b, n in histogram], "match_weight", "pairs",
        f"{party_type}: match weights of kept pairs (match threshold {cut.match})",
        rule_at=cut.match), out_dir / f"{party_type}_match_weight_histogram.html"))
    return written


def _bar_spec(values: list[dict], x: str, y: str, title: str, rule_at: float | None = None) -> dict:
    bars = {"mark": {"type": "bar", "tooltip": True},
            "encoding": {"x": {"field": x, "type": "quantitative", "bin": False},
                         "y": {"field": y, "type": "quantitative"}}}
    layers: list[dict] = [bars]
    if rule_at is not None:
        layers.append({"mark": {"type": "rule", "color": "red"},
                       "encoding": {"x": {"datum": rule_at}}})
    return {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "title": title,
            "data": {"values": values}, "width": 600, "height": 300, "layer": layers}


def cluster_size_chart(run: RunPaths, out_dir: Path) -> Path | None:
    import duckdb

    clusters_path = run.resolved_dir / CLUSTERS_FILE
    if not clusters_path.is_file():
        return None
    rows = duckdb.connect().execute(f"""
        WITH sizes AS (SELECT party_type, cluster_id, count(*) AS size
                       FROM read_parquet({quote_literal(clusters_path)}) GROUP BY ALL)
        SELECT party_type, size, count(*) AS clusters FROM sizes GROUP BY ALL ORDER BY ALL
    """).fetchall()
    # one panel per party type
    spec = {"$schema": "https://vega.github.io/schema/vega-lite/v5.json",
            "title": "Cluster size distribution (log scale)", "width": 400, "height": 300,
            "data": {"values": [{"party_type": p, "cluster_size": s, "clusters": n}
                                for p, s, n in rows]},
            "mark": {"type": "bar", "tooltip": True},
            "encoding": {"x": {"field": "cluster_size", "type": "quantitative"},
                         "y": {"field": "clusters", "type": "quantitative",
                               "scale": {"type": "log"}},
                         "column": {"field": "party_type", "type": "nominal"},
                         "color": {"field": "party_type", "type": "nominal"}},
            "resolve": {"scale": {"y": "independent"}}}
    return _save(spec, out_dir / "cluster_sizes.html")


def write_charts(run: RunPaths, models: dict | None = None) -> list[Path]:
    """Write every resolution chart into `run.report_dir/charts/`; returns the files."""
    out_dir = run.report_dir / "charts"
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for party_type in PARTY_TYPES:
        written += party_charts(run, party_type, out_dir, models)
    sizes = cluster_size_chart(run, out_dir)
    if sizes:
        written.append(sizes)
    return written
