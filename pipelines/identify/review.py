"""The review queue: pairs a data steward should decide, with Splink's per-comparison evidence.

One row per pair. Reasons:
- `borderline_pair`: match weight between the review floor and the match threshold (or above it
  but vetoed by one of the resolver's link guards, see `link_blocked_by`), in two customers;
- `weak_link_inside_customer`: such a pair whose records ended up in one customer anyway (through
  other links), which is how wrong transitive merges show;
- `weak_cluster_link`: the weakest link holding together a customer whose records are thinly
  connected (link density below `min_density`) or that contains a weak pair as above;
- `strong_pair_kept_apart`: a link kept in two customers by a cannot-link.

Stewards decide per pair of customers, not per record pair (`review_groups`: one row per customer
pair, most impact first). A decision is one override on one record pair, and it covers every pair
between the same two groups of records, a group being the resolver's link component and the
customer a record ends up in: after a must-link joins X and Y, the other weak X–Y pairs do not come
back the next night, and neither do the X–Y pairs after a cannot-link.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pandas as pd

from pipelines.identify.config import IdentifyConfig
from pipelines.identify.overrides import Override
from pipelines.settings import duckdb_config
from pipelines.sql import quote_literal

REVIEW_COLUMNS = [
    "review_id", "run_id", "party_type", "reason", "source_record_id_l", "source_record_id_r",
    "customer_id_l", "customer_id_r", "match_probability", "match_weight", "cluster_size",
    "cluster_density", "evidence",
]
_KEY_COLUMNS = {"source_record_id_l", "source_record_id_r", "party_type", "match_weight", "match_probability"}


def build_review_queue(
    match_pairs: Path | pd.DataFrame,
    customer_map: pd.DataFrame,
    overrides: list[Override],
    config: IdentifyConfig,
    run_id: str,
    resolver_clusters: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Rows for stewards, most uncertain first (match weight closest to the match threshold).

    `resolver_clusters` (source_record_id, cluster_id: the resolver's clusters before overrides)
    lets a decision cover its sibling pairs; without it a decision covers its own pair only."""
    con = duckdb.connect(config=duckdb_config())
    try:
        if isinstance(match_pairs, pd.DataFrame):
            con.register("match_pairs_in", match_pairs)
            source = "match_pairs_in"
        else:
            source = f"read_parquet({quote_literal(Path(match_pairs).as_posix())})"
        columns = [r[0] for r in con.execute(f"describe select * from {source}").fetchall()]
        con.register("customer_map", customer_map[["source_record_id", "customer_id"]])
        if resolver_clusters is not None:
            con.register("resolver_clusters", resolver_clusters[["source_record_id", "cluster_id"]])
        else:
            con.execute("create temp table resolver_clusters as select source_record_id, "
                        "source_record_id as cluster_id from customer_map")
        con.register("thresholds", config.threshold_frame())
        decided = pd.DataFrame(
            [o.pair for o in overrides], columns=["source_record_id_l", "source_record_id_r"]
        ).astype("object")
        con.register("decided", decided)
        extra = [c for c in columns if c not in _KEY_COLUMNS]
        extra_select = "".join(f", p.{_quote(c)}" for c in extra)
        # The resolver's own link decision when it wrote one (its guards can veto a strong pair).
        link = ("coalesce(p.is_link, p.match_weight >= t.match_threshold)" if "is_link" in columns
                else "p.match_weight >= t.match_threshold")
        sql = _REVIEW_SQL.format(
            link=link,
            source=source,
            extra=extra_select,
            evidence=_evidence_json_sql(columns),
            min_density=float(config.min_density),
            max_rows=int(config.max_review_rows),
        )
        queue = con.execute(sql, [run_id]).df()
    finally:
        con.close()
    return queue[REVIEW_COLUMNS + [c for c in queue.columns if c not in REVIEW_COLUMNS]]


