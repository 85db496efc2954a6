"""`ucv link`: score candidate pairs with the trained models and cluster them, per party type.

Reads `staged/source_records.parquet`, writes `resolved/match_pairs.parquet` (every pair at or
above the review floor, with per-comparison evidence), `resolved/clusters.parquet` (one row per
source record) and `resolved/resolve_summary.json`. Never reads ground truth, never retrains.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.resolve.backend import backend_name, backend_options, database_api, duckdb_connection
from pipelines.resolve.cluster_conflicts import CUT_LABEL, split_conflicted_clusters
from pipelines.resolve.cluster_evidence import cluster_evidence_links
from pipelines.resolve.config import (
    PARTY_TYPES,
    cluster_conflict_settings,
    cluster_evidence_settings,
    link_guards,
    model_fit_settings,
    model_paths,
    thresholds,
    training_settings,
)
from pipelines.resolve.features import create_comparison_table
from pipelines.resolve.model import applicable_guard, guard_sql
from pipelines.settings import RunPaths
from pipelines.sql import quote_literal, quote_path

log = logging.getLogger(__name__)

MATCH_PAIRS_FILE = "match_pairs.parquet"
CLUSTERS_FILE = "clusters.parquet"
SUMMARY_FILE = "resolve_summary.json"


@dataclass
class ResolveResult:
    """Where predict_and_cluster wrote its outputs, and what it counted."""

    match_pairs_path: Path
    clusters_path: Path
    summary_path: Path
    summary: dict[str, Any] = field(default_factory=dict)


def load_model(party_type: str, models: dict | None = None) -> dict[str, Any]:
    """The trained Splink settings of a party type: from `models` (paths or dicts) or the yaml."""
    source = (models or {}).get(party_type) or model_paths()[party_type]
    if isinstance(source, dict):
        return json.loads(json.dumps(source))
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"no trained {party_type} model at {path}: run `ucv train --records ...` first")
    return json.loads(path.read_text(encoding="utf-8"))


class ModelFitError(ValueError):
    """Tonight's records no longer fit the model's training profile (names the fields)."""


def load_training_profile(party_type: str, models: dict | None = None) -> dict[str, Any] | None:
    """The field profile stored beside the model file (None for in-memory models or old files)."""
    from pipelines.resolve.training import profile_path

    source = (models or {}).get(party_type) or model_paths()[party_type]
    if isinstance(source, dict):
        return None
    path = profile_path(Path(source))
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def scale_prior(model: dict[str, Any], training: dict[str, Any] | None, n: int) -> dict[str, Any]:
    """The model with its prior rescaled from the training record count to `n` records.

    The prior is the probability that two random records match: with a fixed number of records
    per customer, matches grow with n and pairs with n^2, so it scales as (n_train - 1)/(n - 1).
    Only downwards: a run smaller than the training set keeps the trained prior.
    """
    n_train = int((training or {}).get("training_records", 0))
    if n_train < 2 or n < 2 or n == n_train or not training_settings().get(
            "scale_prior_with_records", True):
        return model
    prior = float(model["probability_two_random_records_match"])
    if n < n_train:
        # a smaller run is never scored more leniently than the model was trained and judged at
        return model
    scaled = float(f"{prior * (n_train - 1) / (n - 1):.9g}")
    return {**model, "probability_two_random_records_match": min(max(scaled, 1e-12), 0.5)}


def check_model_fit(con, table: str, party_type: str, training: dict[str, Any] | None
                    ) -> dict[str, Any]:
    """Compare tonight's fill rates with the model's training profile (resolution.yaml
    `model_fit`); raises ModelFitError naming the fields, returns the warnings."""
    from pipelines.resolve.profile import field_profile, model_fit

    if training is None:
        return {"checked": False, "failures": [], "warnings": []}
    cfg = model_fit_settings()
    tonight = field_profile(con, table, party_type, distinct=False)
    fit = model_fit(training["profile"], tonight, training["used_fields"],
                    warn_drop=float(cfg["warn_drop"]), fail_drop=float(cfg["fail_drop"]),
                    min_fill_rate=float(training["min_fill_rate"]))
    if fit.failures and cfg.get("on_failure", "fail") == "fail":
        raise ModelFitError(
            f"The {party_type} model no longer fits tonight's records: "
            + "; ".join(fit.failures) + f". Fill rates fell by more than {cfg['fail_drop']:.0%}"
            " (resolution.yaml model_fit.fail_drop). Fix the export or mapping, or retrain "
            "with `ucv train` and point resolution.yaml at the new model.")
    for warning in fit.failures + fit.warnings:
        log.warning("%s model fit: %s", party_type, warning)
    return {"checked": True, **fit.to_dict()}


def evidence_columns(columns: list[str]) -> list[str]:
    """Per-comparison evidence: comparison level (gamma_*) and match weight (mw_*, log2 Bayes
    factor, with mw_tf_adj_* the term-frequency part) of every comparison."""
    return [c for c in columns if c.startswith(("gamma_", "mw_", "bf_"))]


def _linker(db_api, table: str, model: dict[str, Any]):
    from splink import Linker

    return Linker(db_api.register(table), model, log_level=logging.WARNING)


def connected_clusters(db_api, nodes_table: str, edges_table: str, match_weight: float):
    """Connected components of the pairs at or above `match_weight`: one row per node
    (unique_id, cluster_id); a cluster's id is its smallest member id, so reruns agree."""
    from splink.clustering import cluster_pairwise_predictions_at_threshold

    return cluster_pairwise_predictions_at_threshold(
        nodes_table, edges_table, db_api, node_id_column_name="unique_id",
        threshold_match_weight=match_weight)


