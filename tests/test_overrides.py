"""Steward overrides: file validation, must-link / cannot-link against contrary evidence, and
constrained clustering checked against a networkx oracle on random graphs."""

from __future__ import annotations

import networkx as nx
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.identify import (
    Override,
    OverrideReport,
    OverridesInvalid,
    append_override,
    apply_overrides,
    load_overrides,
)
from pipelines.identify.overrides import OVERRIDE_COLUMNS, constrained_components

THRESHOLD = 6.0  # match weight


def override(left, right, decision, line=2) -> Override:
    a, b = sorted((left, right))
    return Override(a, b, decision, "tester", "2026-01-01", "test", line)


def frames(nodes, edges, party_type="person"):
    """Clusters = connected components of the edges at or above the threshold (what Splink does)."""
    graph = nx.Graph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from((a, b) for a, b, p in edges if p >= THRESHOLD)
    rows = [(n, party_type, f"k{i}") for i, comp in enumerate(nx.connected_components(graph)) for n in comp]
    clusters = pd.DataFrame(rows, columns=["source_record_id", "party_type", "cluster_id"])
    pairs = pd.DataFrame(
        [(a, b, party_type, p) for a, b, p in edges],
        columns=["source_record_id_l", "source_record_id_r", "party_type", "match_weight"],
    )
    return clusters, pairs


def partition(clusters: pd.DataFrame) -> set[frozenset[str]]:
    return {frozenset(g) for g in clusters.groupby("cluster_id")["source_record_id"]
            .apply(frozenset)}


def test_cannot_link_holds_through_a_chain_of_strong_matches():
    edges = [("a", "b", 14.0), ("b", "c", 7.5), ("c", "d", 12.0), ("d", "e", 9.0)]
    clusters, pairs = frames("abcde", edges)
    assert len(partition(clusters)) == 1
    report = OverrideReport()
    result = apply_overrides(clusters, pairs, [override("a", "e", "cannot_link")], THRESHOLD, report)
    # Greedy by weight: ab, cd, de join; bc (7.5) would join a with e and is refused.
    assert partition(result) == {frozenset("ab"), frozenset("cde")}
    assert report.links_refused == 1 and report.components_rebuilt == 1
    assert set(result["cluster_id"]) == {"a", "c"}  # labels: smallest member


def test_must_link_holds_against_zero_evidence():
    clusters, pairs = frames("abcd", [("a", "b", 10.0)])
    result = apply_overrides(clusters, pairs, [override("b", "d", "must_link")], THRESHOLD)
    assert partition(result) == {frozenset("abd"), frozenset("c")}


def test_must_link_first_then_cannot_link_splits_the_rest():
    edges = [("a", "b", 10.0), ("c", "d", 10.0)]
    clusters, pairs = frames("abcd", edges)
    result = apply_overrides(
        clusters, pairs,
        [override("b", "c", "must_link"), override("a", "d", "cannot_link")], THRESHOLD,
    )
    groups = partition(result)
    assert any({"b", "c"} <= g for g in groups)
    assert not any({"a", "d"} <= g for g in groups)


def test_overrides_on_unknown_or_cross_type_records_are_reported_not_applied():
    clusters, pairs = frames("ab", [("a", "b", 10.0)])
    clusters.loc[clusters["source_record_id"] == "b", "party_type"] = "organization"
    report = OverrideReport()
    result = apply_overrides(
        clusters, pairs,
        [override("a", "zz", "cannot_link", line=3), override("a", "b", "must_link", line=4)],
        THRESHOLD, report,
    )
    assert report.unknown_record_ids == ["row 3: zz"]
    assert report.cross_party_type == ["row 4: a / b"]
    assert len(result) == 2


