"""Resolver on the small hand-made canonical sample: training, prediction, clustering, real time."""

from __future__ import annotations

import json
import math

import duckdb
import pandas as pd
import pytest

from pipelines.resolve import (
    evaluate,
    load_linker,
    predict_and_cluster,
    train_models,
    write_charts,
)
from pipelines.resolve.bench import bench_resolve
from pipelines.resolve.config import model_paths, thresholds
from pipelines.resolve.model import guard_sql, level_gammas
from pipelines.resolve.sample import write_sample
from pipelines.settings import RunPaths


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("resolve_sample")
    records_path, truth_path = write_sample(root / "sample", seed=7)
    models = train_models(records_path, seed=42, models_dir=root / "models")
    run = RunPaths.for_run("2026-03-01", base=root / "runs").ensure()
    (run.staged_dir / "source_records.parquet").write_bytes(records_path.read_bytes())
    result = predict_and_cluster(run, models=models)
    return {"root": root, "records": records_path, "truth_dir": truth_path.parent,
            "models": models, "run": run, "result": result}


def test_training_writes_versioned_json_and_is_reproducible(sample):
    models = sample["models"]
    assert {p: path.name for p, path in models.items()} == {
        "person": "person-v1.json", "organization": "organization-v1.json"}
    again = train_models(sample["records"], seed=42, models_dir=sample["root"] / "models_again")
    for party_type, path in models.items():
        assert again[party_type].read_bytes() == path.read_bytes()
    # retraining into the same folder on the same data finds the identical version
    assert train_models(sample["records"], seed=42, models_dir=sample["root"] / "models") == models


def test_every_record_gets_exactly_one_cluster_and_pairs_respect_the_floor(sample):
    result = sample["result"]
    con = duckdb.connect()
    n_records, n_clustered, n_distinct = con.execute(f"""
        SELECT (SELECT count(*) FROM read_parquet('{sample["records"]}')),
               (SELECT count(*) FROM read_parquet('{result.clusters_path}')),
               (SELECT count(DISTINCT source_record_id) FROM read_parquet('{result.clusters_path}'))
    """).fetchall()[0]
    assert n_records == n_clustered == n_distinct
    pairs = pd.read_parquet(result.match_pairs_path)
    for party_type, group in pairs.groupby("party_type"):
        assert group["match_weight"].min() >= thresholds(party_type).review_floor
    assert {"gamma_given_name", "mw_birth_date", "gamma_org_name"} <= set(pairs.columns)
    assert (pairs["source_record_id_l"] < pairs["source_record_id_r"]).all()
    summary = json.loads(result.summary_path.read_text())
    assert summary["records"] == n_records
    assert 0 < summary["party_types"]["person"]["comparisons_per_record"] < 50


def test_sample_resolves_without_merging_hard_negatives(sample):
    result = evaluate(sample["result"].clusters_path, sample["result"].match_pairs_path,
                      sample["truth_dir"])
    assert result["overall"]["pairwise_precision"] >= 0.99
    assert result["overall"]["pairwise_recall"] >= 0.95
    assert all(v["merged"] == 0 for v in result["hard_negative_groups"].values())


def test_realtime_linker_finds_the_stored_twin_of_a_new_record(sample):
    records = pd.read_parquet(sample["records"])
    persons = records[records["party_type"] == "person"]
    truth = pd.read_parquet(sample["truth_dir"] / "ground_truth.parquet")
    sizes = truth.groupby("entity_id")["source_record_id"].transform("size")
    stored_id = truth.loc[(sizes >= 2) & (truth["party_type"] == "person"), "source_record_id"].iloc[0]
    new = persons[persons["source_record_id"] == stored_id].copy()
    new["source_record_id"] = "web:new-lead"
    linker = load_linker("person", persons, models=sample["models"])
    matches = linker.match(new)
    entity = truth.set_index("source_record_id")["entity_id"]
    best = matches.iloc[0]
    assert entity[best["unique_id_l"]] == entity[stored_id]
    assert best["match_weight"] >= thresholds("person").match


NEGATIVE_LEVELS = {
    "given_name": "Different given name", "sex": "Different sex",
    "birth_date": "Different birth date", "name_suffix": "Different suffix (JR vs SR)",
    "phone_mobile": "Different personal mobile", "national_id": "Different national ID",
}


