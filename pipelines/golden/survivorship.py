"""Golden records: survivorship per attribute group, and each customer's resolution confidence.

SQL over `golden_records` (source records with their customer_id) and `match_pairs`: window
functions rank the candidate records of each group per customer, the first one wins, and its
`source_record_id` is kept beside every value it gave. Each group's winners (and each display
column's) go into a temporary table of their own, one statement each, and the golden record joins
them once on customer_id (`create_customers`): as one statement of ~25 windowed CTEs DuckDB took
82 s of golden's 109 s at 1M records, as separate statements well under half of that.
"""

from __future__ import annotations

import duckdb

from pipelines.golden.config import SurvivorshipGroup, computed_columns, survivorship_groups
from pipelines.sql import quote_list, quote_literal

STEP_PREFIX = "survivorship_"  # the temporary tables of create_customers


def sql_list(values: list[str]) -> str:
    return quote_list(values)


def trust_rank_sql(order: list[str]) -> str:
    """0 for the most trusted source, len(order) for sources the order does not name."""
    cases = " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(order))
    return f"CASE source_system {cases} ELSE {len(order)} END"


def rank_order_sql(group: SurvivorshipGroup) -> str:
    """The ORDER BY that puts a group's winning candidate record first."""
    order = []
    for rule in group.rules:
        if rule == "source_trust":
            order.append(f"{trust_rank_sql(group.source_trust)} ASC")
        elif rule == "recency":
            order.append("updated_at DESC NULLS LAST")
        elif rule == "completeness":
            present = " + ".join(f"({f} IS NOT NULL)::INTEGER" for f in group.fields)
            order.append(f"({present}) DESC")
        elif rule == "most_frequent":
            order.append("value_frequency DESC")
        elif rule == "not_outvoted":
            order.append("is_outvoted ASC")
        elif isinstance(rule, dict) and "prefer" in rule:
            order.append(f"coalesce(({rule['prefer']}), FALSE) DESC")  # TRUE sorts first
        elif isinstance(rule, dict) and "latest" in rule:
            order.append(f"({rule['latest']}) DESC NULLS LAST")
        else:
            raise ValueError(f"group {group.name!r}: unknown rule {rule!r}")
    order.append("source_record_id ASC")  # deterministic last tie-breaker
    return ", ".join(order)


def variant_key_sql(fields: list[str]) -> str:
    return "concat_ws(' ', " + ", ".join(f"coalesce(CAST({f} AS VARCHAR), '')" for f in fields) + ")"


def commonness_sql(fields: list[str], holders_from: str = "candidates") -> str:
    """Per (customer_id, variant_key): how many OTHER customers hold each of its field values,
    as a sum of ln(1 + n). A typo or a name split the wrong way round is a value nobody else
    has ("Beire", given name "Zou"); the true value usually is shared ("Beier", given "Li").
    Two records can share a variant key with different fields ("gotthard dussen" + "van" and
    "gotthard" + "dussen van"): the smallest value of each field stands for the variant, so the
    result does not depend on which record DuckDB reads first. `holders_from` holds the
    candidates of every customer (when `candidates` holds only some: an incremental night)."""
    holders = " UNION ALL ".join(
        f"SELECT {i} AS field, CAST({f} AS VARCHAR) AS value, customer_id FROM {holders_from}"
        for i, f in enumerate(fields))
    values = " UNION ALL ".join(
        f"SELECT customer_id, variant_key, {i} AS field, CAST(min({f}) AS VARCHAR) AS value"
        f" FROM candidates GROUP BY customer_id, variant_key" for i, f in enumerate(fields))
    return f"""
        WITH holders AS (
            SELECT field, value, count(DISTINCT customer_id) AS customers
            FROM ({holders}) WHERE value IS NOT NULL GROUP BY field, value
        )
        SELECT v.customer_id, v.variant_key,
               round(sum(ln(coalesce(h.customers, 1))), 6) AS commonness  -- ln(1 + others)
        FROM ({values}) v LEFT JOIN holders h USING (field, value)
        GROUP BY v.customer_id, v.variant_key
    """