def recluster_affected(con, db_api, clusters_table: str, edges_table: str, affected_sql: str,
                       match_weight: float, name: str) -> str:
    """Connected components again, only for the clusters `affected_sql` names (cluster ids in
    `clusters_table`), after links were added between them or cut inside them; every other
    cluster is unchanged, since no link joins it to an affected one. Returns the new table.

    The same clusters as a full re-run (a cluster's id is its smallest member id), at the cost
    of the few clusters touched (at 1M a full run of Splink's connected components took ~6 s)."""
    con.execute(f"""CREATE OR REPLACE TEMP TABLE {name}_nodes AS
        SELECT unique_id FROM {clusters_table} WHERE cluster_id IN ({affected_sql})""")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE {name}_edges AS
        SELECT e.* FROM {edges_table} e
        WHERE e.unique_id_l IN (SELECT unique_id FROM {name}_nodes)
          AND e.unique_id_r IN (SELECT unique_id FROM {name}_nodes)""")
    if con.execute(f"SELECT count(*) FROM {name}_nodes").fetchall()[0][0]:
        part = connected_clusters(db_api, f"{name}_nodes", f"{name}_edges", match_weight)
        part_sql = f"SELECT unique_id, cluster_id FROM {part.physical_name}"
    else:
        part_sql = "SELECT NULL::VARCHAR AS unique_id, NULL::VARCHAR AS cluster_id WHERE false"
    con.execute(f"""CREATE OR REPLACE TABLE {name} AS
        SELECT unique_id, cluster_id FROM {clusters_table}
        WHERE unique_id NOT IN (SELECT unique_id FROM {name}_nodes)
        UNION ALL {part_sql}""")
    return name


def blocked_by_sql(model: dict[str, Any], party_type: str, only: set[str] | None = None
                   ) -> tuple[str, list[str]]:
    """CASE expression naming the first link guard (resolution.yaml) that blocks a pair, and
    notes on guards skipped or narrowed because the model lacks what they name (`only`: just
    the guards of these names)."""
    guards, notes = [], []
    for guard in link_guards(party_type):
        if only is not None and guard["name"] not in only:
            continue
        applied, guard_notes = applicable_guard(model, guard)
        notes += guard_notes
        if applied:
            guards.append(applied)
    if not guards:
        return "NULL::VARCHAR", notes
    whens = " ".join(f"WHEN {guard_sql(model, g)} THEN {quote_literal(g['name'])}"
                     for g in guards)
    return f"CASE {whens} END", notes


def resolve_party(records_path: Path, party_type: str, models: dict | None,
                  out_dir: Path, base: RunPaths | None = None, incremental: bool = False
                  ) -> dict[str, Any]:
    """Predict and cluster one party type; writes three part files in out_dir (pairs, clusters,
    record fingerprints), returns its counts. `incremental`: reuse `base` night's pairs among
    unchanged records and score only the pairs touching new or changed ones (incremental.py)."""
    from pipelines.resolve.incremental import (
        base_for,
        block_changed,
        changed_records,
        fingerprint_records,
        model_key,
        predict_incremental,
    )

    cut = thresholds(party_type)
    engine = backend_name()
    # features and everything after scoring run in DuckDB on both engines (see spark.py)
    db_api = database_api("duckdb")
    con = duckdb_connection(db_api)
    started = time.perf_counter()
    n_records = create_comparison_table(con, records_path, party_type, f"input_{party_type}",
                                        ordered=False)
    pairs_part = out_dir / f".pairs_{party_type}.parquet"
    clusters_part = out_dir / f".clusters_{party_type}.parquet"
    # what the next incremental night compares its records with
    fingerprint_records(con, f"input_{party_type}", f"rfp_{party_type}")
    con.execute(f"""COPY (SELECT unique_id AS source_record_id, {quote_literal(party_type)} AS
                          party_type, fingerprint FROM rfp_{party_type} ORDER BY 1)
                    TO {quote_literal(out_dir / f".fingerprints_{party_type}.parquet")}
                    (FORMAT parquet)""")
    if n_records == 0:
        _write_empty_parts(con, pairs_part, clusters_part)
        return {"records": 0, "comparisons": 0, "comparisons_per_record": 0.0, "pairs_kept": 0,
                "links": 0, "clusters": 0, "seconds": {}}
    training = load_training_profile(party_type, models)
    fit = check_model_fit(con, f"input_{party_type}", party_type, training)
    model = scale_prior(load_model(party_type, models), training, n_records)
    blocked_sql, guard_notes = blocked_by_sql(model, party_type)
    for note in guard_notes:
        log.info("%s: %s", party_type, note)
    key = model_key(model, cut)
    incremental_counts: dict[str, Any] = {"mode": "full"}
    night, why_full = (base_for(base, party_type, key) if incremental
                       else (None, "full night requested"))
    if night is not None and engine == "spark":
        night, why_full = None, "the Spark backend resolves full nights only"
    if engine == "spark":
        from pipelines.resolve.spark import predict_on_spark

        # Spark's readers skip files whose names start with '.' or '_'
        scratch = out_dir / f"spark_work_{party_type}"
        scratch.mkdir(parents=True, exist_ok=True)
        input_part = scratch / "input.parquet"
        con.execute(f"COPY input_{party_type} TO {quote_literal(input_part)} (FORMAT parquet)")
        predicted_dir, by_rule = predict_on_spark(input_part, party_type, model, cut.review_floor, scratch,
                                                  backend_options("spark"))
        con.execute(f"CREATE VIEW spark_predictions_{party_type} AS SELECT * FROM "
                    f"read_parquet({quote_path(Path(predicted_dir) / '*.parquet')})")
        predictions_table = f"spark_predictions_{party_type}"
        rules = [br["blocking_rule"] for br in model["blocking_rules_to_generate_predictions"]]
        n_comparisons = int(sum(by_rule.values()))
        blocked_at = time.perf_counter()
    else:
        linker = _linker(db_api, f"input_{party_type}", model)
        if night is not None:
            # only the pairs touching a new or changed record are formed; the counts per rule
            # are then tonight's scored comparisons (the summary says mode: incremental)
            changed_records(con, f"rfp_{party_type}", party_type, night)
            blocked_name = block_changed(con, linker, f"input_{party_type}", party_type)
        else:
            blocked_name = linker.inference.compute_blocked_pairs_for_predict().physical_name
        by_rule = dict(con.execute(
            f"SELECT match_key, count(*) FROM {blocked_name} GROUP BY 1 ORDER BY 1"
        ).fetchall())
        n_comparisons = int(sum(by_rule.values()))
        blocked_at = time.perf_counter()
        if night is not None:
            predictions_table, scored = predict_incremental(
                con, db_api, linker, blocked_name, f"rfp_{party_type}", party_type,
                night, float(model["probability_two_random_records_match"]), cut.review_floor)
            incremental_counts = {"mode": "incremental", "base_run": night.run_id, **scored}
        else:
            predictions_table = linker.inference.predict(threshold_match_weight=cut.review_floor,
                                                         warning_mode="never").physical_name
        rules = [br.blocking_rule_sql
                 for br in linker._settings_obj._blocking_rules_to_generate_predictions]
    evidence = evidence_columns([r[0] for r in con.execute(
        f"DESCRIBE {predictions_table}").fetchall()])
    con.execute(f"""
        CREATE TABLE pairs_{party_type} AS
        WITH scored AS (
            SELECT unique_id_l AS source_record_id_l, unique_id_r AS source_record_id_r,
                   {quote_literal(party_type)} AS party_type, match_weight, match_probability,
                   {blocked_sql} AS link_blocked_by,
                   match_key::INTEGER AS match_key, {", ".join(evidence)}
            FROM {predictions_table}
        )
        SELECT source_record_id_l, source_record_id_r, party_type, match_weight,
               match_probability,
               match_weight >= {cut.match} AND link_blocked_by IS NULL AS is_link,
               CASE WHEN match_weight >= {cut.match} THEN link_blocked_by END AS link_blocked_by,
               CASE WHEN match_weight >= {cut.match} AND link_blocked_by IS NULL
                    THEN 'pairwise' END AS link_via,
               NULL::DOUBLE AS cluster_evidence_weight,
               * EXCLUDE (source_record_id_l, source_record_id_r, party_type, match_weight,
                          match_probability, link_blocked_by),
               link_blocked_by AS _guard
        FROM scored
    """)
    # a link made by cluster-level evidence enters clustering with the weight that made it
    con.execute(f"""CREATE VIEW links_{party_type} AS
        SELECT source_record_id_l AS unique_id_l, source_record_id_r AS unique_id_r,
               coalesce(cluster_evidence_weight, match_weight) AS match_weight,
               match_probability FROM pairs_{party_type} WHERE is_link""")
    predicted_at = time.perf_counter()

    def cluster_all() -> str:
        """Connected components of all links, on the configured engine (later rounds re-cluster
        only the clusters they touch, in DuckDB: recluster_affected)."""
        if engine != "spark":
            return connected_clusters(db_api, f"input_{party_type}", f"links_{party_type}",
                                      cut.match).physical_name
        from pipelines.resolve.spark import cluster_on_spark

        links_part = scratch / "links.parquet"
        con.execute(f"COPY links_{party_type} TO {quote_literal(links_part)} (FORMAT parquet)")
        clustered_dir = cluster_on_spark(input_part, links_part, party_type, cut.match,
                                         scratch / "clusters", backend_options("spark"))
        name = f"spark_clusters_{party_type}"
        # materialised: the Spark scratch folder is removed before the counts below
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM "
                    f"read_parquet({quote_path(Path(clustered_dir) / '*.parquet')})")
        return name

    clusters_table = cluster_all()
    n_cluster_evidence = 0
    evidence_cfg = cluster_evidence_settings()
    if party_type in evidence_cfg.get("party_types", ["person"]):
        # DuckDB SQL over the pairs and the clusters, whichever engine clustered them
        n_cluster_evidence = cluster_evidence_links(
            con, f"pairs_{party_type}", clusters_table, model, cut.match, evidence_cfg)
    if n_cluster_evidence:
        # a record left alone joined a cluster: only those clusters change
        clusters_table = recluster_affected(
            con, db_api, clusters_table, f"links_{party_type}",
            f"""SELECT c.cluster_id FROM {clusters_table} c JOIN pairs_{party_type} p
                ON c.unique_id IN (p.source_record_id_l, p.source_record_id_r)
                WHERE p.link_via = 'cluster_evidence'""", cut.match, f"clusters2_{party_type}")
    # a chain of links through an ambiguous record (a lead with only a name and a city) must not
    # join two people: score the pairs inside clusters and cut where they conflict
    scorer = linker if engine != "spark" else _linker(db_api, f"input_{party_type}", model)
    conflict_cfg = cluster_conflict_settings()
    guards_sql, _ = blocked_by_sql(model, party_type, only=set(conflict_cfg["guards"]))
    # a pair scoring far above the match threshold on its own (one person whose birth date one
    # system mistyped: same name, e-mail, phone, address) is no conflict; namesakes with
    # different birth dates, even a father and son at one address, score well below it
    max_weight = (conflict_cfg.get("max_weight") or {}).get(party_type)
    conflict_sql = (guards_sql if max_weight is None else
                    f"CASE WHEN match_weight < {float(max_weight)} THEN {guards_sql} END")
    conflicts = split_conflicted_clusters(con, scorer, f"pairs_{party_type}", clusters_table,
                                          conflict_sql, conflict_cfg)
    if conflicts["links_cut"]:
        # links were cut inside the conflicted clusters only
        clusters_table = recluster_affected(
            con, db_api, clusters_table, f"links_{party_type}",
            f"""SELECT c.cluster_id FROM {clusters_table} c JOIN pairs_{party_type} p
                ON c.unique_id = p.source_record_id_l
                WHERE p.link_blocked_by = {quote_literal(CUT_LABEL)}""", cut.match,
            f"clusters3_{party_type}")
    con.execute(f"""COPY (SELECT * EXCLUDE (_guard) FROM pairs_{party_type}
                          ORDER BY source_record_id_l, source_record_id_r)
                    TO {quote_literal(pairs_part)} (FORMAT parquet)""")
    con.execute(f"""
        COPY (
            SELECT unique_id AS source_record_id, {quote_literal(party_type)} AS party_type, cluster_id
            FROM {clusters_table} ORDER BY source_record_id
        ) TO {quote_literal(clusters_part)} (FORMAT parquet)
    """)
    clustered_at = time.perf_counter()
    pairs_kept, links = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE is_link) FROM pairs_{party_type}"
    ).fetchall()[0]
    blocked = dict(con.execute(
        f"SELECT link_blocked_by, count(*) FROM pairs_{party_type} "
        "WHERE link_blocked_by IS NOT NULL GROUP BY 1 ORDER BY 1").fetchall())
    n_clusters = con.execute(
        f"SELECT count(DISTINCT cluster_id) FROM {clusters_table}").fetchall()[0][0]
    if engine == "spark":
        _remove_spark_scratch(out_dir, party_type)
    if incremental and night is None:
        incremental_counts["why_full"] = why_full
    return {
        "records": n_records,
        "comparisons": n_comparisons,
        "comparisons_per_record": round(n_comparisons / n_records, 3),
        "comparisons_by_blocking_rule": {rules[int(k)]: int(v) for k, v in by_rule.items()},
        "pairs_kept": int(pairs_kept),
        "links": int(links),
        "links_by_cluster_evidence": n_cluster_evidence,
        "cluster_conflicts": conflicts,
        "links_blocked_by_guards": {k: int(v) for k, v in blocked.items()},
        "clusters": int(n_clusters),
        "model_fit": fit,
        "link_guard_notes": guard_notes,
        "prior": model["probability_two_random_records_match"],
        "model_key": key,
        "incremental": incremental_counts,
        "thresholds": {"review_floor": cut.review_floor, "match": cut.match},
        "backend": engine,
        "seconds": {"prepare_and_block": round(blocked_at - started, 3),
                    "predict": round(predicted_at - blocked_at, 3),
                    "cluster": round(clustered_at - predicted_at, 3)},
    }


def _remove_spark_scratch(out_dir: Path, party_type: str) -> None:
    """Spark's intermediate Parquet of one party type (the kept parts hold what it found)."""
    import shutil

    shutil.rmtree(out_dir / f"spark_work_{party_type}", ignore_errors=True)