def write(path, rows, header=OVERRIDE_COLUMNS):
    lines = [",".join(header)] + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_overrides_reports_every_bad_row(tmp_path):
    path = write(tmp_path / "o.csv", [
        ["a", "b", "must_link", "ann", "2026-01-02", "same phone and DOB"],
        ["a", "a", "must_link", "ann", "2026-01-02", "self"],
        ["a", "c", "maybe", "ann", "2026-01-02", "x"],
        ["a", "d", "cannot_link", "", "2026-01-02", "x"],
        ["a", "e", "cannot_link", "ann", "yesterday", "x"],
        ["a", "f", "cannot_link", "ann", "2026-01-02", ""],
    ])
    with pytest.raises(OverridesInvalid) as err:
        load_overrides(path)
    assert [p.split(":")[0] for p in err.value.problems] == [f"o.csv row {i}" for i in (3, 4, 5, 6, 7)]


def test_latest_decision_per_pair_wins_and_comments_are_skipped(tmp_path):
    path = tmp_path / "o.csv"
    path.write_text(
        ",".join(OVERRIDE_COLUMNS) + "\n"
        "# example rows are comments\n"
        "b,a,must_link,ann,2026-01-02T10:00:00Z,same person\n"
        "a,b,cannot_link,bob,2026-01-03T09:00:00Z,twins: different national IDs\n",
        encoding="utf-8",
    )
    (only,) = load_overrides(path)
    assert (only.pair, only.decision, only.decided_by, only.line) == (("a", "b"), "cannot_link", "bob", 4)
    path.write_text(path.read_text() + "# another comment\na,c,merge,ann,2026-01-04,oops\n")
    with pytest.raises(OverridesInvalid, match="o.csv row 6: decision 'merge'"):
        load_overrides(path)


def test_must_links_that_join_a_cannot_link_pair_are_rejected(tmp_path):
    path = write(tmp_path / "o.csv", [
        ["a", "b", "must_link", "ann", "2026-01-02", "r"],
        ["b", "c", "must_link", "ann", "2026-01-02", "r"],
        ["c", "a", "cannot_link", "bob", "2026-01-02", "r"],
    ])
    with pytest.raises(OverridesInvalid, match="contradicts"):
        load_overrides(path)


def test_append_override_creates_the_file_and_round_trips(tmp_path):
    path = tmp_path / "stewardship" / "overrides.csv"
    append_override(path, "s:2", "s:1", "cannot_link", "Ann Steward", "2026-01-05T08:00:00Z",
                    "father and son, same address")
    append_override(path, "s:3", "s:1", "must_link", "Ann Steward", "2026-01-05T08:01:00Z", "same, ok")
    loaded = load_overrides(path)
    assert [(o.pair, o.decision) for o in loaded] == [(("s:1", "s:2"), "cannot_link"), (("s:1", "s:3"), "must_link")]
    assert loaded[1].reason == "same, ok"  # commas survive CSV quoting
    with pytest.raises(OverridesInvalid):
        append_override(path, "s:3", "s:2", "must_link", "Ann", "2026-01-05", "would contradict")
    assert len(load_overrides(path)) == 2


# --- property tests against networkx ----------------------------------------------------------

@st.composite
def random_graphs(draw):
    n = draw(st.integers(min_value=2, max_value=14))
    nodes = [f"r{i:02d}" for i in range(n)]
    possible = [(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1:]]
    chosen = draw(st.lists(st.sampled_from(possible), unique=True, max_size=min(len(possible), 30)))
    weights = draw(st.lists(st.floats(min_value=-2.0, max_value=20.0), min_size=len(chosen),
                                  max_size=len(chosen)))
    edges = [(a, b, w) for (a, b), w in zip(chosen, weights, strict=True)]
    cannot = draw(st.lists(st.sampled_from(possible), unique=True, max_size=3))
    must = [p for p in draw(st.lists(st.sampled_from(possible), unique=True, max_size=3)) if p not in cannot]
    return nodes, edges, must, cannot


def must_link_consistent(must, cannot) -> bool:
    graph = nx.Graph(must)
    return not any(graph.has_node(a) and graph.has_node(b) and nx.has_path(graph, a, b) for a, b in cannot)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs())
def test_without_overrides_clusters_are_the_networkx_components(graph):
    nodes, edges, _, _ = graph
    clusters, pairs = frames(nodes, edges)
    result = apply_overrides(clusters, pairs, [], THRESHOLD)
    oracle = nx.Graph()
    oracle.add_nodes_from(nodes)
    oracle.add_edges_from((a, b) for a, b, p in edges if p >= THRESHOLD)
    assert partition(result) == {frozenset(c) for c in nx.connected_components(oracle)}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs())
