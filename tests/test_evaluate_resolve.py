"""Evaluation metrics against hand-computed values on tiny examples and a brute-force oracle."""

from __future__ import annotations

import itertools
import random

import pandas as pd
import pytest

from pipelines.resolve.evaluate import evaluate


def _write(tmp_path, clusters: dict[str, str], entities: dict[str, str], hard=None):
    truth_dir = tmp_path / "truth"
    truth_dir.mkdir(exist_ok=True)
    ids = sorted(entities)
    pd.DataFrame({"source_record_id": sorted(clusters), "party_type": "person",
                  "cluster_id": [clusters[i] for i in sorted(clusters)]}
                 ).to_parquet(tmp_path / "clusters.parquet")
    hard = hard or {}
    pd.DataFrame({"source_record_id": ids, "entity_id": [entities[i] for i in ids],
                  "party_type": "person",
                  "hard_case": [hard.get(entities[i], (None, None))[0] for i in ids],
                  "hard_case_group": [hard.get(entities[i], (None, None))[1] for i in ids],
                  "noise": [["typo"] if i.endswith("t") else [] for i in ids]}
                 ).to_parquet(truth_dir / "ground_truth.parquet")
    return tmp_path / "clusters.parquet", truth_dir


def test_hand_computed_example(tmp_path):
    # truth: A = {1, 2, 3}, B = {4, 5}; clusters: {1, 2}, {3, 4, 5}
    clusters = {"1": "c1", "2": "c1", "3": "c2", "4": "c2", "5": "c2"}
    entities = {"1": "A", "2": "A", "3": "A", "4": "B", "5": "B"}
    path, truth = _write(tmp_path, clusters, entities)
    m = evaluate(path, None, truth)["overall"]
    # predicted pairs: (1,2) (3,4) (3,5) (4,5) = 4; true: (1,2) (1,3) (2,3) (4,5) = 4; TP = 2
    assert m["predicted_pairs"] == 4 and m["true_pairs"] == 4 and m["true_positive_pairs"] == 2
    assert m["pairwise_precision"] == pytest.approx(0.5)
    assert m["pairwise_recall"] == pytest.approx(0.5)
    # B-cubed precision per record: 1: 2/2, 2: 2/2, 3: 1/3, 4: 2/3, 5: 2/3 -> 3.667/5
    assert m["bcubed_precision"] == pytest.approx((1 + 1 + 1 / 3 + 2 / 3 + 2 / 3) / 5, abs=1e-6)
    # B-cubed recall per record: 1: 2/3, 2: 2/3, 3: 1/3, 4: 1, 5: 1 -> 3.667/5
    assert m["bcubed_recall"] == pytest.approx((2 / 3 + 2 / 3 + 1 / 3 + 1 + 1) / 5, abs=1e-6)
    assert m["false_merges"] == 1  # c2 mixes A and B
    assert m["splits"] == 1  # A is spread over c1 and c2


def test_perfect_clustering_scores_one_and_hard_negatives_count_merges(tmp_path):
    clusters = {"1": "x", "2": "x", "3": "y", "4": "y", "5": "y"}
    entities = {"1": "A", "2": "A", "3": "T1", "4": "T2", "5": "T2"}
    hard = {"T1": ("twin", "g1"), "T2": ("twin", "g1")}
    path, truth = _write(tmp_path, clusters, entities, hard)
    result = evaluate(path, None, truth)
    assert result["by_party_type"]["person"]["pairwise_precision"] < 1
    twin = result["by_hard_case"]["twin"]
    assert twin["false_merges"] == 1 and twin["pairwise_precision"] == pytest.approx(1 / 3)
    assert result["hard_negative_groups"]["twin"] == {"entity_pairs": 1, "merged": 1}


def _brute_force(clusters: dict[str, str], entities: dict[str, str]) -> dict[str, float]:
    ids = sorted(clusters)
    same_c = {(a, b) for a, b in itertools.combinations(ids, 2) if clusters[a] == clusters[b]}
    same_e = {(a, b) for a, b in itertools.combinations(ids, 2) if entities[a] == entities[b]}
    tp = len(same_c & same_e)
    bp = sum(sum(1 for o in ids if clusters[o] == clusters[i] and entities[o] == entities[i])
             / sum(1 for o in ids if clusters[o] == clusters[i]) for i in ids) / len(ids)
    br = sum(sum(1 for o in ids if clusters[o] == clusters[i] and entities[o] == entities[i])
             / sum(1 for o in ids if entities[o] == entities[i]) for i in ids) / len(ids)
    return {"precision": tp / len(same_c) if same_c else 1.0,
            "recall": tp / len(same_e) if same_e else 1.0, "bp": bp, "br": br}