def _write_empty_parts(con, pairs_part: Path, clusters_part: Path) -> None:
    con.execute(f"""COPY (SELECT NULL::VARCHAR AS source_record_id_l,
        NULL::VARCHAR AS source_record_id_r, NULL::VARCHAR AS party_type,
        NULL::DOUBLE AS match_weight, NULL::DOUBLE AS match_probability,
        NULL::BOOLEAN AS is_link, NULL::VARCHAR AS link_blocked_by,
        NULL::INTEGER AS match_key LIMIT 0)
        TO {quote_literal(pairs_part)} (FORMAT parquet)""")
    con.execute(f"""COPY (SELECT NULL::VARCHAR AS source_record_id, NULL::VARCHAR AS party_type,
        NULL::VARCHAR AS cluster_id LIMIT 0) TO {quote_literal(clusters_part)} (FORMAT parquet)""")


def _model_name(party_type: str, models: dict | None) -> str:
    source = (models or {}).get(party_type) or model_paths()[party_type]
    return "(in-memory settings)" if isinstance(source, dict) else str(source)


def predict_and_cluster(run: RunPaths, models: dict | None = None, base: RunPaths | None = None,
                        incremental: bool = False) -> ResolveResult:
    """Resolve a run's staged source records into match pairs and clusters (both party types);
    `incremental`: reuse the `base` night's pairs among unchanged records (incremental.py)."""
    import duckdb

    from pipelines.resolve.incremental import RECORD_FINGERPRINTS_FILE

    records_path = run.staged_dir / "source_records.parquet"
    if not records_path.is_file():
        raise FileNotFoundError(f"{records_path} is missing: run ingest for {run.run_id} first")
    run.resolved_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    per_party = {}
    for party_type in PARTY_TYPES:
        per_party[party_type] = resolve_party(records_path, party_type, models,
                                              run.resolved_dir, base, incremental)

    pairs_path = run.resolved_dir / MATCH_PAIRS_FILE
    clusters_path = run.resolved_dir / CLUSTERS_FILE
    pair_parts = [str(run.resolved_dir / f".pairs_{p}.parquet") for p in PARTY_TYPES]
    cluster_parts = [str(run.resolved_dir / f".clusters_{p}.parquet") for p in PARTY_TYPES]
    con = duckdb.connect()
    # union_by_name: person and organization pairs carry different evidence columns
    con.execute(f"COPY (SELECT * FROM read_parquet({pair_parts}, union_by_name = true)) "
                f"TO {quote_literal(pairs_path)} (FORMAT parquet)")
    con.execute(f"COPY (SELECT * FROM read_parquet({cluster_parts})) "
                f"TO {quote_literal(clusters_path)} (FORMAT parquet)")
    print_parts = [str(run.resolved_dir / f".fingerprints_{p}.parquet") for p in PARTY_TYPES]
    con.execute(f"COPY (SELECT * FROM read_parquet({print_parts})) "
                f"TO {quote_literal(run.resolved_dir / RECORD_FINGERPRINTS_FILE)} (FORMAT parquet)")
    con.close()
    for part in pair_parts + cluster_parts + print_parts:
        Path(part).unlink(missing_ok=True)

    n_records = sum(p["records"] for p in per_party.values())
    n_comparisons = sum(p["comparisons"] for p in per_party.values())
    summary = {
        "run_id": run.run_id,
        "models": {p: _model_name(p, models) for p in PARTY_TYPES},
        "records": n_records,
        "comparisons": n_comparisons,
        "comparisons_per_record": round(n_comparisons / n_records, 3) if n_records else 0.0,
        "party_types": per_party,
        "seconds_total": round(time.perf_counter() - started, 3),
    }
    summary_path = run.resolved_dir / SUMMARY_FILE
    summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return ResolveResult(pairs_path, clusters_path, summary_path, summary)
