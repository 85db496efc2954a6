"""Test support for the ID registry: hand-made run folders, nights published through the registry,
and the checks every sequence of nights must pass (no ID names two customers; history accounts)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipelines.identify import IdentifyConfig, assign_customer_ids
from pipelines.identify.registry import commit_run, read_state, replaces_live
from pipelines.settings import RunPaths

CONFIG = IdentifyConfig(match_weight={"person": 6.0, "organization": 6.0},
                        review_floor={"person": -2.0, "organization": -2.0}, min_density=0.4)
PAIR_COLUMNS = ["source_record_id_l", "source_record_id_r", "match_weight", "match_probability",
                "party_type"]


def write_clusters(base: Path, run_id: str, clusters: list[list[str]]) -> RunPaths:
    """A run folder as resolve leaves it: clusters of person records, strong pairs inside them."""
    run = RunPaths.for_run(run_id, base=base / "runs")
    for folder in (run.resolved_dir, run.identified_dir):
        if folder.exists():
            for f in folder.iterdir():
                f.unlink()
    run.ensure()
    rows = [(rid, "person", f"cl{i}") for i, group in enumerate(clusters) for rid in group]
    pd.DataFrame(rows, columns=["source_record_id", "party_type", "cluster_id"]).to_parquet(
        run.resolved_dir / "clusters.parquet")
    pairs = [(a, b, 10.0, 0.999, "person") for group in clusters
             for a, b in zip(sorted(group), sorted(group)[1:], strict=False)]
    pd.DataFrame(pairs, columns=PAIR_COLUMNS).astype({"match_weight": "float64"}).to_parquet(
        run.resolved_dir / "match_pairs.parquet")
    pd.DataFrame([(r[0], r[1]) for r in rows], columns=["source_record_id", "party_type"]
                 ).to_parquet(run.staged_dir / "source_records.parquet")
    return run


def customer_map(run: RunPaths) -> dict[str, str]:
    frame = pd.read_parquet(run.identified_dir / "customer_map.parquet")
    return dict(zip(frame["source_record_id"], frame["customer_id"], strict=True))


@dataclass
class Observation:
    """What one publication showed the world: ID -> its source records."""

    publication: int | None
    run_id: str
    live: bool
    members: dict[str, frozenset[str]]


@dataclass
class Ledger:
    """Every publication seen, in order, to check the identity guarantees against."""

    registry: Path
    observations: list[Observation] = field(default_factory=list)

    def publish(self, base: Path, run_id: str, clusters: list[list[str]], overrides: Path,
                replace_live: bool = False) -> Observation:
        """identify + publish of one night (or a rerun), as the pipeline does them."""
        run = write_clusters(base, run_id, clusters)
        assign_customer_ids(run, self.registry, overrides_file=overrides, config=CONFIG)
        live = replaces_live(self.registry, run_id, replace_live)
        publication = commit_run(self.registry, run, live=live)
        members: dict[str, set[str]] = defaultdict(set)
        for record, customer in customer_map(run).items():
            members[customer].add(record)
        seen = Observation(publication, run_id, live, {k: frozenset(v) for k, v in members.items()})
        self.observations.append(seen)
        return seen

    def erase(self, records: set[str]) -> Observation:
        """`ucv erase` as far as IDs go: the registry forgets the records (data root = base)."""
        from pipelines.identify.erase import ErasureReport, erase_from_registry

        erase_from_registry(records, ErasureReport(erasure=len(self.observations) + 1,
                                                   requested={}))
        state = read_state(self.registry)
        members: dict[str, set[str]] = defaultdict(set)
        for record, customer in zip(state.live_map["source_record_id"],
                                    state.live_map["customer_id"], strict=True):
            members[customer].add(record)
        seen = Observation(state.publication, "erasure", True,
                           {k: frozenset(v) for k, v in members.items()})
        self.observations.append(seen)
        return seen


def no_id_names_two_customers(observations: list[Observation]) -> None:
    """Every publication of an ID shares a source record with what it named before."""
    earlier: dict[str, set[str]] = {}
    for seen in observations:
        for customer, records in seen.members.items():
            if customer in earlier:
                assert records & earlier[customer], (
                    f"{customer} named {sorted(earlier[customer])} and now {sorted(records)} "
                    f"(run {seen.run_id}, publication {seen.publication})")
                earlier[customer] |= records
            else:
                earlier[customer] = set(records)


def history_accounts_for_every_change(registry: Path, observations: list[Observation]) -> None:
    """Live IDs that appear have a new/split event, live IDs that go away a merged/retired/erased
    event, every ID is issued once, and a historic rebuild issues only IDs with an event."""
    history = read_state(registry).history
    issuing = history[history["event"].isin(["new", "split"])]
    # one 'split' row per parent an ID was split from, all in the publication that issued it
    publications_issuing = issuing.groupby("customer_id")["publication"].nunique()
    assert (publications_issuing == 1).all(), "an ID was issued twice"
    issuing = issuing.drop_duplicates("customer_id")
    by_publication: dict[int, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for row in history.itertuples():
        by_publication[int(row.publication)][row.event].add(row.customer_id)
    live_ids: set[str] = set()
    last_publication = 0
    for seen in observations:
        if seen.publication is None:  # nothing changed: the registry recorded nothing new
            assert set(seen.members) == live_ids or not seen.live
            continue
        events = by_publication[seen.publication]
        between = [by_publication[p] for p in range(last_publication + 1, seen.publication)]
        ended = set().union(*(e["erased"] for e in between)) if between else set()
        ids = set(seen.members)
        if seen.run_id == "erasure":
            assert ids <= live_ids and live_ids - ids == events["erased"]
            live_ids = ids
        elif seen.live:
            appeared = ids - live_ids
            gone = live_ids - ids - ended
            assert appeared <= events["new"] | events["split"], f"unexplained IDs {appeared}"
            assert gone <= events["merged"] | events["retired"], f"IDs gone silently {gone}"
            live_ids = ids
        else:
            issued_before = set(issuing[issuing["publication"] < seen.publication]["customer_id"])
            fresh = ids - issued_before
            assert fresh <= events["new"] | events["split"], f"unexplained IDs {fresh}"
        last_publication = seen.publication
