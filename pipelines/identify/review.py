"""The review queue: pairs a data steward should decide, with Splink's per-comparison evidence.

One row per pair. Reasons:
- `borderline_pair`: match weight between the review floor and the match threshold (or above it
  but vetoed by one of the resolver's link guards, see `link_blocked_by`), in two customers;
- `weak_link_inside_customer`: such a pair whose records ended up in one customer anyway (through
  other links), which is how wrong transitive merges show;
- `weak_cluster_link`: the weakest link holding together a customer whose records are thinly
  connected (link density below `min_density`) or that contains a weak pair as above;
- `strong_pair_kept_apart`: a link kept in two customers by a cannot-link.
Pairs a steward already decided are left out; decisions come back as overrides.
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
) -> pd.DataFrame:
    """Rows for stewards, most uncertain first (match weight closest to the match threshold)."""
    con = duckdb.connect(config=duckdb_config())
    try:
        if isinstance(match_pairs, pd.DataFrame):
            con.register("match_pairs_in", match_pairs)
            source = "match_pairs_in"
        else:
            source = f"read_parquet({quote_literal(Path(match_pairs).as_posix())})"
        columns = [r[0] for r in con.execute(f"describe select * from {source}").fetchall()]
        con.register("customer_map", customer_map[["source_record_id", "customer_id"]])
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
           p.party_type, p.match_probability, p.match_weight,
           {evidence} as evidence {extra}
    from {source} p
),
mapped as (
    select p.*, ml.customer_id as customer_id_l, mr.customer_id as customer_id_r,
           t.review_floor, t.match_threshold, {link} as linked
    from pairs p
    join customer_map ml on ml.source_record_id = p.rid_l
    join customer_map mr on mr.source_record_id = p.rid_r
    join thresholds t on t.party_type = p.party_type
    anti join decided d on d.source_record_id_l = p.rid_l and d.source_record_id_r = p.rid_r
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
    ) where rank = 1
)
select substr(md5(c.rid_l || '|' || c.rid_r || '|' || c.reason), 1, 16) as review_id,
       ? as run_id, c.party_type, c.reason,
       c.rid_l as source_record_id_l, c.rid_r as source_record_id_r,
       c.customer_id_l, c.customer_id_r, c.match_probability, c.match_weight,
       s.cluster_size, s.cluster_density,
       c.* exclude (rid_l, rid_r, party_type, reason, customer_id_l, customer_id_r,
                    match_probability, match_weight, review_floor, match_threshold, linked)
from candidates c left join stats s on s.customer_id = c.customer_id_l
order by abs(c.match_weight - c.match_threshold), c.rid_l, c.rid_r, c.reason
limit {max_rows}
"""
