"""Steward overrides: must-link / cannot-link decisions kept in a version-controlled CSV file.

The model never undoes a steward: must-links are unioned first, and a cannot-link holds even when
the two records are connected through others. Components that carry a cannot-link are rebuilt from
their links by greedy single-linkage in descending match weight (union-find), refusing any union
that would join a cannot-link pair. Must-link / cannot-link constraints in clustering go back to
Wagstaff, Cardie, Rogers and Schroedl, "Constrained K-means Clustering with Background Knowledge",
ICML 2001.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd

from pipelines.fileio import formula_safe, formula_unsafe
from pipelines.settings import OVERRIDES_DIR, duckdb_config
from pipelines.sql import quote_literal

DEFAULT_OVERRIDES_FILE = OVERRIDES_DIR / "overrides.csv"
OVERRIDE_COLUMNS = [
    "source_record_id_l",
    "source_record_id_r",
    "decision",
    "decided_by",
    "decided_at",
    "reason",
]
DECISIONS = ("must_link", "cannot_link")
_DECIDED_AT = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?([+-]\d{2}:?\d{2}|Z)?)?$")


class OverridesInvalid(ValueError):
    """The override file cannot be applied as written (malformed rows or contradicting decisions)."""

    def __init__(self, problems: list[str]):
        super().__init__("invalid steward overrides:\n  " + "\n  ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Override:
    """One steward decision about a pair of source records; the pair is stored with l < r."""

    source_record_id_l: str
    source_record_id_r: str
    decision: str
    decided_by: str
    decided_at: str
    reason: str
    line: int = 0

    @property
    def pair(self) -> tuple[str, str]:
        return (self.source_record_id_l, self.source_record_id_r)


@dataclass
class OverrideReport:
    """What applying the overrides did, for the run report."""

    n_must_link: int = 0
    n_cannot_link: int = 0
    unknown_record_ids: list[str] = field(default_factory=list)
    cross_party_type: list[str] = field(default_factory=list)
    components_rebuilt: int = 0
    must_link_merges: int = 0
    links_refused: int = 0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def load_overrides(path: Path | str = DEFAULT_OVERRIDES_FILE) -> list[Override]:
    """Read and check an override file; the latest decision per pair wins (a steward may revert).

    Raises OverridesInvalid listing every malformed row, and every pair of must-links that would
    join a cannot-link pair.
    """
    path = Path(path)
    if not path.exists():
        return []
    problems: list[str] = []
    rows: list[Override] = []
    with path.open(newline="", encoding="utf-8") as fh:
        # Comment lines are dropped before parsing; keep each kept line's number for messages.
        kept = [(n, text) for n, text in enumerate(fh, start=1) if not text.lstrip().startswith("#")]
        reader = csv.DictReader(text for _, text in kept)
        missing = [c for c in OVERRIDE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise OverridesInvalid([f"{path}: missing columns {missing}"])
        while True:
            consumed = reader.line_num
            raw = next(reader, None)
            if raw is None:
                break
            line = kept[consumed][0]
            row = {k: formula_unsafe((raw.get(k) or "").strip()) for k in OVERRIDE_COLUMNS}
            where = f"{path.name} row {line}"
            if not row["source_record_id_l"] or not row["source_record_id_r"]:
                problems.append(f"{where}: both source_record_id_l and source_record_id_r are required")
                continue
            if row["source_record_id_l"] == row["source_record_id_r"]:
                problems.append(f"{where}: a record cannot be paired with itself")
                continue
            if row["decision"] not in DECISIONS:
                problems.append(f"{where}: decision {row['decision']!r} is not one of {DECISIONS}")
                continue
            if not row["decided_by"]:
                problems.append(f"{where}: decided_by is required (who decided)")
                continue
            if not _DECIDED_AT.match(row["decided_at"]):
                problems.append(f"{where}: decided_at {row['decided_at']!r} is not an ISO date/time")
                continue
            if not row["reason"]:
                problems.append(f"{where}: reason is required (why)")
                continue
            left, right = sorted((row["source_record_id_l"], row["source_record_id_r"]))
            rows.append(Override(left, right, row["decision"], row["decided_by"],
                                 row["decided_at"], row["reason"], line))
    if problems:
        raise OverridesInvalid(problems)
    overrides = latest_decisions(rows)
    conflicts = must_link_conflicts(overrides)
    if conflicts:
        raise OverridesInvalid(conflicts)
    return overrides


def latest_decisions(rows: Iterable[Override]) -> list[Override]:
    """One decision per pair: the latest decided_at, then the later row in the file."""
    latest: dict[tuple[str, str], Override] = {}
    for row in sorted(rows, key=lambda o: (o.decided_at, o.line)):
        latest[row.pair] = row
    return sorted(latest.values(), key=lambda o: o.pair)


def must_link_conflicts(overrides: list[Override]) -> list[str]:
    """Cannot-link pairs whose two records are joined by a chain of must-links (a contradiction)."""
    finder = _UnionFind()
    for o in overrides:
        if o.decision == "must_link":
            finder.union(*o.pair)
    return [
        f"row {o.line}: cannot_link {o.source_record_id_l} / {o.source_record_id_r} contradicts "
        "must_link decisions that join the two records"
        for o in overrides
        if o.decision == "cannot_link" and finder.find(o.source_record_id_l) == finder.find(o.source_record_id_r)
    ]


def append_override(
    path: Path | str,
    source_record_id_l: str,
    source_record_id_r: str,
    decision: str,
    decided_by: str,
    decided_at: str,
    reason: str,
) -> Override:
    """Append one decision to the override file (created with its header if missing), checked first."""
    path = Path(path)
    if decision not in DECISIONS:
        raise OverridesInvalid([f"decision {decision!r} is not one of {DECISIONS}"])
    if not decided_by.strip() or not reason.strip():
        raise OverridesInvalid(["decided_by and reason are required"])
    if source_record_id_l == source_record_id_r:
        raise OverridesInvalid(["a record cannot be paired with itself"])
    if not _DECIDED_AT.match(decided_at):
        raise OverridesInvalid([f"decided_at {decided_at!r} is not an ISO date/time"])
    left, right = sorted((source_record_id_l, source_record_id_r))
    existing = load_overrides(path)
    candidate = Override(left, right, decision, decided_by.strip(), decided_at, reason.strip(),
                         line=10**9)
    conflicts = must_link_conflicts(latest_decisions([*existing, candidate]))
    if conflicts:
        raise OverridesInvalid(conflicts)
    append_decision_rows(path, [(left, right, decision, candidate.decided_by, decided_at,
                                 candidate.reason)])
    return candidate


def append_decision_rows(path: Path, rows: list[tuple[str, ...]]) -> None:
    """Append rows in the overrides format (header first in a new file), formula-safe."""
    new_file = not path.exists() or path.stat().st_size == 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        if new_file:
            writer.writerow(OVERRIDE_COLUMNS)
        # stewards open these files in spreadsheets: no cell may start a formula
        writer.writerows([formula_safe(v) for v in row] for row in rows)


def utc_timestamp(moment: datetime) -> str:
    """ISO form used in the override file's decided_at column."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def apply_overrides(
    clusters: pd.DataFrame,
    match_pairs: pd.DataFrame | Path,
    overrides: list[Override],
    match_weight_threshold: float | Mapping[str, float],
    report: OverrideReport | None = None,
) -> pd.DataFrame:
    """Clusters that honour every override: must-links join, cannot-links stay apart.

    `clusters` has (source_record_id, party_type, cluster_id), `match_pairs` has
    (source_record_id_l, source_record_id_r, match_weight); links are pairs at or above
    `match_weight_threshold` (per party type or one value). Only components touched by an override
    change. Returns (source_record_id, party_type, cluster_id) where cluster_id is the smallest
    source_record_id of the cluster, so labels do not depend on input order.
    """
    report = report if report is not None else OverrideReport()
    con = duckdb.connect(config=duckdb_config())
    try:
        con.register("clusters_in", clusters)
        con.execute("""
            create temp table base as
            select cast(source_record_id as varchar) as source_record_id, party_type,
                   cast(cluster_id as varchar) as cluster_id
            from clusters_in
        """)
        involved = sorted({rid for o in overrides for rid in o.pair})
        known = {rid: (party_type, cluster_id) for rid, party_type, cluster_id in con.execute(
            "select * from base where source_record_id in (select unnest(?::varchar[]))", [involved]
        ).fetchall()}
        usable = _usable_overrides(overrides, known, report)
        must = [o.pair for o in usable if o.decision == "must_link"]
        cannot = [o.pair for o in usable if o.decision == "cannot_link"]
        report.n_must_link, report.n_cannot_link = len(must), len(cannot)

        # Must-links join whole clusters; clusters then holding a cannot-link pair are rebuilt.
        components = _UnionFind()
        for left, right in must:
            if components.union(known[left][1], known[right][1]):
                report.must_link_merges += 1
        component_of_cluster = {c: components.find(c) for c in list(components.parent)}
        component_of = {rid: component_of_cluster.get(cluster, cluster) for rid, (_, cluster) in known.items()}
        to_rebuild = sorted({component_of[a] for a, b in cannot if component_of[a] == component_of[b]})
        report.components_rebuilt = len(to_rebuild)

        con.register("component_map", pd.DataFrame(
            {"cluster_id": list(component_of_cluster), "component": list(component_of_cluster.values())},
            dtype=object))
        con.execute("""
            create temp table assigned as
            select b.*, coalesce(m.component, b.cluster_id) as component
            from base b left join component_map m using (cluster_id)
        """)
        if to_rebuild:
            members = con.execute(
                "select source_record_id, party_type, component from assigned "
                "where component in (select unnest(?::varchar[])) order by source_record_id",
                [to_rebuild]).df()
            edges = _strong_edges_within(members, match_pairs, match_weight_threshold)
            rebuild = set(to_rebuild)
            labels, refused = constrained_components(
                nodes=members["source_record_id"].tolist(),
                must_link=[p for p in must if component_of[p[0]] in rebuild],
                cannot_link=[p for p in cannot if component_of[p[0]] in rebuild
                             and component_of[p[0]] == component_of[p[1]]],
                weighted_edges=edges,
            )
            report.links_refused = refused
            # '#' keeps rebuilt labels apart from the resolver's cluster ids.
            con.register("rebuilt", pd.DataFrame(
                {"source_record_id": list(labels), "component": ["#" + v for v in labels.values()]},
                dtype=object))
            con.execute("""
                update assigned set component = r.component
                from rebuilt r where r.source_record_id = assigned.source_record_id
            """)
        # Canonical label: the smallest source_record_id in the final cluster.
        return con.execute("""
            select source_record_id, party_type,
                   min(source_record_id) over (partition by component) as cluster_id
            from assigned order by source_record_id
        """).df()
    finally:
        con.close()


