"""Quality regression: generate -> ingest -> predict -> evaluate on a small seeded set.

Uses the committed models (schemas/models) and thresholds (schemas/resolution.yaml). The floors
are the figures measured on this exact set when the models were committed, minus a small margin;
a change to comparisons, blocking, thresholds or upstream standardization that costs quality fails.
"""

from __future__ import annotations

import pytest

from pipelines.generate import generate_exports
from pipelines.ingest import ingest
from pipelines.resolve import evaluate, predict_and_cluster
from pipelines.settings import RunPaths

CUSTOMERS = 3000
SEED = 11
# measured on this set (CUSTOMERS, SEED) with the committed models v1 (2026-11-23):
# precision 1.0, recall 0.99806 (7,777 records, 0 false merges, 12 splits).
# Re-measured after the generator added the kinds of issue 12 (related companies, English and
# Cantonese names, companies typed as persons, whole names in the family field), same models:
# precision 0.99132, recall 0.99478 (7,768 records, 9 false merges -- 8 of them organizations,
# 14 of 17 related-company pairs merged -- and 30 splits).
# Re-measured with models v4 (2026-12-01: derived with related-company tokens and qualifiers,
# name origin, cluster conflicts on): precision 0.99652, recall 0.99734 (7,768 records, 4 of 17
# related-company pairs merged).
MEASURED = {"precision": 0.9965, "recall": 0.9973}
MARGIN = {"precision": 0.005, "recall": 0.01}


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    root = tmp_path_factory.mktemp("resolve_regression")
    generate_exports(root / "gen", customers=CUSTOMERS, seed=SEED)
    run = RunPaths.for_run("2026-11-22", base=root / "runs")
    ingest(root / "gen" / "landing", run)
    result = predict_and_cluster(run)
    return evaluate(result.clusters_path, result.match_pairs_path, root / "gen" / "truth")


def test_pairwise_precision_and_recall_do_not_drop(evaluation):
    overall = evaluation["overall"]
    assert overall["pairwise_precision"] >= MEASURED["precision"] - MARGIN["precision"], overall
    assert overall["pairwise_recall"] >= MEASURED["recall"] - MARGIN["recall"], overall


def test_hard_negatives_stay_apart(evaluation):
    groups = evaluation["hard_negative_groups"]
    assert groups, "the generator made no hard-negative groups"
    # related companies are today's known weakness (issue 12): guarded separately below
    others = {k: v for k, v in groups.items() if k != "related_company"}
    merged = sum(v["merged"] for v in others.values())
    total = sum(v["entity_pairs"] for v in others.values())
    assert merged <= 0.02 * total, groups
    # a company and its owner are never one customer: party types are resolved separately
    assert groups.get("company_owner", {"merged": 0})["merged"] == 0
    related = groups.get("related_company", {"merged": 0, "entity_pairs": 0})
    # 15 of 17 with models v3 (trained before org_name_tokens and org_name_qualifiers existed),
    # 4 of 17 with v4: must not get worse
    assert related["merged"] <= 5, related
