"""Carry customer IDs forward from the previous run: the same customer keeps its ID.

Rules (documented in stewardship/README.md and the project README):
- Each previous ID follows the new cluster holding most of its previous records (ties: the part
  with the smallest source_record_id). The other parts of a split either join a customer that keeps
  its own ID, or get a new ID with a `split` event pointing at the ID they came from.
- A new cluster followed by several previous IDs keeps the one holding most of its records, then
  the oldest (issued earliest), then the smallest ID; the others get a `merged` event pointing at it.
- A previous ID none of whose records exist any more gets a `retired` event.
- New IDs are 'C' + a ten-digit sequence continuing the highest ID ever issued, handed out in the
  order of each cluster's smallest source_record_id: opaque, never derived from personal data, and
  the same for the same input in any row order.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandas as pd

from pipelines.settings import duckdb_config

ID_PREFIX = "C"
ID_DIGITS = 10
HISTORY_COLUMNS = ["run_id", "event", "customer_id", "related_customer_id", "party_type", "n_records"]
EVENTS = ("new", "merged", "split", "retired", "erased")


@dataclass(frozen=True)
class CarriedIds:
    """The outcome of carrying IDs forward: the record -> customer map and this run's ID events."""

    customer_map: pd.DataFrame  # source_record_id, party_type, customer_id
    events: pd.DataFrame  # HISTORY_COLUMNS
    n_kept: int


def format_customer_id(sequence: int) -> str:
    return f"{ID_PREFIX}{sequence:0{ID_DIGITS}d}"


def carry_forward_ids(
    clusters: pd.DataFrame,
    previous_map: pd.DataFrame,
    previous_history: pd.DataFrame,
    run_id: str,
    highest_issued: int = 0,
) -> CarriedIds:
    """Give every cluster a customer ID, keeping previous IDs where the rules above allow.

    `clusters`: (source_record_id, party_type, cluster_id); `previous_map`: (source_record_id,
    customer_id) the live state; `previous_history`: earlier customer_id_history rows;
    `highest_issued`: the highest sequence the ID registry ever issued (never issued again).
    """
    con = duckdb.connect(config=duckdb_config())
    try:
        con.register("clusters_in", clusters[["source_record_id", "party_type", "cluster_id"]])
        previous = previous_map.copy()
        if "party_type" not in previous:
            previous["party_type"] = None
        con.register("prev_in", previous[["source_record_id", "customer_id", "party_type"]])
        con.register("history_in", _history_frame(previous_history))
        con.execute(_CARRY_SQL)
        next_sequence = max(_next_sequence(con), highest_issued + 1)
        con.execute(
            f"""
            create temp table fresh as
            select cluster_id,
                   '{ID_PREFIX}' || lpad(cast({next_sequence} + row_number() over (order by cluster_id) - 1
                                            as varchar), {ID_DIGITS}, '0') as customer_id
            from cluster_sizes
            where cluster_id not in (select cluster_id from kept)
            """
        )
        con.execute(
            """
            create temp table cluster_ids as
            select cluster_id, prev_id as customer_id from kept
            union all select cluster_id, customer_id from fresh
            """
        )
        customer_map = con.execute(
            """
            select c.source_record_id, c.party_type, i.customer_id
            from cur c join cluster_ids i using (cluster_id)
            order by c.source_record_id
            """
        ).df()
        events = con.execute(_EVENTS_SQL, [run_id, run_id, run_id, run_id]).df()
        n_kept = con.execute("select count(*) from kept").fetchall()[0][0]
    finally:
        con.close()
    events["n_records"] = events["n_records"].astype("int64")
    return CarriedIds(customer_map=customer_map, events=events[HISTORY_COLUMNS], n_kept=int(n_kept))


def _history_frame(previous_history: pd.DataFrame) -> pd.DataFrame:
    if previous_history is None or previous_history.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in ("run_id", "event", "customer_id",
                                                                    "related_customer_id")})
    return previous_history[["run_id", "event", "customer_id", "related_customer_id"]].astype("object")


def _next_sequence(con: duckdb.DuckDBPyConnection) -> int:
    """One past the highest sequence ever issued, so retired and merged IDs are never reused."""
    pattern = f"^{ID_PREFIX}[0-9]+$"
    highest = con.execute(
        f"""
        select max(cast(substr(id, {len(ID_PREFIX) + 1}) as hugeint)) from (
            select customer_id as id from prev_in
            union all select customer_id from history_in
            union all select related_customer_id from history_in
        ) where regexp_matches(id, '{pattern}')
        """
    ).fetchall()[0][0]
    return int(highest or 0) + 1


_CARRY_SQL = """
-- Clusters are labelled by their smallest source_record_id, whatever label the resolver gave.
create temp table cur as
select cast(source_record_id as varchar) as source_record_id, party_type,
       min(cast(source_record_id as varchar)) over (partition by cast(cluster_id as varchar)) as cluster_id
from clusters_in;

create temp table prev as
select cast(source_record_id as varchar) as source_record_id,
       cast(customer_id as varchar) as customer_id, cast(party_type as varchar) as party_type
from prev_in where customer_id is not null;

create temp table cluster_sizes as
select cluster_id, any_value(party_type order by source_record_id) as party_type, count(*) as n_records
from cur group by cluster_id;

-- How many of each previous ID's records sit in each new cluster.
create temp table overlap as
select c.cluster_id, p.customer_id as prev_id, count(*) as n, min(c.source_record_id) as first_record
from cur c join prev p using (source_record_id)
group by c.cluster_id, p.customer_id;

-- When was each previous ID first issued (for "oldest wins").
create temp table issued as
select customer_id as prev_id, min(run_id) as issued_run
from history_in where event in ('new', 'split') group by customer_id;

-- Each previous ID follows the cluster holding most of its records.
create temp table followed as
select prev_id, cluster_id, n from (
    select *, row_number() over (partition by prev_id order by n desc, first_record) as rank
    from overlap
) where rank = 1;

-- Each cluster keeps the followed ID holding most of its records, then the oldest, then the smallest.
create temp table kept as
select cluster_id, prev_id from (
    select f.*, row_number() over (
        partition by f.cluster_id order by f.n desc, i.issued_run nulls last, f.prev_id) as rank
    from followed f left join issued i using (prev_id)
) where rank = 1;
"""

_EVENTS_SQL = """
select ? as run_id, 'new' as event, f.customer_id, cast(null as varchar) as related_customer_id,
       s.party_type, s.n_records
from fresh f join cluster_sizes s using (cluster_id)
where f.cluster_id not in (select cluster_id from overlap)
union all
select ?, 'split', f.customer_id, o.prev_id, s.party_type, o.n
from fresh f join overlap o using (cluster_id) join cluster_sizes s using (cluster_id)
union all
select ?, 'merged', fo.prev_id, k.prev_id, s.party_type, fo.n
from followed fo join kept k using (cluster_id) join cluster_sizes s using (cluster_id)
where fo.prev_id <> k.prev_id
union all
select ?, 'retired', p.customer_id, null, any_value(p.party_type order by p.source_record_id), count(*)
from prev p
where p.customer_id not in (select prev_id from overlap)
group by p.customer_id
order by event, customer_id, related_customer_id
"""
