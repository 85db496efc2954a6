"""Cluster-level evidence on hand-made pairs: a lone record joins a cluster on the cluster's union
of evidence, and never when a member was not scored, a guard objects, or two clusters qualify."""

from __future__ import annotations

import duckdb
import pytest

from pipelines.resolve.cluster_evidence import cluster_evidence_links

# prior of 2^-10 odds: weights below are per comparison (mobile, birth date, name)
MODEL = {"probability_two_random_records_match": 1 / (1 + 2**10)}
MATCH = 6.0


def _setup(pairs: list[tuple], clusters: dict[str, str]):
    con = duckdb.connect()
    con.execute("""CREATE TABLE pairs (source_record_id_l VARCHAR, source_record_id_r VARCHAR,
        match_weight DOUBLE, is_link BOOLEAN, _guard VARCHAR, link_via VARCHAR,
        cluster_evidence_weight DOUBLE, mw_phone_mobile DOUBLE, mw_birth_date DOUBLE,
        mw_given_name DOUBLE)""")
    for left, right, mobile, birth, name, guard in pairs:
        weight = -10 + mobile + birth + name
        con.execute("INSERT INTO pairs VALUES (?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?)",
                    [left, right, weight, weight >= MATCH and guard is None, guard, mobile, birth,
                     name])
    con.execute("CREATE TABLE clusters (unique_id VARCHAR, cluster_id VARCHAR)")
    con.executemany("INSERT INTO clusters VALUES (?, ?)", list(clusters.items()))
    return con


def _links(con) -> set[tuple[str, str]]:
    return set(con.execute("SELECT source_record_id_l, source_record_id_r FROM pairs "
                           "WHERE link_via = 'cluster_evidence'").fetchall())


# b and d are one customer (linked); r shares the mobile with b and the birth date with d,
# and the name with both: each pair alone stays below the threshold, the union does not
BASE = [("b", "d", 0, 10, 8, None), ("b", "r", 9, 0, 4, None), ("d", "r", 0, 9, 4, None)]
CLUSTERS = {"b": "b", "d": "b", "r": "r"}


def test_a_record_joins_on_the_union_of_a_clusters_evidence():
    con = _setup(BASE, CLUSTERS)
    assert cluster_evidence_links(con, "pairs", "clusters", MODEL, MATCH, {"margin": 2.0}) == 1
    assert _links(con) == {("b", "r")}  # through its best-scoring member
    weight = con.execute("SELECT cluster_evidence_weight FROM pairs WHERE link_via IS NOT NULL"
                         ).fetchall()[0][0]
    assert weight == pytest.approx(-10 + 9 + 9 + 4)


def test_no_join_when_a_member_was_not_scored_against_the_record():
    con = _setup(BASE[:2], {**CLUSTERS})
    assert cluster_evidence_links(con, "pairs", "clusters", MODEL, MATCH, {"margin": 2.0}) == 0


def test_no_join_when_a_guard_objects_or_evidence_contradicts():
    guarded = [BASE[0], BASE[1], ("d", "r", 0, 9, 4, "given_name_conflict")]
    con = _setup(guarded, CLUSTERS)
    assert cluster_evidence_links(con, "pairs", "clusters", MODEL, MATCH, {"margin": 2.0}) == 0
    # a different mobile on d outweighs nothing d supports: strongest contradiction counts
    contradicting = [BASE[0], ("b", "r", 0, 0, 4, None), ("d", "r", -6, 9, 4, None)]
    con = _setup(contradicting, CLUSTERS)
    assert cluster_evidence_links(con, "pairs", "clusters", MODEL, MATCH, {"margin": 2.0}) == 0


def test_no_join_when_two_clusters_qualify():
    pairs = [*BASE, ("e", "f", 0, 10, 8, None), ("e", "r", 9, 0, 4, None),
             ("f", "r", 0, 9, 4, None)]
    con = _setup(pairs, {**CLUSTERS, "e": "e", "f": "e"})
    assert cluster_evidence_links(con, "pairs", "clusters", MODEL, MATCH, {"margin": 2.0}) == 0


def test_disabled_does_nothing():
    con = _setup(BASE, CLUSTERS)
    assert cluster_evidence_links(con, "pairs", "clusters", MODEL, MATCH, {"enabled": False}) == 0
