"""`ucv evaluate`: how well the clusters match ground truth, overall, per party type and hard case.

Pairwise precision/recall/F1 count record pairs placed in one cluster (the transitive closure,
which is what customers see); B-cubed averages per-record precision/recall (Bagga & Baldwin,
1998, "Entity-based cross-document coreferencing using the vector space model"). A false merge is
a cluster holding more than one true entity; a split is a true entity spread over clusters.

By kind (the truth's `kinds` per record: moved, surname_change, nickname, party_type_wrong, ...):
the split rate (share of the entities with a record of that kind whose records end in more than
one cluster), records split off their entity's main cluster, and false merges touching the kind.
Blocking recall is the share of true record pairs that any of the models' prediction blocking
rules would compare at all (a pair never compared can never be linked), overall and by kind.
Only this module reads the truth folder, and only when asked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines.sql import quote_ident, quote_literal

TRUTH_FILE = "ground_truth.parquet"
HARD_CASE_KINDS = ("household", "twin", "father_son", "common_name", "company_owner")


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 6) if denominator else None


def _f1(precision: float | None, recall: float | None) -> float | None:
    if not precision or not recall:
        return None
    return round(2 * precision * recall / (precision + recall), 6)


def _load_labelled(con, clusters_path: Path, truth_path: Path) -> dict[str, int]:
    """Table `labelled`: one row per clustered record that ground truth knows."""
    truth_cols = {r[0] for r in con.execute(
        f"DESCRIBE SELECT * FROM read_parquet({quote_literal(truth_path)})").fetchall()}
    noise = "t.noise" if "noise" in truth_cols else "CAST([] AS VARCHAR[])"
    kinds = "t.kinds" if "kinds" in truth_cols else noise
    hard = "t.hard_case" if "hard_case" in truth_cols else "NULL::VARCHAR"
    group = "t.hard_case_group" if "hard_case_group" in truth_cols else "NULL::VARCHAR"
    con.execute(f"""
        CREATE OR REPLACE TABLE labelled AS
        SELECT c.source_record_id, t.party_type,
               c.party_type || '|' || c.cluster_id AS cluster_key,
               t.entity_id, {hard} AS hard_case, {group} AS hard_case_group, {noise} AS noise,
               {kinds} AS kinds
        FROM read_parquet({quote_literal(clusters_path)}) c
        JOIN read_parquet({quote_literal(truth_path)}) t USING (source_record_id)
    """)
    n_clustered, n_truth, n_labelled = con.execute(f"""
        SELECT (SELECT count(*) FROM read_parquet({quote_literal(clusters_path)})),
               (SELECT count(*) FROM read_parquet({quote_literal(truth_path)})),
               (SELECT count(*) FROM labelled)
    """).fetchall()[0]
    return {"records_clustered": n_clustered, "records_in_truth": n_truth,
            "records_evaluated": n_labelled,
            "truth_records_not_clustered": n_truth - n_labelled,
            "clustered_records_not_in_truth": n_clustered - n_labelled}


def cluster_metrics(con, where: str = "TRUE", table: str = "labelled") -> dict[str, Any]:
    """Pairwise and B-cubed metrics of the records of `table` (cluster_key, entity_id) that
    satisfy `where`."""
    row = con.execute(f"""
        WITH r AS (SELECT * FROM {table} WHERE {where}),
        ce AS (SELECT cluster_key, entity_id, count(*) AS n FROM r GROUP BY ALL),
        c AS (SELECT cluster_key, sum(n) AS n, count(*) AS entities FROM ce GROUP BY ALL),
        e AS (SELECT entity_id, sum(n) AS n, count(*) AS clusters FROM ce GROUP BY ALL),
        bcubed AS (
            SELECT sum(ce.n * ce.n / c.n) AS p_sum, sum(ce.n * ce.n / e.n) AS r_sum
            FROM ce JOIN c USING (cluster_key) JOIN e USING (entity_id)
        )
        SELECT
            (SELECT count(*) FROM r),
            (SELECT count(*) FROM e),
            (SELECT count(*) FROM c),
            (SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM ce),
            (SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM c),
            (SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM e),
            (SELECT p_sum FROM bcubed), (SELECT r_sum FROM bcubed),
            (SELECT count(*) FILTER (WHERE entities > 1) FROM c),
            (SELECT count(*) FILTER (WHERE clusters > 1) FROM e)
    """).fetchall()[0]
    records, entities, clusters, tp, predicted, true_pairs, p_sum, r_sum, merges, splits = row
    precision = _ratio(tp, predicted) if predicted else (1.0 if records else None)
    recall = _ratio(tp, true_pairs) if true_pairs else (1.0 if records else None)
    return {
        "records": int(records), "entities": int(entities), "clusters": int(clusters),
        "true_pairs": int(true_pairs), "predicted_pairs": int(predicted),
        "true_positive_pairs": int(tp),
        "pairwise_precision": precision, "pairwise_recall": recall,
        "pairwise_f1": _f1(precision, recall),
        "bcubed_precision": _ratio(p_sum or 0, records),
        "bcubed_recall": _ratio(r_sum or 0, records),
        "false_merges": int(merges), "splits": int(splits),
    }


def hard_negative_merges(con) -> dict[str, dict[str, int]]:
    """Per hard-case kind: entity pairs that must stay apart, and how many ended up together."""
    rows = con.execute("""
        WITH members AS (
            SELECT DISTINCT hard_case, hard_case_group, entity_id, cluster_key
            FROM labelled WHERE hard_case_group IS NOT NULL
        ),
        entity_pairs AS (
            SELECT a.hard_case, a.hard_case_group, a.entity_id AS e1, b.entity_id AS e2,
                   bool_or(a.cluster_key = b.cluster_key) AS merged
            FROM members a JOIN members b
              ON a.hard_case_group = b.hard_case_group AND a.entity_id < b.entity_id
            GROUP BY ALL
        )
        SELECT hard_case, count(*), count(*) FILTER (WHERE merged)
        FROM entity_pairs GROUP BY 1 ORDER BY 1
    """).fetchall()
    return {kind: {"entity_pairs": int(n), "merged": int(m)} for kind, n, m in rows}


def errors_by_noise(con) -> dict[str, dict[str, int]]:
    """For each noise kind: true pairs it touches and how many were missed; wrong pairs it touches."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE record_noise AS
        SELECT source_record_id, unnest(CASE WHEN len(noise) = 0 THEN ['(none)'] ELSE noise END)
               AS noise_kind
        FROM labelled
    """)
    missed = con.execute("""
        WITH true_pairs AS (
            SELECT a.source_record_id AS l, b.source_record_id AS r,
                   a.cluster_key <> b.cluster_key AS missed
            FROM labelled a JOIN labelled b
              ON a.entity_id = b.entity_id AND a.source_record_id < b.source_record_id
        ),
        pair_noise AS (
            SELECT p.l, p.r, p.missed, n.noise_kind
            FROM true_pairs p JOIN record_noise n ON n.source_record_id = p.l
            UNION
            SELECT p.l, p.r, p.missed, n.noise_kind
            FROM true_pairs p JOIN record_noise n ON n.source_record_id = p.r
        )
        SELECT noise_kind, count(*), count(*) FILTER (WHERE missed) FROM pair_noise GROUP BY 1
    """).fetchall()
    wrong = dict(con.execute("""
        WITH wrong_pairs AS (
            SELECT a.source_record_id AS l, b.source_record_id AS r
            FROM labelled a JOIN labelled b
              ON a.cluster_key = b.cluster_key AND a.source_record_id < b.source_record_id
            WHERE a.entity_id <> b.entity_id
        )
        SELECT noise_kind, count(*) FROM (
            SELECT p.l, p.r, n.noise_kind
            FROM wrong_pairs p JOIN record_noise n ON n.source_record_id = p.l
            UNION
            SELECT p.l, p.r, n.noise_kind
            FROM wrong_pairs p JOIN record_noise n ON n.source_record_id = p.r)
        GROUP BY 1
    """).fetchall())
    return {kind: {"true_pairs": int(n), "missed_pairs": int(m),
                   "wrongly_merged_pairs": int(wrong.get(kind, 0))}
            for kind, n, m in sorted(missed)}


def _kind_tables(con) -> None:
    """`record_kinds` (record, kind), `main_cluster` per entity, `wrong_pairs` across entities."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE record_kinds AS
        SELECT DISTINCT source_record_id, entity_id, unnest(kinds) AS kind FROM labelled
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE main_cluster AS
        SELECT entity_id, first(cluster_key ORDER BY n DESC, cluster_key) AS cluster_key,
               count(*) AS clusters
        FROM (SELECT entity_id, cluster_key, count(*) AS n FROM labelled GROUP BY ALL)
        GROUP BY entity_id
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE wrong_pairs AS
        SELECT a.source_record_id AS l, b.source_record_id AS r, a.cluster_key
        FROM labelled a JOIN labelled b
          ON a.cluster_key = b.cluster_key AND a.source_record_id < b.source_record_id
        WHERE a.entity_id <> b.entity_id
    """)


def by_kind(con) -> dict[str, dict[str, Any]]:
    """Per kind: entities and records having it, split rate, records split off, false merges."""
    _kind_tables(con)
    rows = con.execute("""
        WITH kind_entities AS (SELECT DISTINCT kind, entity_id FROM record_kinds),
        entity_side AS (
            SELECT k.kind, count(*) AS entities, count(*) FILTER (WHERE m.clusters > 1) AS split
            FROM kind_entities k JOIN main_cluster m USING (entity_id) GROUP BY k.kind
        ),
        record_side AS (
            SELECT k.kind, count(*) AS records,
                   count(*) FILTER (WHERE l.cluster_key <> m.cluster_key) AS split_off
            FROM record_kinds k JOIN labelled l USING (source_record_id)
            JOIN main_cluster m ON m.entity_id = k.entity_id GROUP BY k.kind
        ),
        touched AS (
            SELECT k.kind, w.l, w.r, w.cluster_key FROM wrong_pairs w
            JOIN record_kinds k ON k.source_record_id = w.l
            UNION
            SELECT k.kind, w.l, w.r, w.cluster_key FROM wrong_pairs w
            JOIN record_kinds k ON k.source_record_id = w.r
        ),
        merged AS (
            SELECT kind, count(DISTINCT cluster_key) AS clusters, count(*) AS pairs
            FROM touched GROUP BY kind
        )
        SELECT e.kind, e.entities, e.split, r.records, r.split_off,
               coalesce(m.clusters, 0), coalesce(m.pairs, 0)
        FROM entity_side e JOIN record_side r USING (kind) LEFT JOIN merged m USING (kind)
        ORDER BY e.kind
    """).fetchall()
    return {kind: {"entities": int(ents), "split_entities": int(split),
                   "split_rate": _ratio(split, ents), "records": int(recs),
                   "records_split_off": int(off), "records_split_off_share": _ratio(off, recs),
                   "false_merge_clusters": int(clusters), "wrongly_merged_pairs": int(pairs)}
            for kind, ents, split, recs, off, clusters, pairs in rows}


def _exploded(table: str, columns: list[str]) -> str:
    """A relation of `table` with each listed array column unnested (cross product, as Splink's
    `arrays_to_explode` compares every element of one record with every element of the other)."""
    relation = table
    for column in columns:
        relation = f'(SELECT * REPLACE (unnest({quote_ident(column)}) AS {quote_ident(column)}) FROM {relation})'
    return relation


def blocking_recall(con, records_path: Path, models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Share of true record pairs that any prediction blocking rule of the models would compare.

    The rules are read from each model's `blocking_rules_to_generate_predictions` and run in
    DuckDB on the comparison table the model sees; a true pair whose records fall into different
    party types can never be compared and counts as not blocked.
    """
    from pipelines.resolve.features import create_comparison_table

    con.execute("""
        CREATE OR REPLACE TEMP TABLE true_pairs AS
        SELECT a.source_record_id AS l, b.source_record_id AS r, a.party_type
        FROM labelled a JOIN labelled b
          ON a.entity_id = b.entity_id AND a.source_record_id < b.source_record_id
    """)
    con.execute("CREATE OR REPLACE TEMP TABLE blocked_pairs (l VARCHAR, r VARCHAR, rule VARCHAR)")
    per_rule: dict[str, dict[str, int]] = {}
    for party_type, model in models.items():
        table = f"blocking_input_{party_type}"
        create_comparison_table(con, Path(records_path), party_type, table)
        rules = model.get("blocking_rules_to_generate_predictions") or []
        counts: dict[str, int] = {}
        for rule in rules:
            sql = rule["blocking_rule"] if isinstance(rule, dict) else str(rule)
            explode = list(rule.get("arrays_to_explode") or []) if isinstance(rule, dict) else []
            side = _exploded(table, explode)
            # Splink compares each unordered pair once, with l.unique_id < r.unique_id
            con.execute(f"""
                INSERT INTO blocked_pairs
                SELECT DISTINCT p.l, p.r, ? FROM true_pairs p
                JOIN {side} l ON l.unique_id = p.l
                JOIN {side} r ON r.unique_id = p.r
                WHERE {sql}
            """, [f"{party_type}: {sql}"])
            counts[sql] = con.execute("SELECT count(*) FROM blocked_pairs WHERE rule = ?",
                                      [f"{party_type}: {sql}"]).fetchall()[0][0]
        per_rule[party_type] = counts
    con.execute("""
        CREATE OR REPLACE TEMP TABLE pair_blocked AS
        SELECT p.l, p.r, p.party_type, b.l IS NOT NULL AS blocked
        FROM true_pairs p LEFT JOIN (SELECT DISTINCT l, r FROM blocked_pairs) b USING (l, r)
    """)
    overall = con.execute("SELECT count(*), count(*) FILTER (WHERE blocked) FROM pair_blocked").fetchall()[0]
    party = con.execute("""SELECT party_type, count(*), count(*) FILTER (WHERE blocked)
                           FROM pair_blocked GROUP BY 1 ORDER BY 1""").fetchall()
    kinds = con.execute("""
        WITH touched AS (
            SELECT k.kind, p.l, p.r, p.blocked
            FROM pair_blocked p JOIN record_kinds k ON k.source_record_id = p.l
            UNION
            SELECT k.kind, p.l, p.r, p.blocked
            FROM pair_blocked p JOIN record_kinds k ON k.source_record_id = p.r
        )
        SELECT kind, count(*), count(*) FILTER (WHERE blocked) FROM touched GROUP BY 1 ORDER BY 1
    """).fetchall() if _has_table(con, "record_kinds") else []

    def figures(n: int, blocked: int) -> dict[str, Any]:
        return {"true_pairs": int(n), "blocked_pairs": int(blocked), "blocking_recall": _ratio(blocked, n)}

    return {"overall": figures(*overall),
            "by_party_type": {p: figures(n, b) for p, n, b in party},
            "by_kind": {k: figures(n, b) for k, n, b in kinds},
            "true_pairs_by_rule": per_rule}


