"""The hand-written bare-Splink baseline runs end to end on a tiny generated sample and links it."""

import json

import pytest

from pipelines.bench.handwritten import main
from pipelines.generate import generate_exports

STEPS = ("read", "standardize", "train", "predict", "cluster")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One run of `python -m pipelines.bench.handwritten` on 500 customers (about 1,250 records)."""
    root = tmp_path_factory.mktemp("handwritten")
    summary = generate_exports(root / "gen", customers=500, seed=3)
    out = root / "results.json"
    assert main([str(root / "gen" / "landing"), "--truth", str(root / "gen" / "truth"),
                 "--out", str(out), "--work", str(root / "work"), "--seed", "3",
                 "--count-comparisons"]) == 0
    return summary, json.loads(out.read_text(encoding="utf-8")), root / "work"


def test_every_step_is_timed_and_every_record_is_read_and_clustered(run):
    summary, result, work = run
    assert set(result["seconds"]) == {*STEPS, "total"}
    assert all(result["seconds"][step] > 0 for step in STEPS)
    assert result["peak_rss_mib"] > 0
    assert result["source_rows"] == {
        "raw_sales": summary.records_per_source["sales"],
        "raw_underwriting": summary.records_per_source["underwriting"],
        "raw_servicing": summary.records_per_source["servicing"],
        "raw_claims": summary.records_per_source["claims"]}
    parties = result["party_types"]
    assert sum(p["records"] for p in parties.values()) == summary.total_records
    for party in parties.values():
        assert 0 < party["clusters"] < party["records"] and party["pairs"] > 0
        assert party["blocking"][-1]["cumulative"] == sum(r["marginal"] for r in party["blocking"])
    assert (work / "clusters.parquet").is_file()


def test_the_clusters_join_the_truth_and_link_most_true_pairs(run):
    summary, result, _ = run
    quality = result["quality"]
    # unique ids are the truth's source_record_id, and every true record was read
    assert quality["records_not_in_truth"] == 0 and quality["truth_records_not_clustered"] == 0
    assert quality["overall"]["records"] == summary.total_records
    # Loose floors that a broken script (ids that do not join, no pairs, one giant cluster) fails.
    # Bare Splink merges households that share an e-mail, a landline and the address, so its
    # precision stays well under the pipeline's (0.84 for persons on this sample).
    persons = quality["person"]
    assert persons["pairwise_recall"] > 0.9 and persons["pairwise_precision"] > 0.7
    assert quality["organization"]["pairwise_recall"] > 0.9
    assert quality["organization"]["pairwise_precision"] > 0.9
