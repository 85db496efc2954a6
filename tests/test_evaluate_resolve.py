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