def _has_table(con, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [name]).fetchall()[0][0])


def link_precision(con, pairs_path: Path) -> dict[str, Any]:
    """Edge level: of the scored pairs at or above the match threshold, how many are true."""
    rows = con.execute(f"""
        SELECT p.party_type, count(*) FILTER (WHERE p.is_link),
               count(*) FILTER (WHERE p.is_link AND a.entity_id = b.entity_id),
               count(*) FILTER (WHERE NOT p.is_link AND a.entity_id = b.entity_id)
        FROM read_parquet({quote_literal(pairs_path)}) p
        JOIN labelled a ON a.source_record_id = p.source_record_id_l
        JOIN labelled b ON b.source_record_id = p.source_record_id_r
        GROUP BY 1 ORDER BY 1
    """).fetchall()
    return {party: {"links": int(n), "true_links": int(t), "link_precision": _ratio(t, n),
                    "true_pairs_below_match_threshold": int(below)}
            for party, n, t, below in rows}


# Evidence ceiling: how far any weighting of the same comparison levels could take recall.
CEILING_PRECISION = 0.995
CEILING_RATIOS = (50.0, 20.0, 10.0, 6.0, 4.0, 3.0, 2.5, 2.0, 1.5, 1.0)


def _evidence_patterns(con, pairs_path: Path) -> str:
    """SQL for what a scored pair shows: every comparison level and its term-frequency
    adjustment rounded to one bit, i.e. everything the weights could be a function of."""
    columns = [name for (name, *_rest) in con.execute(
        f"DESCRIBE SELECT * FROM read_parquet({quote_literal(pairs_path)})").fetchall()]
    parts = ["p.party_type"] + [
        f"coalesce(round(p.{quote_ident(c)})::BIGINT::VARCHAR, '-')" for c in columns
        if c.startswith("gamma_") or c.startswith("mw_tf_adj_")]
    return " || '|' || ".join(parts)