@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force_on_random_partitions(tmp_path, seed):
    rng = random.Random(seed)
    ids = [f"r{i:03d}" for i in range(rng.randrange(5, 60))]
    entities = {i: f"E{rng.randrange(0, len(ids) // 2 + 1)}" for i in ids}
    clusters = {i: (entities[i] if rng.random() < 0.7 else f"C{rng.randrange(0, 5)}")
                for i in ids}
    path, truth = _write(tmp_path, clusters, entities)
    m = evaluate(path, None, truth)["overall"]
    oracle = _brute_force(clusters, entities)
    assert m["pairwise_precision"] == pytest.approx(oracle["precision"], abs=1e-6)
    assert m["pairwise_recall"] == pytest.approx(oracle["recall"], abs=1e-6)
    assert m["bcubed_precision"] == pytest.approx(oracle["bp"], abs=1e-6)
    assert m["bcubed_recall"] == pytest.approx(oracle["br"], abs=1e-6)


# --- by kind and blocking recall -------------------------------------------------------------------

def _write_kinds(tmp_path, clusters: dict[str, str], entities: dict[str, str],
                 kinds: dict[str, list[str]], party: dict[str, str] | None = None):
    path, truth = _write(tmp_path, clusters, entities)
    ids = sorted(entities)
    frame = pd.read_parquet(truth / "ground_truth.parquet")
    frame["kinds"] = [kinds.get(i, []) for i in ids]
    if party:
        frame["party_type"] = [party.get(i, "person") for i in ids]
    frame.to_parquet(truth / "ground_truth.parquet")
    return path, truth


def test_by_kind_split_rate_split_off_and_false_merges(tmp_path):
    # A = {1, 2, 3} split into {1, 2} and {3}; B = {4, 5} whole; C = {6} merged into B's cluster
    clusters = {"1": "c1", "2": "c1", "3": "c2", "4": "c3", "5": "c3", "6": "c3"}
    entities = {"1": "A", "2": "A", "3": "A", "4": "B", "5": "B", "6": "C"}
    kinds = {"3": ["moved"], "1": ["moved", "nickname"], "4": ["nickname"], "6": ["typo"]}
    path, truth = _write_kinds(tmp_path, clusters, entities, kinds)
    by_kind = evaluate(path, None, truth)["by_kind"]
    moved = by_kind["moved"]
    assert (moved["entities"], moved["split_entities"], moved["split_rate"]) == (1, 1, 1.0)
    assert (moved["records"], moved["records_split_off"]) == (2, 1)  # record 3 left A's main cluster
    assert moved["false_merge_clusters"] == 0
    nickname = by_kind["nickname"]
    assert (nickname["entities"], nickname["split_entities"]) == (2, 1)
    assert nickname["false_merge_clusters"] == 1 and nickname["wrongly_merged_pairs"] == 1  # (4, 6)
    typo = by_kind["typo"]
    assert typo["split_rate"] == 0 and typo["wrongly_merged_pairs"] == 2  # (4, 6) and (5, 6)