def _level_weights(model: dict) -> dict[tuple[str, str], float]:
    weights = {}
    for comparison in model["comparisons"]:
        for level in comparison["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            m, u = level.get("m_probability"), level.get("u_probability")
            if m and u:
                weights[(comparison["output_column_name"], level["label_for_charts"])] = \
                    math.log2(m / u)
    return weights


def test_committed_person_model_pushes_contradicting_evidence_down():
    path = model_paths()["person"]
    if not path.is_file():
        pytest.fail(f"no committed person model at {path}")
    weights = _level_weights(json.loads(path.read_text()))
    for comparison, label in NEGATIVE_LEVELS.items():
        assert weights[(comparison, label)] < -1, (comparison, label)
    # a shared landline (address differs) is weak evidence, far below a shared mobile; and
    # address, landline and e-mail are one household comparison, so they never add up
    landline = weights.get(("household", "Same landline, address differs"), 0.0)
    assert landline <= 4.0 + 1e-6
    assert landline < weights[("phone_mobile", "Exact match on phone_mobile")] - 3
    comparisons = {c["output_column_name"] for c in json.loads(path.read_text())["comparisons"]}
    assert "email" not in comparisons and "phone_landline" not in comparisons


def test_guards_name_existing_levels_and_block_conflicting_pairs():
    model = json.loads(model_paths()["person"].read_text())
    # gamma values follow level order: null -1, then n-1 down to 0 for the "else" level
    given_levels = [lv for lv in model["comparisons"][0]["comparison_levels"]
                    if not lv.get("is_null_level")]
    assert level_gammas(model, "given_name", [given_levels[0]["label_for_charts"]]) == \
        [len(given_levels) - 1]
    assert level_gammas(model, "given_name", ["Different given name"]) == [0]
    with pytest.raises(KeyError):
        level_gammas(model, "given_name", ["No such level"])
    con = duckdb.connect()
    guard = {"when": {"given_name": ["Different given name"]},
             "unless": {"phone_mobile": ["Exact match on phone_mobile"]}}
    mobile_exact = level_gammas(model, "phone_mobile", ["Exact match on phone_mobile"])[0]
    rows = [(0, 0), (0, mobile_exact), (1, 0), (-1, -1)]
    con.execute("CREATE TABLE pairs (gamma_given_name INT, gamma_phone_mobile INT)")
    con.executemany("INSERT INTO pairs VALUES (?, ?)", rows)
    blocked = [r[0] for r in con.execute(
        f"SELECT {guard_sql(model, guard)} FROM pairs").fetchall()]
    assert blocked == [True, False, False, False]


def test_charts_are_written_with_inline_javascript(sample):
    paths = write_charts(sample["run"], models=sample["models"])
    names = {p.name for p in paths}
    assert {"person_match_weights.html", "person_m_u_parameters.html", "person_waterfall.html",
            "cluster_sizes.html"} <= names
    for path in paths:
        html = path.read_text(encoding="utf-8")
        assert path.parent == sample["run"].report_dir / "charts"
        assert "cdn.jsdelivr" not in html and "vega" in html  # opens offline


def test_the_waterfall_shows_the_runs_own_pairs_and_prior(sample):
    """Each waterfall's bars add up to the weight the run stored for that pair, from the prior
    the run scored with (rescaled to its record count), and show no compared values."""
    import json
    import math
    import re

    run = sample["run"]
    write_charts(run, models=sample["models"])
    html = (run.report_dir / "charts" / "person_waterfall.html").read_text(encoding="utf-8")
    bars: dict[int, list[dict]] = {}
    for text in re.findall(r'\{[^{}]*"record_number": \d+[^{}]*\}', html):
        bar = json.loads(text)
        bars.setdefault(bar["record_number"], []).append(bar)
    assert len(bars) >= 4
    stored = sorted(pd.read_parquet(run.resolved_dir / "match_pairs.parquet").query(
        "party_type == 'person'")["match_weight"])
    summary = json.loads((run.resolved_dir / "resolve_summary.json").read_text())
    from pipelines.resolve.predict import load_model, load_training_profile, scale_prior

    prior = scale_prior(load_model("person", sample["models"]),
                        load_training_profile("person", sample["models"]),
                        summary["party_types"]["person"]["records"])[
        "probability_two_random_records_match"]
    for record in bars.values():
        final = next(b["log2_bayes_factor"] for b in record if b["column_name"] == "Final score")
        assert sum(b["log2_bayes_factor"] for b in record
                   if b["column_name"] != "Final score") == pytest.approx(final, abs=1e-6)
        assert min(abs(final - w) for w in stored) < 1e-9  # a pair the run itself scored
        assert record[0]["log2_bayes_factor"] == pytest.approx(
            math.log2(prior / (1 - prior)), abs=1e-9)
        assert all(b["value_l"] == "" and b["value_r"] == "" for b in record)


def test_bench_resolve_reports_time_memory_and_comparisons(sample):
    figures = bench_resolve(sample["run"], models=sample["models"])
    assert figures["records"] == len(pd.read_parquet(sample["records"]))
    assert figures["seconds"] > 0 and figures["peak_rss_mib"] > 0
    assert figures["comparisons_per_record"] > 0


def test_a_run_without_organizations_still_resolves(sample, tmp_path):
    records = pd.read_parquet(sample["records"])
    run = RunPaths.for_run("2026-03-02", base=tmp_path).ensure()
    records[records["party_type"] == "person"].to_parquet(
        run.staged_dir / "source_records.parquet", index=False)
    result = predict_and_cluster(run, models=sample["models"])
    assert result.summary["party_types"]["organization"]["records"] == 0
    clusters = pd.read_parquet(result.clusters_path)
    assert set(clusters["party_type"]) == {"person"}
    assert len(clusters) == (records["party_type"] == "person").sum()