def outvoted_sql(group: SurvivorshipGroup) -> str:
    """(customer_id, variant_key) of values that look like a slip of another value of the same
    customer held by MORE records (or by as many, but more common among other customers, or as
    common and from a more trusted source): within one edit (two for values over 6 characters),
    or the same words swapped."""
    return """
        SELECT DISTINCT a.customer_id, a.variant_key
        FROM variant_counts a JOIN variant_counts b
          ON a.customer_id = b.customer_id AND a.variant_key <> b.variant_key
         AND (b.n > a.n
              OR (b.n = a.n AND (b.commonness > a.commonness
                                 OR (b.commonness = a.commonness
                                     AND b.best_trust < a.best_trust))))
         AND (a.variant_key = b.swapped_key
              OR damerau_levenshtein(a.variant_key, b.variant_key)
                 <= CASE WHEN least(length(a.variant_key), length(b.variant_key)) <= 6
                         THEN 1 ELSE 2 END)
    """


def candidate_filter_sql(group: SurvivorshipGroup) -> str:
    """The WHERE that makes a record a candidate of the group."""
    where = " AND ".join(f"{f} IS NOT NULL" for f in group.required)
    if group.party_types:
        where += f" AND party_type IN ({sql_list(group.party_types)})"
    if group.candidates:
        where += f" AND ({group.candidates})"
    return where


def group_winner_sql(group: SurvivorshipGroup, records: str = "golden_records",
                     everyone: str = "golden_records") -> str:
    """One row per customer of `records`: the winning record's fields for this group, and that
    record's id. `everyone` holds every customer's records: how common a value is among other
    customers (`not_outvoted`) is counted there."""
    where = candidate_filter_sql(group)
    frequency_key = ", ".join(["customer_id", *group.frequency_of])
    outvoting = "not_outvoted" in group.rules
    holders_from = "candidates"
    everyone_cte = ""
    if outvoting and records != everyone:
        holders_from = "all_candidates"
        everyone_cte = (f"all_candidates AS (SELECT customer_id, "
                        f"{', '.join(group.variants_of)} FROM {everyone} WHERE {where}),")
    return f"""
        WITH candidates AS (
            SELECT *, count(*) OVER (PARTITION BY {frequency_key}) AS value_frequency,
                   {variant_key_sql(group.variants_of)} AS variant_key,
                   {variant_key_sql(group.variants_of[::-1])} AS swapped_key
            FROM {records}
            WHERE {where}
        ),
        {everyone_cte}
        variant_commonness AS ({commonness_sql(group.variants_of, holders_from) if outvoting else
                                "SELECT customer_id, variant_key, 0.0 AS commonness "
                                "FROM candidates WHERE FALSE"}),
        variant_counts AS (
            SELECT customer_id, variant_key, min(swapped_key) AS swapped_key, count(*) AS n,
                   min({trust_rank_sql(group.source_trust)}) AS best_trust,
                   any_value(vc.commonness) AS commonness
            FROM candidates LEFT JOIN variant_commonness vc USING (customer_id, variant_key)
            GROUP BY customer_id, variant_key
        ),
        outvoted AS ({outvoted_sql(group) if outvoting else
                      "SELECT customer_id, variant_key FROM variant_counts WHERE FALSE"})
        SELECT c.customer_id, {", ".join(f"c.{f}" for f in group.fields)},
               c.source_record_id AS winner_record_id, ({group.as_of}) AS winner_as_of
        FROM (
            SELECT candidates.*, outvoted.variant_key IS NOT NULL AS is_outvoted
            FROM candidates LEFT JOIN outvoted USING (customer_id, variant_key)
        ) c
        QUALIFY row_number() OVER (PARTITION BY c.customer_id ORDER BY {rank_order_sql(group)}) = 1
    """