def test_constrained_clusters_honour_overrides_and_are_maximal(graph):
    nodes, edges, must, cannot = graph
    if not must_link_consistent(must, cannot):
        return
    clusters, pairs = frames(nodes, edges)
    overrides = [override(a, b, "must_link") for a, b in must] + [override(a, b, "cannot_link") for a, b in cannot]
    result = apply_overrides(clusters, pairs, overrides, THRESHOLD)
    cluster_of = dict(zip(result["source_record_id"], result["cluster_id"], strict=True))
    assert set(cluster_of) == set(nodes)
    for a, b in must:
        assert cluster_of[a] == cluster_of[b]
    for a, b in cannot:
        assert cluster_of[a] != cluster_of[b]
    # Every cluster is connected by strong edges and must-links, and lies inside one component of
    # the unconstrained graph plus must-links (overrides never join what nothing links).
    allowed = nx.Graph()
    allowed.add_nodes_from(nodes)
    allowed.add_edges_from([(a, b) for a, b, p in edges if p >= THRESHOLD] + list(must))
    members: dict[str, set[str]] = {}
    for node, label in cluster_of.items():
        members.setdefault(label, set()).add(node)
    for group in members.values():
        assert nx.is_connected(allowed.subgraph(group))
    # Maximal: any strong edge left between two clusters would join a cannot-link pair.
    for a, b, p in edges:
        if p >= THRESHOLD and cluster_of[a] != cluster_of[b]:
            joined = members[cluster_of[a]] | members[cluster_of[b]]
            assert any(x in joined and y in joined for x, y in cannot)
    # Labels are the smallest member, so they do not depend on input order.
    assert all(label == min(group) for label, group in members.items())


@settings(max_examples=100, deadline=None)
@given(random_graphs())
def test_constrained_components_do_not_depend_on_edge_order(graph):
    nodes, edges, must, cannot = graph
    if not must_link_consistent(must, cannot):
        return
    one, _ = constrained_components(nodes, must, cannot, edges)
    two, _ = constrained_components(list(reversed(nodes)), list(reversed(must)), cannot, list(reversed(edges)))
    assert one == two


def test_the_committed_override_file_holds_no_decisions():
    from pipelines.identify.overrides import DEFAULT_OVERRIDES_FILE

    assert DEFAULT_OVERRIDES_FILE.exists()
    assert load_overrides(DEFAULT_OVERRIDES_FILE) == []


def test_rebuild_respects_the_resolvers_own_link_decision():
    """A strong pair the resolver vetoed (is_link false, e.g. a link guard) is not a link here either."""
    edges = [("a", "b", 14.0), ("b", "c", 13.0), ("a", "f", 12.0), ("c", "f", 9.0)]
    clusters, pairs = frames("abcf", edges)
    cannot = [override("a", "c", "cannot_link"), override("a", "f", "cannot_link")]
    assert partition(apply_overrides(clusters, pairs, cannot, THRESHOLD)) == {
        frozenset("ab"), frozenset("cf")}
    pairs["is_link"] = [True, True, True, False]  # c-f vetoed by the resolver
    assert partition(apply_overrides(clusters, pairs, cannot, THRESHOLD)) == {
        frozenset("ab"), frozenset("c"), frozenset("f")}


def test_a_cannot_link_reaching_outside_the_rebuilt_component_leaves_the_outside_alone():
    """Found by the property test: a cannot-link from a rebuilt component to an untouched cluster
    must not pull the untouched record into the rebuild."""
    edges = [("r08", "r09", 6.0), ("r00", "r10", 6.0)]
    clusters, pairs = frames([f"r{i:02d}" for i in (0, 5, 8, 9, 10)], edges)
    overrides = [override("r05", "r08", "must_link"), override("r08", "r09", "cannot_link"),
                 override("r05", "r10", "cannot_link")]
    assert partition(apply_overrides(clusters, pairs, overrides, THRESHOLD)) == {
        frozenset({"r05", "r08"}), frozenset({"r09"}), frozenset({"r00", "r10"})}