def _usable_overrides(
    overrides: list[Override], known: dict[str, tuple[str, str]], report: OverrideReport
) -> list[Override]:
    """Overrides whose records both exist in this run and share a party type; the rest reported."""
    usable = []
    for o in overrides:
        unknown = [rid for rid in o.pair if rid not in known]
        if unknown:
            report.unknown_record_ids.extend(f"row {o.line}: {rid}" for rid in unknown)
        elif known[o.source_record_id_l][0] != known[o.source_record_id_r][0]:
            report.cross_party_type.append(f"row {o.line}: {o.source_record_id_l} / {o.source_record_id_r}")
        else:
            usable.append(o)
    return usable


def constrained_components(
    nodes: Iterable[str],
    must_link: Iterable[tuple[str, str]],
    cannot_link: Iterable[tuple[str, str]],
    weighted_edges: Iterable[tuple[str, str, float]],
) -> tuple[dict[str, str], int]:
    """Greedy constrained union: must-links first, then edges by descending weight (ties by ids).

    Returns each node's representative and how many edges were refused because they would join a
    cannot-link pair.
    """
    nodes = list(nodes)
    finder = _UnionFind()
    for node in nodes:
        finder.find(node)
    forbidden: dict[str, set[str]] = {}
    for left, right in cannot_link:
        forbidden.setdefault(left, set()).add(right)
        forbidden.setdefault(right, set()).add(left)
    # Keep, per root, the set of roots it may never join; merged on every union.
    blocked: dict[str, set[str]] = {n: set(v) for n, v in forbidden.items()}

    def try_union(left: str, right: str) -> bool:
        root_l, root_r = finder.find(left), finder.find(right)
        if root_l == root_r:
            return True
        if _blocks(blocked.get(root_l, set()), root_r, finder) or _blocks(blocked.get(root_r, set()), root_l, finder):
            return False
        finder.union(root_l, root_r)
        new_root = finder.find(root_l)
        merged = blocked.pop(root_l, set()) | blocked.pop(root_r, set())
        if merged:
            blocked[new_root] = merged
        return True

    for left, right in sorted(must_link):
        try_union(left, right)
    refused = 0
    ordered = sorted(weighted_edges, key=lambda e: (-e[2], e[0], e[1]))
    for left, right, _ in ordered:
        if not try_union(left, right):
            refused += 1
    return {n: finder.find(n) for n in nodes}, refused


