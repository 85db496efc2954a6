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
# Re-measured with models v5 (2026-12-01: Cantonese given names, Chinese structural words of
# company names, one company name inside the other): precision 0.99795, recall 0.99775 (2 of 17
# related-company pairs merged; persons 1.0 / 0.99779, organizations 0.97297 / 0.99723); with
# qualifiers counted per word ("X Holdings Holdings") and company names unique per city in the
# generator: precision 0.99918, recall 0.99775 (1 false merge). Models v6 (related companies by
# the name without its structural words): precision 1.0, recall 0.99775, 0 of 17 related-company
# pairs merged, 0 false merges. Models v7 (an older record's address and mobile learnt jointly,
# phonetic and capped name + city blocking keys, names in another order scaled by their
# frequency): precision 1.0, recall 0.99836 (11 splits, 0 false merges; typos split 0.47 %
# instead of 0.94 %, names in another order 0 % instead of 0.53 %).
MEASURED = {"precision": 1.0, "recall": 0.9983}
MARGIN = {"precision": 0.005, "recall": 0.01}
# split rate per kind of customer (truth `kinds`) on this set with models v5 (the same with v6
# and v7, but for typos 0.0094 -> 0.0047, names in another order 0.0053 -> 0, missing fields
# 0.0101 -> 0.0084), and its entities;
# a kind may rise by two of its entities (or 2 points) before the test fails
MEASURED_SPLIT_RATE = {
    "cantonese_romanisation": (0.0566, 53), "company_owner": (0.0045, 224),
    "english_given_name": (0.0308, 65), "full_name_in_family_field": (0.0, 73),
    "invalid_id_checksum": (0.0, 75), "legal_form_variant": (0.0062, 162),
    "missing_field": (0.0084, 592), "moved": (0.0338, 148), "nickname": (0.0390, 77),
    "organization": (0.0022, 450), "party_type_wrong": (0.05, 20), "related_company": (0.0, 25),
    "surname_change": (0.0, 36), "swapped_day_month": (0.0137, 73),
    "swapped_name_order": (0.0, 188), "typo": (0.0047, 213), "wrong_column": (0.0127, 79),
}
PARTY_PRECISION = {"person": 0.999, "organization": 0.99}


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
    # 4 of 17 with v4, 2 of 17 with v5, 0 with v6: one is allowed
    assert related["merged"] <= 1, related


def test_split_rate_by_kind_does_not_rise(evaluation):
    by_kind = evaluation["by_kind"]
    assert set(MEASURED_SPLIT_RATE) <= set(by_kind), sorted(by_kind)
    risen = {}
    for kind, (measured, entities) in MEASURED_SPLIT_RATE.items():
        allowed = measured + max(0.02, 2 / entities)
        if by_kind[kind]["split_rate"] > allowed:
            risen[kind] = (by_kind[kind]["split_rate"], round(allowed, 4))
    assert not risen, risen


def test_precision_by_party_type_does_not_drop(evaluation):
    for party, floor in PARTY_PRECISION.items():
        assert evaluation["by_party_type"][party]["pairwise_precision"] >= floor, party
