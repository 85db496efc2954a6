"""Clusters holding two people are cut where their ambiguous links are (cluster_conflicts.py)."""

from __future__ import annotations

from pipelines.resolve.cluster_conflicts import plan_cuts


def test_a_lead_linked_equally_to_two_people_is_detached():
    # A1-A2 and B1-B2 are two Stefan Schneiders (different birth dates: A1/B1 conflict); the
    # lead L carries only the name and the city and links to both equally
    links = [("A1", "A2", 20.0), ("B1", "B2", 18.0), ("A1", "L", 6.2), ("B1", "L", 6.2)]
    cuts = plan_cuts(links, [("A1", "B1")], ambiguity_margin=2.0)
    assert cuts == {("A1", "L"), ("B1", "L")}


def test_a_record_clearly_closer_to_one_person_stays_with_it():
    links = [("A1", "A2", 20.0), ("B1", "B2", 18.0), ("A2", "X", 15.0), ("B2", "X", 6.5)]
    assert plan_cuts(links, [("A1", "B1")], ambiguity_margin=2.0) == {("B2", "X")}


def test_a_cluster_without_a_conflict_keeps_every_link():
    links = [("a", "b", 9.0), ("b", "c", 7.0)]
    assert plan_cuts(links, [], ambiguity_margin=2.0) == set()


def test_the_strongest_links_win_and_reruns_agree():
    # a chain a-b-c-d where a and d conflict: the weakest link between them goes
    links = [("a", "b", 12.0), ("b", "c", 7.0), ("c", "d", 11.0)]
    first = plan_cuts(links, [("a", "d")], ambiguity_margin=0.5)
    assert first == {("b", "c")}
    assert plan_cuts(list(reversed(links)), [("d", "a")], ambiguity_margin=0.5) == first


def test_no_remaining_group_holds_a_conflict():
    import itertools
    import random

    rng = random.Random(3)
    for _ in range(200):
        nodes = [f"r{i}" for i in range(rng.randint(3, 9))]
        links = [(a, b, rng.uniform(6, 20)) for a, b in itertools.combinations(nodes, 2)
                 if rng.random() < 0.5]
        conflicts = [(a, b) for a, b in itertools.combinations(nodes, 2) if rng.random() < 0.15]
        kept = {(a, b) for a, b, _ in links} - plan_cuts(links, conflicts, 2.0)
        group = {n: {n} for n in nodes}
        for a, b in kept:
            merged = group[a] | group[b]
            for n in merged:
                group[n] = merged
        for a, b in conflicts:
            assert b not in group[a], (links, conflicts, kept)
