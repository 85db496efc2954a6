"""golden_accuracy against a hand-made ground truth: shares per field and what was reachable."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from golden_builders import small_portfolio

from pipelines.golden import build_golden, golden_accuracy, publish_warehouse
from pipelines.settings import RunPaths


@pytest.fixture(scope="module")
def run_and_truth(tmp_path_factory):
    base = tmp_path_factory.mktemp("accuracy")
    run = small_portfolio(RunPaths.for_run("2026-11-22", base=base / "runs"))
    build_golden(run, date(2026, 11, 22))
    truth = base / "truth"
    truth.mkdir()
    entity_of = {"underwriting:UW-1": "E1", "servicing:SV-1": "E1", "sales:L-1": "E1",
                 "claims:C-1": "E1", "servicing:SV-2": "E2", "servicing:SV-3": "E2",
                 "sales:L-2": "E3", "sales:L-3": "E4", "sales:L-4": "E4"}  # C4 + C5: one person
    pd.DataFrame({"source_record_id": list(entity_of), "entity_id": list(entity_of.values())}
                 ).to_parquet(truth / "ground_truth.parquet")
    pd.DataFrame([
        {"entity_id": "E1", "given_name": "Thomas", "family_name": "MUELLER",
         "birth_date": date(1985, 3, 14), "phone_mobile": "+491512345678"},
        # no record shows Anna's married name or her mobile
        {"entity_id": "E2", "given_name": "Anna", "family_name": "Schmidt",
         "birth_date": date(1987, 7, 1), "phone_mobile": "+4915100000099"},
        {"entity_id": "E3", "given_name": None, "family_name": None, "birth_date": None,
         "phone_mobile": None},
        {"entity_id": "E4", "given_name": "丽", "family_name": "王",
         "birth_date": date(1990, 1, 1), "phone_mobile": "+8613812345678"},
    ]).to_parquet(truth / "entities.parquet")
    return run, truth


EXPECTED = {
    # persons C1, C2, C4, C5 (C3 is an organization)
    "customers": 4,
    "name": 0.75,          # C2 wrong; 'Li Wang' and '王丽' both equal 王丽 after folding
    "birth_date": 0.5,     # C4, C5 have none
    "phone_mobile": 0.5,   # C2 has none, C5 has another number
    "all_three": 0.25,
    "reachable_name": 0.75,
    "reachable_birth_date": 0.5,
    "reachable_phone_mobile": 0.5,
    "reachable_all_three": 0.25,
    "name_where_reachable": 1.0,
    "birth_date_where_reachable": 1.0,
    "phone_mobile_where_reachable": 1.0,
    "all_three_where_reachable": 1.0,
}


def test_accuracy_of_a_run(run_and_truth):
    run, truth = run_and_truth
    assert golden_accuracy(run, truth) == EXPECTED


def test_accuracy_of_a_published_warehouse(run_and_truth, tmp_path):
    run, truth = run_and_truth
    path = publish_warehouse(run, tmp_path / "wh")
    assert golden_accuracy(path, truth) == EXPECTED
    assert golden_accuracy(tmp_path / "wh", truth) == EXPECTED


def test_a_true_value_some_record_holds_but_golden_missed_counts_against_the_rules(
        run_and_truth, tmp_path):
    run, truth = run_and_truth
    entities = pd.read_parquet(truth / "entities.parquet")
    entities.loc[entities["entity_id"] == "E1", "given_name"] = "Tom"  # only sales:L-1 says Tom
    entities.to_parquet(tmp_path / "entities.parquet")
    (tmp_path / "ground_truth.parquet").write_bytes((truth / "ground_truth.parquet").read_bytes())
    result = golden_accuracy(run, tmp_path)
    assert result["name"] == 0.5 and result["reachable_name"] == 0.75
    assert result["name_where_reachable"] == pytest.approx(0.6667)
    assert result["all_three_where_reachable"] == 0.0  # C1 was the only fully reachable one
