"""The identify stage end to end on a hand-made run folder: IDs carried through the ID registry,
overrides applied every run, the review queue, and reruns replacing their own unpublished events."""

from __future__ import annotations

import json

import duckdb
import pandas as pd
import pytest

from pipelines.identify import (
    IdentifyConfig,
    append_override,
    assign_customer_ids,
    current_customer_id,
)
from pipelines.identify.registry import commit_run, registry_file
from pipelines.settings import RunPaths

CONFIG = IdentifyConfig(match_weight={"person": 6.0, "organization": 6.0},
                        review_floor={"person": -2.0, "organization": -2.0}, min_density=0.4)

# Person records a..f and an organization o1/o2. a-b-c is a chain (a-c scored weak),
# d-e is a strong pair, f is alone, d-f is borderline.
PAIRS = [
    ("p:a", "p:b", 12.0, 1, 8.0),
    ("p:b", "p:c", 9.0, 1, 4.0),
    ("p:a", "p:c", 1.5, 0, 0.5),
    ("p:d", "p:e", 15.0, 1, 16.0),
    ("p:d", "p:f", 4.0, 0, 2.0),
]


def write_run(base, run_id, clusters: list[list[str]], pairs=PAIRS, staged_extra=()):
    run = RunPaths.for_run(run_id, base=base / "runs").ensure()
    rows = [(rid, "organization" if rid.startswith("o:") else "person", f"cl{i}")
            for i, group in enumerate(clusters) for rid in group]
    pd.DataFrame(rows, columns=["source_record_id", "party_type", "cluster_id"]).to_parquet(
        run.resolved_dir / "clusters.parquet")
    frame = pd.DataFrame(pairs, columns=["source_record_id_l", "source_record_id_r", "match_weight",
                                         "gamma_email", "bf_email"])
    frame["party_type"] = "person"
    frame["match_probability"] = 1 / (1 + 2 ** -frame["match_weight"])
    frame["gamma_name"] = 2
    frame["bf_name"] = 2 ** (frame["match_weight"] - frame["bf_email"].map(lambda b: __import__("math").log2(b)))
    frame.to_parquet(run.resolved_dir / "match_pairs.parquet")
    staged = [(r[0], r[1]) for r in rows] + list(staged_extra)
    pd.DataFrame(staged, columns=["source_record_id", "party_type"]).to_parquet(
        run.staged_dir / "source_records.parquet")
    return run


def publish(base, run) -> object:
    """What the publish stage does for identify: commit the run's IDs to the ID registry."""
    registry = registry_file(base / "warehouse")
    commit_run(registry, run, live=True)
    return registry


def warehouse_of(base, run) -> object:
    """A published warehouse reduced to what the override check reads."""
    warehouse = base / "warehouse" / "ucv.duckdb"
    warehouse.parent.mkdir(exist_ok=True)
    warehouse.unlink(missing_ok=True)
    con = duckdb.connect(str(warehouse))
    con.execute(f"create table source_records as select * from read_parquet('{run.identified_dir}/customer_map.parquet')")
    con.close()
    return warehouse


def customer_of(run) -> dict[str, str]:
    frame = pd.read_parquet(run.identified_dir / "customer_map.parquet")
    return dict(zip(frame["source_record_id"], frame["customer_id"], strict=True))


CLUSTERS = [["p:a", "p:b", "p:c"], ["p:d", "p:e"], ["p:f"], ["o:1"]]


def test_first_run_issues_new_ids_and_adds_unclustered_staged_records(tmp_path):
    run = write_run(tmp_path, "2026-01-01", CLUSTERS, staged_extra=[("o:2", "organization")])
    result = assign_customer_ids(run, None, overrides_file=tmp_path / "none.csv", config=CONFIG)
    ids = customer_of(run)
    assert len(ids) == 8 and result.n_customers == 5
    assert ids["p:a"] == ids["p:b"] == ids["p:c"] and ids["o:2"] not in {ids["o:1"], ids["p:f"]}
    history = pd.read_parquet(result.customer_id_history)
    assert set(history["event"]) == {"new"} and len(history) == 5
    summary = json.loads(result.summary.read_text())
    assert summary["events"] == {"new": 5} and summary["run_id"] == "2026-01-01"


