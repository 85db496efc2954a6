"""Clustering of scored pairs against an oracle: networkx connected components on random graphs."""

from __future__ import annotations

import random

import networkx as nx
import pytest

from pipelines.resolve.backend import database_api, duckdb_connection
from pipelines.resolve.predict import connected_clusters


def _clusters(nodes: list[str], edges: list[tuple[str, str, float]], threshold: float):
    db_api = database_api("duckdb")
    con = duckdb_connection(db_api)
    con.execute("CREATE TABLE nodes (unique_id VARCHAR)")
    con.executemany("INSERT INTO nodes VALUES (?)", [(n,) for n in nodes])
    con.execute("CREATE TABLE edges (unique_id_l VARCHAR, unique_id_r VARCHAR, "
                "match_weight DOUBLE, match_probability DOUBLE)")
    con.executemany("INSERT INTO edges VALUES (?, ?, ?, ?)",
                    [(a, b, w, 2**w / (1 + 2**w)) for a, b, w in edges])
    cc = connected_clusters(db_api, "nodes", "edges", threshold)
    return dict(con.execute(f"SELECT unique_id, cluster_id FROM {cc.physical_name}").fetchall())


def _partition(assignment: dict[str, str]) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for node, cluster in assignment.items():
        groups.setdefault(cluster, set()).add(node)
    return {frozenset(g) for g in groups.values()}


@pytest.mark.parametrize("seed", range(6))
def test_clusters_equal_networkx_components_of_links_above_threshold(seed):
    rng = random.Random(seed)
    n = rng.randrange(20, 120)
    nodes = [f"r{i:04d}" for i in range(n)]
    edges = []
    for _ in range(rng.randrange(0, 2 * n)):
        a, b = rng.sample(nodes, 2)
        edges.append((min(a, b), max(a, b), rng.uniform(-10, 20)))
    threshold = 6.0

    got = _clusters(nodes, edges, threshold)

    graph = nx.Graph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from((a, b) for a, b, w in edges if w >= threshold)
    expected = {frozenset(c) for c in nx.connected_components(graph)}
    assert set(got) == set(nodes)
    assert _partition(got) == expected
    # a cluster is named after its smallest member, so reruns give the same ids
    for members in expected:
        assert {got[m] for m in members} == {min(members)}


def test_pairs_below_threshold_do_not_link_and_singletons_keep_their_own_cluster():
    got = _clusters(["a", "b", "c", "d"], [("a", "b", 5.99), ("b", "c", 6.5)], 6.0)
    assert got == {"a": "a", "b": "b", "c": "b", "d": "d"}