def _quote(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def _evidence_json_sql(columns: list[str]) -> str:
    """JSON {comparison: {level, match_weight}}: Splink's mw_ (+ mw_tf_adj_) columns, else log2 bf_."""
    comparisons = [m.group(1) for c in columns if (m := re.fullmatch(r"gamma_(.+)", c))]
    if not comparisons:
        return "cast(null as varchar)"
    parts = []
    for name in comparisons:
        if f"mw_{name}" in columns:
            tf = f" + coalesce(p.{_quote('mw_tf_adj_' + name)}, 0)" if f"mw_tf_adj_{name}" in columns else ""
            weight = f"round(p.{_quote('mw_' + name)}{tf}, 3)"
        elif f"bf_{name}" in columns:
            tf = f" * coalesce(p.{_quote('bf_tf_adj_' + name)}, 1.0)" if f"bf_tf_adj_{name}" in columns else ""
            weight = f"round(log2(greatest(cast(p.{_quote('bf_' + name)} as double){tf}, 1e-300)), 3)"
        else:
            weight = "null::double"
        parts.append(f"struct_pack(k := '{name}', v := struct_pack(level := p.{_quote('gamma_' + name)}, "
                     f"match_weight := {weight}))")
    # Persons and organizations share the file with different comparisons: keep the pair's own.
    return (f"cast(to_json(map_from_entries(list_filter([{', '.join(parts)}], "
            f"lambda x: x.v.level is not null))) as varchar)")


_REVIEW_SQL = """
with pairs as (
    select least(cast(p.source_record_id_l as varchar), cast(p.source_record_id_r as varchar)) as rid_l,
           greatest(cast(p.source_record_id_l as varchar), cast(p.source_record_id_r as varchar)) as rid_r,
           p.party_type, p.match_probability, p.match_weight {extra}
    from {source} p
),
record_groups as (
    -- a record's group: its resolver link component and the customer it ends up in
    select m.source_record_id, m.customer_id,
           coalesce(cast(c.cluster_id as varchar), '~' || m.source_record_id) || chr(31)
               || m.customer_id as group_key
    from customer_map m left join resolver_clusters c using (source_record_id)
),
decided_groups as (
    select distinct least(gl.group_key, gr.group_key) || chr(30) || greatest(gl.group_key, gr.group_key) as pair_key
    from decided d
    join record_groups gl on gl.source_record_id = d.source_record_id_l
    join record_groups gr on gr.source_record_id = d.source_record_id_r
),
keyed as (
    select p.*, ml.customer_id as customer_id_l, mr.customer_id as customer_id_r,
           t.review_floor, t.match_threshold, {link} as linked,
           least(ml.group_key, mr.group_key) || chr(30) || greatest(ml.group_key, mr.group_key) as pair_key
    from pairs p
    join record_groups ml on ml.source_record_id = p.rid_l
    join record_groups mr on mr.source_record_id = p.rid_r
    join thresholds t on t.party_type = p.party_type
    anti join decided d on d.source_record_id_l = p.rid_l and d.source_record_id_r = p.rid_r
),
mapped as (
    -- a decision covers the weak pairs between its two groups; a strong link it keeps apart
    -- stays in the queue (strong_pair_kept_apart) until a steward decides that pair itself
    select * from (
        select k.* exclude (pair_key),
               coalesce(k.pair_key in (select pair_key from decided_groups), false) as covered
        from keyed k
    ) where linked or not covered
),
sizes as (select customer_id, count(*) as cluster_size from customer_map group by customer_id),
internal as (
    select customer_id_l as customer_id,
           count(*) filter (where linked) as n_links,
           count(*) filter (where not linked) as n_weak
    from mapped where customer_id_l = customer_id_r group by customer_id_l
),
stats as (
    select s.customer_id, s.cluster_size, i.n_weak,
           case when s.cluster_size > 1
                then coalesce(i.n_links, 0) / (s.cluster_size * (s.cluster_size - 1) / 2.0) end as cluster_density
    from sizes s left join internal i using (customer_id)
),
flagged as (
    select * from stats
    where (cluster_size >= 3 and cluster_density < {min_density}) or coalesce(n_weak, 0) > 0
),
candidates as (
    select m.*, case when customer_id_l = customer_id_r then 'weak_link_inside_customer'
                     else 'borderline_pair' end as reason
    from mapped m where match_weight >= review_floor and not linked
    union all
    select m.*, 'strong_pair_kept_apart' as reason
    from mapped m where linked and customer_id_l <> customer_id_r
    union all
    select * exclude (rank) from (
        select m.*, 'weak_cluster_link' as reason,
               row_number() over (partition by m.customer_id_l order by m.match_weight, m.rid_l, m.rid_r) as rank
        from mapped m join flagged f on f.customer_id = m.customer_id_l
        where m.customer_id_l = m.customer_id_r and m.linked
          -- a steward who decided within this group has seen its thin links
          and m.customer_id_l not in (select customer_id_l from mapped where covered)
    ) where rank = 1
),
-- the evidence JSON is built for the rows kept only: for every scored pair it was most of the
-- stage at 1M records
top as (
    select substr(md5(c.rid_l || '|' || c.rid_r || '|' || c.reason), 1, 16) as review_id,
           ? as run_id, c.party_type, c.reason,
           c.rid_l as source_record_id_l, c.rid_r as source_record_id_r,
           c.customer_id_l, c.customer_id_r, c.match_probability, c.match_weight,
           s.cluster_size, s.cluster_density, abs(c.match_weight - c.match_threshold) as _nearness,
           c.* exclude (rid_l, rid_r, party_type, reason, customer_id_l, customer_id_r,
                        match_probability, match_weight, review_floor, match_threshold, linked, covered)
    from candidates c left join stats s on s.customer_id = c.customer_id_l
    order by _nearness, c.rid_l, c.rid_r, c.reason
    limit {max_rows}
)
select review_id, run_id, party_type, reason, source_record_id_l, source_record_id_r,
       customer_id_l, customer_id_r, match_probability, match_weight, cluster_size,
       cluster_density, {evidence} as evidence,
       p.* exclude (review_id, run_id, party_type, reason, source_record_id_l, source_record_id_r,
                    customer_id_l, customer_id_r, match_probability, match_weight, cluster_size,
                    cluster_density, _nearness)
from top p
order by _nearness, source_record_id_l, source_record_id_r, reason
"""


# --- Grouped per pair of customers, for stewards (read from a published warehouse) ---------------

GROUP_ORDER = "impact: active policies, then annual premium (EUR), then marketing reach, then uncertainty"

REVIEW_GROUPS_SQL = """
with queue as (
    select *, least(customer_id_l, customer_id_r) as customer_a,
           greatest(customer_id_l, customer_id_r) as customer_b
    from review_queue
),
groups as (
    select substr(md5(customer_a || '|' || customer_b), 1, 16) as group_id,
           any_value(party_type) as party_type, customer_a, customer_b,
           count(*) as n_pairs,
           list(distinct reason order by reason) as reasons,
           max(match_probability) as max_match_probability,
           max(match_weight) as max_match_weight,
           min(match_weight) as min_match_weight,
           list(review_id order by match_weight desc, review_id) as review_ids,
           list(source_record_id_l || chr(31) || source_record_id_r) as record_pairs
    from queue group by customer_a, customer_b
),
members as (
    select g.group_id, p.*
    from groups g join customer_360 p
      on p.customer_id = g.customer_a or p.customer_id = g.customer_b
),
impact as (
    select group_id,
           coalesce(sum(coalesce(n_active_policies, len(active_policies), 0)), 0) as active_policies,
           coalesce(sum(total_annual_premium_eur), 0) as annual_premium_eur,
           count(*) filter (where marketing_consent and (email is not null or phone_mobile is not null))
               as marketing_reach,
           list(struct_pack(customer_id := customer_id,
                            name := coalesce(org_name, full_name,
                                             concat_ws(' ', given_name, family_name)))
                order by customer_id) as customers
    from members group by group_id
)
select g.*, coalesce(i.active_policies, 0) as active_policies,
       coalesce(i.annual_premium_eur, 0) as annual_premium_eur,
       coalesce(i.marketing_reach, 0) as marketing_reach, i.customers
from groups g left join impact i using (group_id)
"""

GROUP_ORDER_SQL = ("order by active_policies desc, annual_premium_eur desc, marketing_reach desc, "
                   "abs(max_match_probability - 0.5), group_id")


def review_groups(con: duckdb.DuckDBPyConnection, limit: int = 50, offset: int = 0,
                  party_type: str | None = None) -> tuple[int, list[dict]]:
    """(number of groups, one page of them): one row per pair of customers, most impact first.

    `con` reads a published warehouse (review_queue and customer_360)."""
    where = "where party_type = $party_type" if party_type else ""
    params: dict = {"party_type": party_type} if party_type else {}
    total = con.execute(f"select count(*) from ({REVIEW_GROUPS_SQL}) {where}", params).fetchall()[0][0]
    cursor = con.execute(
        f"select * from ({REVIEW_GROUPS_SQL}) {where} {GROUP_ORDER_SQL} "
        f"limit $limit offset $offset", {**params, "limit": int(limit), "offset": int(offset)})
    names = [d[0] for d in cursor.description]
    return int(total), [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def review_group_pairs(con: duckdb.DuckDBPyConnection, group_id: str) -> list[dict]:
    """The record pairs of one group, strongest evidence first (empty when there is no such group)."""
    cursor = con.execute("""
        select * from review_queue
        where substr(md5(least(customer_id_l, customer_id_r) || '|'
                         || greatest(customer_id_l, customer_id_r)), 1, 16) = $group_id
        order by match_weight desc, review_id
    """, {"group_id": group_id})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def group_decision_pairs(pairs: list[dict], decision: str) -> list[tuple[str, str]]:
    """The record pairs a steward's decision on a group is written for.

    Between two customers: one pair, the strongest (a decision covers its siblings, see above).
    Inside one customer (is it really one?): a must-link confirms each questioned pair; a
    cannot-link cuts the weakest link, from which the customer is rebuilt."""
    if not pairs:
        return []
    ordered = sorted(pairs, key=lambda p: (-float(p["match_weight"]), p["review_id"]))
    inside = ordered[0]["customer_id_l"] == ordered[0]["customer_id_r"]
    if not inside:
        chosen = [ordered[0]]
    elif decision == "must_link":
        chosen = ordered
    else:
        chosen = [ordered[-1]]
    return sorted({(p["source_record_id_l"], p["source_record_id_r"]) for p in chosen})