def test_review_queue_lists_borderline_and_weak_links_with_evidence(tmp_path):
    run = write_run(tmp_path, "2026-01-01", CLUSTERS)
    result = assign_customer_ids(run, None, overrides_file=tmp_path / "none.csv", config=CONFIG)
    queue = pd.read_parquet(result.review_queue)
    by_pair = {(r.source_record_id_l, r.source_record_id_r, r.reason) for r in queue.itertuples()}
    assert ("p:d", "p:f", "borderline_pair") in by_pair
    assert ("p:a", "p:c", "weak_link_inside_customer") in by_pair
    assert ("p:b", "p:c", "weak_cluster_link") in by_pair  # weakest link holding a-b-c together
    assert not any(p[:2] == ("p:d", "p:e") for p in by_pair)  # strong, dense: nothing to ask
    row = queue[queue["reason"] == "borderline_pair"].iloc[0]
    evidence = json.loads(row["evidence"])
    assert evidence["email"] == {"level": 0, "match_weight": 1.0}
    assert evidence["name"]["level"] == 2 and evidence["name"]["match_weight"] == pytest.approx(3.0)
    assert {"gamma_email", "bf_email", "customer_id_l", "customer_id_r"} <= set(queue.columns)
    assert row["customer_id_l"] != row["customer_id_r"]


def test_ids_survive_runs_and_overrides_change_them_through_events(tmp_path):
    overrides = tmp_path / "overrides.csv"
    run1 = write_run(tmp_path, "2026-01-01", CLUSTERS)
    assign_customer_ids(run1, None, overrides_file=overrides, config=CONFIG)
    first = customer_of(run1)
    warehouse = publish(tmp_path, run1)

    # Same input again: every ID kept, no events.
    run2 = write_run(tmp_path, "2026-01-02", CLUSTERS)
    result2 = assign_customer_ids(run2, warehouse, overrides_file=overrides, config=CONFIG)
    assert customer_of(run2) == first and result2.events == {}

    # Stewards: a and c are different people (though chained through b); f is d's customer.
    append_override(overrides, "p:a", "p:c", "cannot_link", "ann", "2026-01-02T09:00:00Z", "twins")
    append_override(overrides, "p:f", "p:d", "must_link", "ann", "2026-01-02T09:05:00Z", "same mobile")
    append_override(overrides, "p:zz", "p:a", "must_link", "ann", "2026-01-02T09:06:00Z", "gone record")
    warehouse = publish(tmp_path, run2)
    run3 = write_run(tmp_path, "2026-01-03", CLUSTERS)
    result3 = assign_customer_ids(run3, warehouse, overrides_file=overrides, config=CONFIG)
    ids = customer_of(run3)
    assert ids["p:a"] == ids["p:b"] == first["p:a"]  # a-b (12.0) beats b-c (9.0), keeps the ID
    assert ids["p:c"] not in set(first.values())
    assert ids["p:f"] == ids["p:d"] == first["p:d"]
    assert result3.overrides["unknown_record_ids"] == ["row 4: p:zz"]
    history = pd.read_parquet(result3.customer_id_history)
    this_run = history[history["run_id"] == "2026-01-03"]
    assert sorted(map(tuple, this_run[["event", "customer_id", "related_customer_id"]].values.tolist())) == [
        ("merged", first["p:f"], first["p:d"]),
        ("split", ids["p:c"], first["p:a"]),
    ]
    assert set(history["run_id"]) == {"2026-01-01", "2026-01-03"}
    live = set(ids.values())
    assert current_customer_id(history, first["p:f"], live) == first["p:d"]
    # The decided pairs leave the queue; b-c is now a strong pair a cannot-link keeps apart.
    queue = pd.read_parquet(result3.review_queue)
    pairs = set(zip(queue["source_record_id_l"], queue["source_record_id_r"], queue["reason"], strict=True))
    assert not {p for p in pairs if p[:2] in {("p:a", "p:c"), ("p:d", "p:f")}}
    assert ("p:b", "p:c", "strong_pair_kept_apart") in pairs

    # Rerunning the same run replaces its own events instead of adding to them.
    again = assign_customer_ids(run3, warehouse, overrides_file=overrides, config=CONFIG)
    assert pd.read_parquet(again.customer_id_history).equals(history)
    assert customer_of(run3) == ids


def test_evidence_prefers_splinks_match_weight_columns(tmp_path):
    run = write_run(tmp_path, "2026-01-01", CLUSTERS)
    pairs = pd.read_parquet(run.resolved_dir / "match_pairs.parquet")
    pairs["mw_email"] = 0.25
    pairs["mw_tf_adj_email"] = [0.5, None, 0.5, 0.5, 0.5]
    pairs["gamma_org_name"] = None  # organization comparisons, empty on person pairs
    pairs["mw_org_name"] = None
    pairs.to_parquet(run.resolved_dir / "match_pairs.parquet")
    result = assign_customer_ids(run, None, overrides_file=tmp_path / "none.csv", config=CONFIG)
    queue = pd.read_parquet(result.review_queue).set_index("reason")
    assert json.loads(queue.loc["borderline_pair", "evidence"])["email"]["match_weight"] == 0.75
    assert json.loads(queue.loc["weak_cluster_link", "evidence"])["email"]["match_weight"] == 0.25
    assert set(json.loads(queue.loc["borderline_pair", "evidence"])) == {"email", "name"}