def test_blocking_recall_against_brute_force(tmp_path):
    rng = random.Random(3)
    ids = [f"r{i:03d}" for i in range(60)]
    entities = {i: f"E{rng.randrange(0, 20)}" for i in ids}
    party = {i: "organization" if entities[i] in ("E0", "E1") else "person" for i in ids}
    wrong = {"r000", "r001"}  # records keyed with the wrong party type
    emails = {e: f"{e.lower()}@example.org" for e in set(entities.values())}
    records = pd.DataFrame({
        "source_record_id": ids,
        "party_type": [("person" if party[i] == "organization" else "organization") if i in wrong else party[i]
                       for i in ids],
        "email": [emails[entities[i]] if rng.random() < 0.6 else None for i in ids],
        "phone_mobile": [f"+4915{entities[i][1:]}" if rng.random() < 0.5 else None for i in ids],
        "org_name_norm": [entities[i].lower() for i in ids],
    })
    records.to_parquet(tmp_path / "records.parquet")
    models = {"person": {"blocking_rules_to_generate_predictions": [
                  {"blocking_rule": 'l."email" = r."email"', "sql_dialect": "duckdb"},
                  {"blocking_rule": 'l."phone_mobile" = r."phone_mobile"', "sql_dialect": "duckdb"}]},
              "organization": {"blocking_rules_to_generate_predictions": [
                  {"blocking_rule": "l.org_name_norm = r.org_name_norm", "sql_dialect": "duckdb"}]}}
    clusters = dict.fromkeys(ids, "c")
    kinds = {i: ["party_type_wrong"] for i in wrong}
    path, truth = _write_kinds(tmp_path, clusters, entities, kinds, party)
    result = evaluate(path, None, truth, records_path=tmp_path / "records.parquet", models=models)["blocking"]
    row = {r.source_record_id: r for r in records.itertuples()}

    def blocked(a: str, b: str) -> bool:
        x, y = row[a], row[b]
        if x.party_type != y.party_type:
            return False
        if x.party_type == "organization":
            return x.org_name_norm == y.org_name_norm
        return any(getattr(x, c) is not None and getattr(x, c) == getattr(y, c) for c in ("email", "phone_mobile"))

    pairs = [(a, b) for a, b in itertools.combinations(ids, 2) if entities[a] == entities[b]]
    assert result["overall"]["true_pairs"] == len(pairs)
    assert result["overall"]["blocked_pairs"] == sum(blocked(a, b) for a, b in pairs)
    touched = [(a, b) for a, b in pairs if a in wrong or b in wrong]
    figures = result["by_kind"]["party_type_wrong"]
    assert figures["true_pairs"] == len(touched) and figures["blocked_pairs"] == sum(blocked(a, b) for a, b in touched)


def test_evidence_ceiling_joins_patterns_by_their_true_share_and_undoes_false_merges(tmp_path):
    # truth: E1 {1, 2}, E2 {3}, E3 {4, 5}, E4 {6, 7}; clusters: 3 and 4 falsely merged, rest apart
    clusters = {"1": "a", "2": "b", "3": "c", "4": "c", "5": "d", "6": "e", "7": "f"}
    entities = {"1": "E1", "2": "E1", "3": "E2", "4": "E3", "5": "E3", "6": "E4", "7": "E4"}
    path, truth = _write(tmp_path, clusters, entities)
    # evidence pattern X (level 2) is true twice, never false; W (level 1) once true, once false
    pairs = pd.DataFrame({
        "source_record_id_l": ["1", "4", "2", "3", "6", "3"],
        "source_record_id_r": ["2", "5", "3", "5", "7", "4"],
        "party_type": "person",
        "gamma_name": [2, 2, 0, 1, 1, 0],
        "mw_tf_adj_name": [0.1, 0.2, 0.0, 0.0, 0.0, 0.0],
        "match_weight": [1.0, 1.0, -1.0, 0.0, 0.0, 7.0],
        "is_link": [False, False, False, False, False, True]})
    pairs.to_parquet(tmp_path / "pairs.parquet")
    result = evaluate(path, tmp_path / "pairs.parquet", truth, ceiling=True)
    assert result["overall"]["pairwise_precision"] == 0.0  # only the false (3, 4) is joined
    sweep = {s["min_true_per_false"]: s for s in result["evidence_ceiling"]["sweep"]}
    # any ratio above 1: X joins (1, 2) and (4, 5), W stays apart; (3, 4) is undone
    assert sweep[1.5]["pairwise_precision"] == 1.0
    assert sweep[1.5]["pairwise_recall"] == pytest.approx(2 / 3, abs=1e-6)
    assert sweep[1.5]["components_joined"] == 2
    # at 1:1, W joins (6, 7) and the false (3, 5): {3, 4, 5} has one true pair of three
    assert sweep[1.0]["pairwise_recall"] == 1.0
    assert sweep[1.0]["pairwise_precision"] == pytest.approx(3 / 5, abs=1e-6)
    assert result["evidence_ceiling"]["recall_at_floor"] == pytest.approx(2 / 3, abs=1e-6)