def evidence_ceiling(con, pairs_path: Path, precision_floor: float = CEILING_PRECISION
                     ) -> dict[str, Any]:
    """Recall an oracle could reach from the scored pairs' evidence, at a precision floor.

    The oracle knows, for every evidence pattern (all comparison levels of a pair plus its
    term-frequency adjustments to one bit), how many of its pairs are true, and joins the
    patterns whose true pairs outnumber the false ones by at least a ratio; it starts from the
    current clusters with every false merge undone. Clusters are the connected components of
    what it joins, so recall and precision count the transitive closure, as `cluster_metrics`
    does. It is in-sample and undoes errors for free, so it is optimistic: when its recall at
    the floor is below a target, no weighting of these comparisons reaches the target on these
    records, and the missing recall needs evidence that the records or the comparisons lack
    (a field, a level), not other weights or thresholds."""
    from splink import DuckDBAPI
    from splink.clustering import cluster_pairwise_predictions_at_threshold

    pattern = _evidence_patterns(con, pairs_path)
    con.execute("""CREATE OR REPLACE TABLE ceiling_nodes AS
        SELECT source_record_id, party_type, entity_id,
               cluster_key || '|' || entity_id AS unique_id FROM labelled""")
    con.execute(f"""CREATE OR REPLACE TABLE ceiling_pairs AS
        SELECT {pattern} AS pattern, a.unique_id AS unique_id_l, b.unique_id AS unique_id_r,
               a.entity_id = b.entity_id AS is_true
        FROM read_parquet({quote_literal(pairs_path)}) p
        JOIN ceiling_nodes a ON a.source_record_id = p.source_record_id_l
        JOIN ceiling_nodes b ON b.source_record_id = p.source_record_id_r
        WHERE a.unique_id <> b.unique_id""")
    con.execute("""CREATE OR REPLACE TABLE ceiling_patterns AS
        SELECT pattern, count(*) FILTER (WHERE is_true) AS t, count(*) FILTER (WHERE NOT is_true) AS f
        FROM ceiling_pairs GROUP BY pattern""")
    con.execute("CREATE OR REPLACE TABLE ceiling_components AS "
                "SELECT DISTINCT unique_id FROM ceiling_nodes")
    db_api = DuckDBAPI(connection=con)
    sweep = []
    for ratio in CEILING_RATIOS:
        con.execute(f"""CREATE OR REPLACE TABLE ceiling_edges AS
            SELECT DISTINCT least(unique_id_l, unique_id_r) AS unique_id_l,
                   greatest(unique_id_l, unique_id_r) AS unique_id_r
            FROM ceiling_pairs JOIN ceiling_patterns USING (pattern)
            WHERE t >= {ratio} * greatest(f, 0.5)""")
        joined = con.execute("SELECT count(*) FROM ceiling_edges").fetchall()[0][0]
        clusters = cluster_pairwise_predictions_at_threshold(
            "ceiling_components", "ceiling_edges", db_api, node_id_column_name="unique_id")
        con.execute(f"""CREATE OR REPLACE TABLE ceiling_labelled AS
            SELECT n.source_record_id, n.party_type, n.entity_id, c.cluster_id AS cluster_key
            FROM ceiling_nodes n JOIN {clusters.physical_name} c USING (unique_id)""")
        clusters.drop_table_from_database_and_remove_from_cache()
        figures = cluster_metrics(con, table="ceiling_labelled")
        sweep.append({"min_true_per_false": ratio, "components_joined": int(joined),
                      "pairwise_precision": figures["pairwise_precision"],
                      "pairwise_recall": figures["pairwise_recall"]})
    best = max((s for s in sweep if (s["pairwise_precision"] or 0) >= precision_floor),
               key=lambda s: s["pairwise_recall"] or 0, default=None)
    for table in ("ceiling_nodes", "ceiling_pairs", "ceiling_patterns", "ceiling_components",
                  "ceiling_edges", "ceiling_labelled"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return {"precision_floor": precision_floor,
            "recall_at_floor": best["pairwise_recall"] if best else None,
            "sweep": sweep}


def evaluate(clusters_path: Path, pairs_path: Path | None, truth_dir: Path,
             records_path: Path | None = None,
             models: dict[str, dict[str, Any]] | None = None,
             ceiling: bool = False) -> dict[str, Any]:
    """Compare clusters (and match pairs) with `truth_dir/ground_truth.parquet`.

    With the staged `records_path` and the models (settings dicts per party type) it also
    measures blocking recall; with `ceiling` the evidence ceiling (`evidence_ceiling`)."""
    import duckdb

    truth_path = Path(truth_dir) / TRUTH_FILE
    if not truth_path.is_file():
        raise FileNotFoundError(f"no ground truth at {truth_path}")
    con = duckdb.connect()
    counts = _load_labelled(con, Path(clusters_path), truth_path)
    kinds = [k for (k,) in con.execute(
        "SELECT DISTINCT hard_case FROM labelled WHERE hard_case IS NOT NULL ORDER BY 1").fetchall()]
    result: dict[str, Any] = {
        "counts": counts,
        "overall": cluster_metrics(con),
        "by_party_type": {p: cluster_metrics(con, f"party_type = '{p}'")
                          for p in ("person", "organization")},
        "by_hard_case": {k: cluster_metrics(con, f"hard_case = '{k}'") for k in kinds},
        "hard_negative_groups": hard_negative_merges(con),
        "by_noise": errors_by_noise(con),
        "by_kind": by_kind(con),
    }
    if records_path is not None and models:
        result["blocking"] = blocking_recall(con, Path(records_path), models)
    if pairs_path is not None and Path(pairs_path).is_file():
        result["links"] = link_precision(con, Path(pairs_path))
        if ceiling:
            result["evidence_ceiling"] = evidence_ceiling(con, Path(pairs_path))
    con.close()
    return result


def evaluation_table(result: dict[str, Any]):
    """The headline figures as a rich table: one row per slice."""
    from rich.table import Table

    table = Table(title="Entity resolution vs ground truth")
    for column in ("slice", "records", "entities", "clusters", "pair P", "pair R", "pair F1",
                   "B3 P", "B3 R", "false merges", "splits"):
        table.add_column(column, justify="left" if column == "slice" else "right")

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    slices = [("all", result["overall"])]
    slices += [(f"party: {p}", m) for p, m in result["by_party_type"].items()]
    slices += [(f"hard case: {k}", m) for k, m in result["by_hard_case"].items()]
    for name, m in slices:
        table.add_row(name, str(m["records"]), str(m["entities"]), str(m["clusters"]),
                      fmt(m["pairwise_precision"]), fmt(m["pairwise_recall"]),
                      fmt(m["pairwise_f1"]), fmt(m["bcubed_precision"]),
                      fmt(m["bcubed_recall"]), str(m["false_merges"]), str(m["splits"]))
    return table


def kind_table(result: dict[str, Any]):
    """Split rate, records split off, false merges and blocking recall per kind."""
    from rich.table import Table

    blocking = (result.get("blocking") or {}).get("by_kind", {})
    table = Table(title="By kind (truth `kinds`)")
    for column in ("kind", "entities", "split rate", "records", "split off", "false-merge clusters",
                   "wrong pairs", "blocking recall"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind, m in result.get("by_kind", {}).items():
        recall = (blocking.get(kind) or {}).get("blocking_recall")
        table.add_row(kind, str(m["entities"]), f"{(m['split_rate'] or 0):.2%}", str(m["records"]),
                      f"{(m['records_split_off_share'] or 0):.2%}", str(m["false_merge_clusters"]),
                      str(m["wrongly_merged_pairs"]), "-" if recall is None else f"{recall:.4f}")
    overall = (result.get("blocking") or {}).get("overall")
    if overall:
        table.caption = (f"blocking recall (all true pairs): {overall['blocking_recall']:.4f} of "
                         f"{overall['true_pairs']:,}")
    return table


def write_evaluation(result: dict[str, Any], report_dir: Path) -> Path:
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / "resolve_evaluation.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path