def confidence_sql(records: str = "golden_records", everyone: str = "golden_records") -> str:
    """Per customer of `records`: the weakest link that holds it together and the strongest pair
    to another customer's record (`everyone`: all records, to find who that other customer is)."""
    scope = "" if records == everyone else f"""
        WHERE p.source_record_id_l IN (SELECT source_record_id FROM {records})
           OR p.source_record_id_r IN (SELECT source_record_id FROM {records})"""
    return CONFIDENCE_SQL.format(everyone=everyone, records=records, scope=scope)


CONFIDENCE_SQL = """
    WITH pair_customers AS (
        SELECT l.customer_id AS customer_l, r.customer_id AS customer_r,
               p.source_record_id_l AS record_l, p.source_record_id_r AS record_r,
               p.match_probability
        FROM match_pairs p
        JOIN {everyone} l ON l.source_record_id = p.source_record_id_l
        JOIN {everyone} r ON r.source_record_id = p.source_record_id_r{scope}
    ),
    record_links AS (
        SELECT customer_l AS customer_id, record_l AS source_record_id, match_probability,
               customer_l = customer_r AS inside
        FROM pair_customers
        UNION ALL
        SELECT customer_r, record_r, match_probability, customer_l = customer_r
        FROM pair_customers
    ),
    best_link_inside AS (
        SELECT customer_id, source_record_id, max(match_probability) AS best_link
        FROM record_links WHERE inside
        GROUP BY ALL
    ),
    cohesion AS (
        -- a record joined without any scored pair (a steward's must-link) counts as certain
        SELECT g.customer_id,
               CASE WHEN count(*) > 1 THEN min(coalesce(b.best_link, 1.0)) END AS weakest_link
        FROM {records} g
        LEFT JOIN best_link_inside b USING (customer_id, source_record_id)
        GROUP BY g.customer_id
    ),
    nearest_other AS (
        SELECT customer_id, max(match_probability) AS nearest_other
        FROM record_links WHERE NOT inside
        GROUP BY customer_id
    )
    SELECT c.customer_id,
           round(least(coalesce(c.weakest_link, 1.0), 1.0 - coalesce(n.nearest_other, 0.0)), 6)
               AS confidence,
           c.weakest_link AS weakest_link_probability,
           n.nearest_other AS nearest_other_customer_probability
    FROM cohesion c LEFT JOIN nearest_other n USING (customer_id)
"""


def display_quality_sql(value: str) -> str:
    """Higher for a form fitter for people and letters: mixed case, then diacritics or hanzi."""
    return (f"CASE WHEN ({value}) IS NULL THEN -1 ELSE "
            f"(({value}) <> upper({value}) AND ({value}) <> lower({value}))::INTEGER * 2 "
            f"+ (strlen({value}) > length({value}))::INTEGER END")  # more bytes than characters


def display_winner_sql(group: SurvivorshipGroup, column: str, value: str, same: str,
                       records: str = "golden_records") -> str:
    """One row per customer: the best-written `value` among the records whose comparison form
    `same` equals the group winner's ("Müller" beats "MUELLER" and "mueller" for "mueller"), in
    the winner's script (hanzi stay hanzi: 王丽 is not replaced by a romanised "Wang Li")."""
    return f"""
        SELECT customer_id, display AS {column}, source_record_id AS {column}_source_record_id
        FROM (
            SELECT w.customer_id, r.display, r.source_record_id, r.trust_rank, r.updated_at,
                   r.source_record_id = w.winner_record_id AS is_winner, r.han,
                   max(CASE WHEN r.source_record_id = w.winner_record_id THEN r.han END)
                       OVER (PARTITION BY w.customer_id) AS winner_han
            FROM {step_table('g_' + group.name)} w
            JOIN (SELECT customer_id, source_record_id, updated_at, {same} AS same_value,
                         {trust_rank_sql(group.source_trust)} AS trust_rank, ({value}) AS display,
                         regexp_matches(({value}), '\\p{{Han}}') AS han
                  FROM {records}) r
              ON r.customer_id = w.customer_id AND r.same_value IS NOT DISTINCT FROM w.{same}
             AND r.display IS NOT NULL
        )
        QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY
            han IS NOT DISTINCT FROM coalesce(winner_han, han) DESC,
            {display_quality_sql("display")} DESC, is_winner DESC,
            trust_rank, updated_at DESC NULLS LAST, source_record_id) = 1
    """


