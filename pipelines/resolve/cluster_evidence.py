"""Cluster-level evidence: a record that scores weakly against every record of a customer, but
matches the customer's union of evidence, joins it.

Pairwise Fellegi-Sunter sees one record pair at a time: an old-address record whose mobile
matches one of the customer's records and whose birth date matches another may score below the
match threshold against both. Here, for a record that stayed alone, and another cluster all of
whose records it was scored against (every pair kept at or above the review floor, so no member
is hidden behind a strongly negative score), the evidence of each comparison is the best one
over the members when some member supports it, else the strongest contradiction; the prior is
added once. The record joins the cluster when that weight reaches the match threshold plus a
margin, no pair shows a link-guard conflict, and no other cluster qualifies
(resolution.yaml `cluster_evidence`).
"""

from __future__ import annotations

import math
from typing import Any


def _comparisons(con, pairs_table: str) -> list[tuple[str, str | None]]:
    """(mw column, tf-adjustment column or None) per comparison present in the pairs table."""
    columns = {r[0] for r in con.execute(f"DESCRIBE {pairs_table}").fetchall()}
    names = sorted(c[3:] for c in columns if c.startswith("mw_") and not c.startswith("mw_tf_adj_"))
    return [(f"mw_{n}", f"mw_tf_adj_{n}" if f"mw_tf_adj_{n}" in columns else None)
            for n in names]


def cluster_evidence_links(con, pairs_table: str, clusters_table: str, model: dict[str, Any],
                           match: float, cfg: dict[str, Any]) -> int:
    """Mark the pairs that cluster-level evidence turns into links (is_link, link_via); returns
    how many. `pairs_table` needs `_guard` (the guard a pair would raise at any weight)."""
    if not cfg.get("enabled", True):
        return 0
    comparisons = _comparisons(con, pairs_table)
    if not comparisons:
        return 0
    prior = float(model["probability_two_random_records_match"])
    prior_weight = math.log2(prior / (1 - prior))
    contribution = [f"coalesce({mw}, 0)" + (f" + coalesce({tf}, 0)" if tf else "") + f" AS e{i}"
                    for i, (mw, tf) in enumerate(comparisons)]
    union = " + ".join(f"CASE WHEN max(e{i}) > 0 THEN max(e{i}) ELSE min(e{i}) END"
                       for i in range(len(comparisons)))
    margin = float(cfg.get("margin", 0.0))
    max_size = int(cfg.get("max_cluster_size", 20))
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ce_sizes AS
        SELECT cluster_id, count(*) AS size FROM {clusters_table} GROUP BY 1""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ce_edges AS
        WITH both_ways AS (
            SELECT source_record_id_l AS r, source_record_id_r AS o, match_weight, _guard,
                   {", ".join(contribution)}
            FROM {pairs_table} WHERE NOT is_link
            UNION ALL
            SELECT source_record_id_r AS r, source_record_id_l AS o, match_weight, _guard,
                   {", ".join(contribution)}
            FROM {pairs_table} WHERE NOT is_link)
        SELECT b.*, co.cluster_id AS c, so.size AS c_size
        FROM both_ways b
        JOIN {clusters_table} cr ON cr.unique_id = b.r
        JOIN ce_sizes sr ON sr.cluster_id = cr.cluster_id
        JOIN {clusters_table} co ON co.unique_id = b.o
        JOIN ce_sizes so ON so.cluster_id = co.cluster_id
        WHERE sr.size = 1 AND so.size BETWEEN 2 AND {max_size}""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ce_groups AS
        SELECT r, c, any_value(c_size) AS c_size, count(DISTINCT o) AS scored,
               bool_or(_guard IS NOT NULL) AS conflict, arg_max(o, match_weight) AS best,
               {prior_weight} + {union} AS weight
        FROM ce_edges GROUP BY r, c""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ce_links AS
        WITH qualified AS (
            SELECT *, count(*) OVER (PARTITION BY r) AS rivals FROM ce_groups
            WHERE weight >= {match} AND scored = c_size AND NOT conflict)
        SELECT least(r, best) AS l, greatest(r, best) AS rr, weight
        FROM qualified WHERE weight >= {match + margin} AND rivals = 1""")
    con.execute(f"""
        UPDATE {pairs_table} SET is_link = true, link_via = 'cluster_evidence',
               cluster_evidence_weight = ce_links.weight
        FROM ce_links
        WHERE source_record_id_l = ce_links.l AND source_record_id_r = ce_links.rr""")
    return int(con.execute("SELECT count(*) FROM ce_links").fetchall()[0][0])