def test_steward_workflow_through_the_cli(tmp_path):
    from typer.testing import CliRunner

    from pipelines.identify.commands import app
    from pipelines.identify.overrides import load_overrides

    runner = CliRunner()
    overrides = tmp_path / "overrides.csv"
    runs_dir = tmp_path / "runs"
    write_run(tmp_path, "2026-01-01", CLUSTERS)
    empty_registry = tmp_path / "registry" / "ids.duckdb"
    result = runner.invoke(app, ["identify", "--run-id", "2026-01-01", "--runs-dir", str(runs_dir),
                                 "--overrides", str(overrides), "--registry", str(empty_registry)])
    assert result.exit_code == 0, result.output
    listed = runner.invoke(app, ["review-list", "--run-id", "2026-01-01", "--runs-dir", str(runs_dir)],
                           env={"COLUMNS": "250"})
    assert listed.exit_code == 0 and "borderline_pair" in listed.output
    queue = pd.read_parquet(runs_dir / "2026-01-01" / "identified" / "review_queue.parquet")
    review_id = queue.loc[queue["reason"] == "borderline_pair", "review_id"].iloc[0]
    decided = runner.invoke(app, [
        "review-decide", "--run-id", "2026-01-01", "--runs-dir", str(runs_dir), "--review-id", review_id,
        "--decision", "must_link", "--by", "Ann Steward", "--reason", "same mobile, typo in name",
        "--at", "2026-01-02T08:00:00Z", "--overrides", str(overrides)])
    assert decided.exit_code == 0, decided.output
    by_pair = runner.invoke(app, [
        "review-decide", "--pair", "p:c", "p:a", "--decision", "cannot_link", "--by", "Ann Steward",
        "--reason", "twins", "--at", "2026-01-02T08:01:00Z", "--overrides", str(overrides)])
    assert by_pair.exit_code == 0, by_pair.output
    assert [(o.pair, o.decision, o.decided_by) for o in load_overrides(overrides)] == [
        (("p:a", "p:c"), "cannot_link", "Ann Steward"), (("p:d", "p:f"), "must_link", "Ann Steward")]
    bad = runner.invoke(app, ["review-decide", "--pair", "p:a", "p:b", "--decision", "merge",
                              "--by", "x", "--reason", "y", "--overrides", str(overrides)])
    assert bad.exit_code == 1 and "merge" in bad.output
    # Checking against a warehouse: p:zz is unknown there.
    warehouse = warehouse_of(tmp_path, RunPaths.for_run("2026-01-01", base=runs_dir))
    assert runner.invoke(app, ["overrides-check", "--overrides", str(overrides),
                               "--warehouse", str(warehouse)]).exit_code == 0
    append_override(overrides, "p:zz", "p:a", "must_link", "ann", "2026-01-03", "typo")
    checked = runner.invoke(app, ["overrides-check", "--overrides", str(overrides), "--warehouse", str(warehouse)])
    assert checked.exit_code == 1 and "p:zz" in checked.output


def test_a_strong_pair_vetoed_by_a_resolver_guard_is_queued_as_borderline(tmp_path):
    pairs = PAIRS + [("p:e", "p:f", 9.0, 1, 4.0)]
    run = write_run(tmp_path, "2026-01-01", CLUSTERS, pairs=pairs)
    frame = pd.read_parquet(run.resolved_dir / "match_pairs.parquet")
    frame["is_link"] = frame["match_weight"] >= 6.0
    frame.loc[frame["source_record_id_r"] == "p:f", "is_link"] = False
    frame["link_blocked_by"] = None
    frame.loc[(frame["source_record_id_l"] == "p:e") & (frame["source_record_id_r"] == "p:f"),
              "link_blocked_by"] = "birth_date_conflict"
    frame.to_parquet(run.resolved_dir / "match_pairs.parquet")
    result = assign_customer_ids(run, None, overrides_file=tmp_path / "none.csv", config=CONFIG)
    queue = pd.read_parquet(result.review_queue)
    vetoed = queue[(queue["source_record_id_l"] == "p:e") & (queue["source_record_id_r"] == "p:f")]
    assert vetoed[["reason", "link_blocked_by"]].values.tolist() == [["borderline_pair", "birth_date_conflict"]]