def step_table(name: str) -> str:
    """The temporary table of one step of create_customers."""
    return STEP_PREFIX + name


def customer_steps(config: dict, records: str = "golden_records",
                   everyone: str = "golden_records") -> list[tuple[str, str]]:
    """(temporary table, query) in order: per-customer base facts, confidence, and each group's
    winners and display winners; `customers_select_sql` joins them. The customers are those of
    `records`; `everyone` has all records (what other customers hold, who a pair links to)."""
    steps = [(step_table("base"), BASE_SQL.format(records=records)),
             (step_table("confidence"), confidence_sql(records, everyone))]
    for g in survivorship_groups(config):
        steps.append((step_table(f"g_{g.name}"), group_winner_sql(g, records, everyone)))
        for column, display in (g.display or {}).items():
            steps.append((step_table(f"d_{column}"), display_winner_sql(
                g, column, display["value"], display["same"], records)))
    return steps


def customers_select_sql(config: dict) -> str:
    """The `customers` rows from the tables of `customer_steps`: one golden record per customer."""
    groups = survivorship_groups(config)
    columns, joins = [], []
    for g in groups:
        winners = step_table(f"g_{g.name}")
        for field in g.fields:
            columns.append(f"{winners}.{field}")
            columns.append(f"{winners}.winner_record_id AS {field}_source_record_id")
        joins.append(f"LEFT JOIN {winners} USING (customer_id)")
        for column in g.display or {}:
            display = step_table(f"d_{column}")
            columns += [f"{display}.{column}", f"{display}.{column}_source_record_id"]
            joins.append(f"LEFT JOIN {display} USING (customer_id)")
    for g in groups:  # as-of columns after every golden field
        as_of = config["groups"][g.name].get("as_of_column")
        if as_of:
            columns.append(f"{step_table(f'g_{g.name}')}.winner_as_of AS {as_of}")
    computed = "".join(f", {sql} AS {name}" for name, sql in computed_columns(config).items())
    base, confidence = step_table("base"), step_table("confidence")
    return f"""
        SELECT *{computed} FROM (
            SELECT {base}.customer_id, {base}.party_type,
                   {", ".join(columns)},
                   {confidence}.confidence,
                   {confidence}.weakest_link_probability,
                   {confidence}.nearest_other_customer_probability,
                   {base}.n_source_records, {base}.source_systems,
                   {base}.first_updated_at, {base}.last_updated_at
            FROM {base}
            LEFT JOIN {confidence} USING (customer_id)
            {" ".join(joins)}
        ) ORDER BY customer_id
    """


def create_customers(con: duckdb.DuckDBPyConnection, config: dict, run_id: str | None = None,
                     table: str = "customers", records: str = "golden_records") -> None:
    """Create `table` (one golden record per customer, with provenance and confidence, and
    `run_id` when given) from `golden_records` and `match_pairs` in `con`: each step into a
    temporary table, joined once; the temporary tables are dropped again. `records`: only the
    customers whose records are in this table (all of each one's records; an incremental night)."""
    steps = customer_steps(config, records)
    try:
        for name, query in steps:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {query}")
        run = f", {quote_literal(run_id)} AS run_id" if run_id is not None else ""
        con.execute(f"CREATE OR REPLACE TABLE {table} AS "
                    f"SELECT *{run} FROM ({customers_select_sql(config)})")
    finally:
        for name, _ in steps:
            con.execute(f"DROP TABLE IF EXISTS temp.{name}")


BASE_SQL = """
    SELECT customer_id,
           mode(party_type) AS party_type,
           count(*) AS n_source_records,
           list(DISTINCT source_system ORDER BY source_system) AS source_systems,
           min(updated_at) AS first_updated_at,
           max(updated_at) AS last_updated_at
    FROM {records}
    GROUP BY customer_id
"""
