"""Clusters that hold two people are split where their weakest, ambiguous links are.

Connected components join everything a chain of links reaches. A web lead that carries only
"Stefan Schneider, Nürnberg" links to every Stefan Schneider in Nürnberg, and through it two
customers with different birth dates become one. Pairwise link guards cannot see this: the two
customers were never linked to each other, only to the lead.

Here every pair inside a cluster of up to `max_cluster_size` records is scored (with Splink, the
pairs blocking never produced included), and a pair is a conflict — the two records are
different people — when it raises one of the link guards named in `guards` (a different birth
date or national ID) and scores below `max_weight` (one person whose birth date one system
mistyped still scores far above the match threshold on name, e-mail, phone and address). A different given name is no conflict inside a cluster: "Joe Ma" and
"Bin Ma" with one e-mail and birth date, or "Wai Lee" and "Hui Li", are one person. In a cluster with a conflict the links are replayed strongest
first; a link that would join two groups holding a conflict is cut, and a record whose cut link
was about as strong as the link that kept it (within `ambiguity_margin` bits) is ambiguous — it
could be either customer — so all its links are cut and it stands alone. Cut links stay in
match_pairs (is_link false, link_blocked_by 'cluster_conflict') for stewards.

The scoring and the cuts are DuckDB SQL over the pairs and clusters of either engine; only the
replay of a conflicted cluster's links (a few records each) is Python.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from pipelines.sql import quote_literal

log = logging.getLogger(__name__)

CUT_LABEL = "cluster_conflict"
Link = tuple[str, str, float]


def plan_cuts(links: Iterable[Link], conflicts: Iterable[tuple[str, str]],
              ambiguity_margin: float) -> set[tuple[str, str]]:
    """The links of one cluster to cut so that no remaining group holds a conflicting pair.

    Links are replayed strongest first (ties by record id, so reruns agree); a link joining two
    groups with a conflict between them is refused. An endpoint of a refused link whose best
    kept link is at most `ambiguity_margin` stronger is ambiguous and is detached (all its links
    cut), and the replay runs again without it.
    """
    ordered = sorted(links, key=lambda x: (-x[2], x[0], x[1]))
    partners: dict[str, set[str]] = defaultdict(set)
    for a, b in conflicts:
        partners[a].add(b)
        partners[b].add(a)
    detached: set[str] = set()
    kept: set[tuple[str, str]] = set()
    for _ in range(len(ordered) + 1):
        kept, refused, best = _replay(ordered, partners, detached)
        ambiguous = {x for a, b, w in refused for x in (a, b)
                     if x not in detached and best.get(x, float("-inf")) - w <= ambiguity_margin}
        if not ambiguous:
            break
        detached |= ambiguous
    return {(a, b) for a, b, _ in ordered} - kept


def _replay(ordered: list[Link], partners: dict[str, set[str]], detached: set[str]
            ) -> tuple[set[tuple[str, str]], list[Link], dict[str, float]]:
    root: dict[str, str] = {}
    members: dict[str, set[str]] = {}
    against: dict[str, set[str]] = {}  # records in conflict with some member of the group

    def find(x: str) -> str:
        if x not in root:
            root[x], members[x], against[x] = x, {x}, set(partners.get(x, ()))
        while root[x] != x:
            root[x] = root[root[x]]
            x = root[x]
        return x

    kept: set[tuple[str, str]] = set()
    refused: list[Link] = []
    best: dict[str, float] = {}
    for left, right, w in ordered:
        if left in detached or right in detached:
            continue
        a, b = find(left), find(right)
        if a != b:
            if members[b] & against[a]:
                refused.append((left, right, w))
                continue
            if len(members[a]) < len(members[b]):
                a, b = b, a
            root[b] = a
            members[a] |= members.pop(b)
            against[a] |= against.pop(b)
        kept.add((left, right))
        best[left] = max(best.get(left, w), w)
        best[right] = max(best.get(right, w), w)
    return kept, refused, best


def split_conflicted_clusters(con, linker, pairs_table: str, clusters_table: str,
                              conflict_sql: str, cfg: dict[str, Any]) -> dict[str, int]:
    """Cut the links that join conflicting records (pairs_table: is_link, link_blocked_by,
    link_via and the gamma_* columns; `conflict_sql` names the guard when a pair is two
    people); returns counts. The caller reclusters when links were cut."""
    counts = {"clusters_in_conflict": 0, "links_cut": 0, "pairs_scored_inside_clusters": 0}
    if not cfg.get("enabled", True):
        return counts
    max_size = int(cfg.get("max_cluster_size", 50))
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE cc_members AS
        SELECT unique_id, cluster_id FROM (
            SELECT unique_id, cluster_id, count(*) OVER (PARTITION BY cluster_id) AS size
            FROM {clusters_table}) WHERE size >= 3""")
    if not con.execute("SELECT count(*) FROM cc_members").fetchall()[0][0]:
        return counts  # a pair cluster's only link already passed the guards
    # the pairs already scored (kept at or above the review floor) inside one cluster, read once
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE cc_inside AS
        SELECT p.source_record_id_l AS l, p.source_record_id_r AS r, ml.cluster_id,
               ({conflict_sql}) IS NOT NULL AS conflict
        FROM {pairs_table} p
        JOIN cc_members ml ON ml.unique_id = p.source_record_id_l
        JOIN cc_members mr ON mr.unique_id = p.source_record_id_r
        WHERE ml.cluster_id = mr.cluster_id""")
    # conflicts among them ...
    con.execute("CREATE OR REPLACE TEMP TABLE cc_conflicts AS "
                "SELECT l, r, cluster_id FROM cc_inside WHERE conflict")
    # ... and among the pairs no blocking rule produced, or that scored below the review floor:
    # only clusters with such a pair (n records, fewer than n(n-1)/2 of their pairs scored)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE cc_to_score AS
        WITH sizes AS (SELECT cluster_id, count(*) AS n FROM cc_members GROUP BY 1
                       HAVING count(*) <= {max_size}),
        scored AS (SELECT cluster_id, count(*) AS k FROM cc_inside GROUP BY 1)
        SELECT m.unique_id, m.cluster_id FROM cc_members m JOIN sizes s USING (cluster_id)
        LEFT JOIN scored k USING (cluster_id)
        WHERE coalesce(k.k, 0) < s.n * (s.n - 1) / 2""")
    if con.execute("SELECT count(*) FROM cc_to_score").fetchall()[0][0]:
        # only the pairs not scored yet: those in pairs_table were checked just above (at 1M,
        # most of the 1.02M pairs inside clusters; scoring them again cost as much as predict)
        con.execute("""CREATE OR REPLACE TEMP TABLE cc_already_scored AS
            SELECT l AS unique_id_l, r AS unique_id_r FROM cc_inside
            WHERE cluster_id IN (SELECT cluster_id FROM cc_to_score)""")
        db_api = linker._db_api
        scored = linker.inference._score_missing_cluster_edges(  # Splink 5.0: pairs in clusters
            db_api.register(con.sql("SELECT * FROM cc_to_score").to_arrow_table(),
                            dataset_display_name="cc_to_score_in"),
            df_predict=db_api.register("cc_already_scored"))
        counts["pairs_scored_inside_clusters"] = int(con.execute(
            f"SELECT count(*) FROM {scored.physical_name}").fetchall()[0][0])
        con.execute(f"""
            INSERT INTO cc_conflicts
            SELECT s.unique_id_l, s.unique_id_r, m.cluster_id
            FROM {scored.physical_name} s JOIN cc_members m ON m.unique_id = s.unique_id_l
            WHERE ({conflict_sql}) IS NOT NULL""")
    conflicted = con.execute("SELECT count(DISTINCT cluster_id) FROM cc_conflicts").fetchall()
    counts["clusters_in_conflict"] = int(conflicted[0][0])
    if not counts["clusters_in_conflict"]:
        return counts
    links = con.execute(f"""
        SELECT m.cluster_id, p.source_record_id_l, p.source_record_id_r,
               coalesce(p.cluster_evidence_weight, p.match_weight)
        FROM {pairs_table} p JOIN cc_members m ON m.unique_id = p.source_record_id_l
        WHERE p.is_link AND m.cluster_id IN (SELECT cluster_id FROM cc_conflicts)""").fetchall()
    by_cluster: dict[Any, list[Link]] = defaultdict(list)
    for cluster_id, left, right, w in links:
        by_cluster[cluster_id].append((left, right, float(w)))
    conflicts_by_cluster: dict[Any, list[tuple[str, str]]] = defaultdict(list)
    for left, right, cluster_id in con.execute(
            "SELECT l, r, cluster_id FROM cc_conflicts").fetchall():
        conflicts_by_cluster[cluster_id].append((left, right))
    margin = float(cfg.get("ambiguity_margin", 2.0))
    cuts = [cut for cluster_id, cluster_links in by_cluster.items()
            for cut in plan_cuts(cluster_links, conflicts_by_cluster[cluster_id], margin)]
    if not cuts:
        return counts
    import pyarrow as pa

    con.register("cc_cuts", pa.table({"l": [c[0] for c in cuts], "r": [c[1] for c in cuts]}))
    con.execute(f"""
        UPDATE {pairs_table} SET is_link = false, link_via = NULL,
               link_blocked_by = {quote_literal(CUT_LABEL)}
        FROM cc_cuts WHERE source_record_id_l = cc_cuts.l AND source_record_id_r = cc_cuts.r""")
    con.unregister("cc_cuts")
    counts["links_cut"] = len(cuts)
    log.info("cluster conflicts: %d clusters held two people; %d links cut",
             counts["clusters_in_conflict"], len(cuts))
    return counts
