"""Bare Splink on the same standardized records and the same trained models, nothing around it.

This is what a hand-written Splink script would do with the pipeline's canonical records: build
the comparison table, predict at the review floor, cluster at the match threshold. The bench
divides the whole pipeline's time by this to show what the pipeline's extra work costs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.bench.resources import measure


def bare_splink(records_path: Path, models: dict | None = None) -> dict[str, Any]:
    """Predict + cluster every party type with Splink alone; seconds, peak RSS, pair counts."""
    import logging

    from splink import Linker
    from splink.clustering import cluster_pairwise_predictions_at_threshold

    from pipelines.resolve import load_model
    from pipelines.resolve.backend import database_api, duckdb_connection
    from pipelines.resolve.config import PARTY_TYPES, thresholds
    from pipelines.resolve.features import create_comparison_table

    per_party: dict[str, Any] = {}
    with measure() as total:
        for party_type in PARTY_TYPES:
            cut = thresholds(party_type)
            db_api = database_api("duckdb")
            con = duckdb_connection(db_api)
            table = f"input_{party_type}"
            n = create_comparison_table(con, records_path, party_type, table)
            if n == 0:
                per_party[party_type] = {"records": 0, "pairs": 0, "clusters": 0}
                continue
            linker = Linker(db_api.register(table), load_model(party_type, models),
                            log_level=logging.WARNING)
            predictions = linker.inference.predict(threshold_match_weight=cut.review_floor,
                                                   warning_mode="never")
            clusters = cluster_pairwise_predictions_at_threshold(
                table, predictions.physical_name, db_api, node_id_column_name="unique_id",
                threshold_match_weight=cut.match)
            pairs = con.execute(f"SELECT count(*) FROM {predictions.physical_name}").fetchall()
            n_clusters = con.execute(
                f"SELECT count(DISTINCT cluster_id) FROM {clusters.physical_name}").fetchall()
            per_party[party_type] = {"records": n, "pairs": int(pairs[0][0]),
                                     "clusters": int(n_clusters[0][0])}
    return {**total.to_dict(), "party_types": per_party}