def _blocks(blocked_nodes: set[str], other_root: str, finder: _UnionFind) -> bool:
    return any(finder.find(n) == other_root for n in blocked_nodes)


def _strong_edges_within(
    members: pd.DataFrame, match_pairs: pd.DataFrame | Path, threshold: float | Mapping[str, float]
) -> list[tuple[str, str, float]]:
    """Links with both records inside the given components: the resolver's `is_link` when present,
    else match weight at or above the threshold."""
    thresholds = _threshold_frame(threshold, members["party_type"].unique())
    con = duckdb.connect(config=duckdb_config())
    try:
        con.register("members", members[["source_record_id", "party_type", "component"]])
        if isinstance(match_pairs, pd.DataFrame):
            con.register("pairs", match_pairs)
        else:
            con.execute(f"create view pairs as select * from read_parquet({quote_literal(Path(match_pairs).as_posix())})")
        columns = {r[0] for r in con.execute("describe pairs").fetchall()}
        # The resolver's own link decision when it wrote one (its guards can veto a strong pair).
        link = ("coalesce(p.is_link, p.match_weight >= t.match_threshold)" if "is_link" in columns
                else "p.match_weight >= t.match_threshold")
        con.register("thresholds", thresholds)
        rows = con.execute(
            f"""
            select cast(p.source_record_id_l as varchar), cast(p.source_record_id_r as varchar), p.match_weight
            from pairs p
            join members l on l.source_record_id = cast(p.source_record_id_l as varchar)
            join members r on r.source_record_id = cast(p.source_record_id_r as varchar)
            join thresholds t on t.party_type = l.party_type
            where l.component = r.component and {link}
            """
        ).fetchall()
    finally:
        con.close()
    return [(str(a), str(b), float(p)) for a, b, p in rows]


def _threshold_frame(threshold: float | Mapping[str, float], party_types) -> pd.DataFrame:
    if isinstance(threshold, Mapping):
        values = {pt: float(threshold[pt]) for pt in party_types}
    else:
        values = {pt: float(threshold) for pt in party_types}
    return pd.DataFrame({"party_type": list(values), "match_threshold": list(values.values())})


class _UnionFind:
    """Disjoint sets with path halving; the smaller key becomes the root so results are order-free."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, node: str) -> str:
        self.parent.setdefault(node, node)
        root = node
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[node] != root:  # compress the path just walked
            self.parent[node], node = root, self.parent[node]
        return root

    def union(self, left: str, right: str) -> bool:
        root_l, root_r = self.find(left), self.find(right)
        if root_l == root_r:
            return False
        low, high = sorted((root_l, root_r))
        self.parent[high] = low
        return True
