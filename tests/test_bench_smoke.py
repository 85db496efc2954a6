"""The bench code runs end to end on a tiny size (no timing assertions: figures come from make bench)."""

import json
import os

from pipelines.bench.run import bench_one_size, summary_table


def test_bench_one_size_reports_every_stage_and_the_baseline(tmp_path, monkeypatch):
    monkeypatch.setenv("UCV_HOME", str(tmp_path / "home"))
    result = bench_one_size(600, seed=3, work=tmp_path / "bench")

    assert 400 <= result["source_records"] <= 800
    stages = result["stages"]
    for stage in ("standardize", "resolve", "identify", "golden", "publish", "export"):
        assert stages[stage]["seconds"] is not None and stages[stage]["peak_rss_mib"] > 0
    assert result["pipeline"]["peak_rss_mib"] > 0 and result["pipeline"]["seconds"] > 0
    bare = result["bare_splink"]
    assert set(bare["party_types"]) == {"person", "organization"}
    assert sum(p["records"] for p in bare["party_types"].values()) == result["source_records"]
    assert result["pipeline_over_bare_splink"] > 1  # the pipeline contains the linking
    assert result["quality"]["overall"]["pairwise_precision"] > 0.9
    hand = result["handwritten_splink"]  # the hand-written script on the same exports
    assert set(hand["seconds"]) >= {"read", "standardize", "train", "predict", "cluster", "total"}
    assert hand["quality"]["overall"]["pairwise_recall"] > 0.5
    assert result["pipeline_over_handwritten"] > 0
    # the bench leaves the caller's environment as it found it
    assert os.environ["UCV_HOME"] == str(tmp_path / "home")

    row = summary_table({"sizes": {"600": json.loads(json.dumps(result, default=str))}})[0]
    assert row[0] == "600" and len(row) == 10


def test_a_second_result_of_the_same_day_never_overwrites_the_first(tmp_path) -> None:
    from pipelines.bench.run import results_file

    first = results_file(tmp_path / "results", "2026-12-03-serve")
    first.write_text("{}")
    second = results_file(tmp_path / "results", "2026-12-03-serve")
    second.write_text("{}")
    assert [first.name, second.name] == ["2026-12-03-serve.json", "2026-12-03-serve-2.json"]
    assert results_file(tmp_path / "results", "2026-12-03-serve").name == "2026-12-03-serve-3.json"
