"""Customer–policy links and the 360° profile, as SQL over `golden_records` and `customers`.

Policy and claim facts are computed once per run into the tables `policy_facts` and `claim_facts`
(`create_fact_tables`), which the links, the profile, `policies` and `claims` all read.

Rules (holder roles, currencies, tiers, ratings, renewal window) are data in
`schemas/survivorship.yaml` under `customer_360`; this module turns them into SQL.
"""

from __future__ import annotations

import itertools
from datetime import date

import duckdb

from pipelines.golden.survivorship import sql_list, trust_rank_sql
from pipelines.sql import quote_literal


def policy_facts_sql(config: dict) -> str:
    """One row per policy: product, status, premium, dates, each from the most trusted source."""
    trust = trust_rank_sql(config["customer_360"]["policy_fact_trust"])
    columns = ["product", "policy_status", "annual_premium", "currency",
               "policy_start_date", "policy_end_date"]
    picks = ",\n".join(
        f"first({c} ORDER BY {trust}, updated_at DESC NULLS LAST, source_record_id) "
        f"FILTER (WHERE {c} IS NOT NULL) AS {c}"
        for c in ["policy_number", *columns]
    )
    return f"""
        SELECT policy_key, {picks},
               list(DISTINCT source_system ORDER BY source_system) AS source_systems,
               count(*) AS n_source_records
        FROM golden_records WHERE policy_key IS NOT NULL
        GROUP BY policy_key
    """


def create_fact_tables(con: duckdb.DuckDBPyConnection, config: dict) -> None:
    """The temporary tables `policy_facts` and `claim_facts` from `golden_records`, once a run."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE policy_facts AS {policy_facts_sql(config)}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE claim_facts AS {claim_facts_sql()}")


def drop_fact_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DROP TABLE IF EXISTS temp.policy_facts")
    con.execute("DROP TABLE IF EXISTS temp.claim_facts")


def claim_facts_sql() -> str:
    """One row per claim, from its most recently updated record."""
    return """
        SELECT claim_number, policy_key, policy_number, claim_date, claim_amount,
               claim_paid_amount, claim_status, currency, customer_id AS claimant_customer_id,
               source_record_id, source_system
        FROM golden_records WHERE claim_number IS NOT NULL
        QUALIFY row_number() OVER (
            PARTITION BY claim_number ORDER BY updated_at DESC NULLS LAST, source_record_id) = 1
    """


def customer_policy_links_sql(config: dict, run_id: str) -> str:
    """One row per (customer, policy, role) seen in any source, with sources and first/last seen."""
    trust = trust_rank_sql(config["source_trust"])
    return f"""
        WITH link_records AS (
            SELECT customer_id, policy_key, coalesce(role, 'unknown') AS role,
                   source_system, source_record_id, {trust} AS trust_rank,
                   least(policy_start_date, claim_date, interaction_date,
                         CAST(updated_at AS DATE)) AS earliest_date,
                   greatest(CAST(updated_at AS DATE), claim_date, interaction_date,
                            policy_start_date) AS latest_date
            FROM golden_records WHERE policy_key IS NOT NULL
        )
        SELECT l.customer_id, any_value(p.policy_number) AS policy_number, l.policy_key, l.role,
               first(l.source_system ORDER BY l.trust_rank, l.source_system) AS source_system,
               list(DISTINCT l.source_system ORDER BY l.source_system) AS source_systems,
               list(l.source_record_id ORDER BY l.source_record_id) AS source_record_ids,
               min(l.earliest_date) AS first_seen,
               max(l.latest_date) AS last_seen,
               any_value(p.product) AS product,
               any_value(p.policy_status) AS policy_status,
               {quote_literal(run_id)} AS run_id
        FROM link_records l LEFT JOIN policy_facts p USING (policy_key)
        GROUP BY l.customer_id, l.policy_key, l.role
        ORDER BY l.customer_id, policy_number, l.role
    """


def mapping_values_sql(mapping: dict, key: str, value: str) -> str:
    rows = ", ".join(f"('{k}', {v!r})" for k, v in mapping.items())
    return f"SELECT * FROM (VALUES {rows}) AS t({key}, {value})"


def value_tier_sql(rules: dict) -> str:
    cases = " ".join(
        f"WHEN total_annual_premium_eur >= {t['min_premium_eur']} THEN '{t['tier']}'"
        for t in rules["value_tiers"]
    )
    return f"CASE {cases} ELSE '{rules['value_tier_without_premium']}' END"


def rating_sql(rules: dict) -> str:
    cases = []
    for r in rules["ratings"]:
        conditions = ["TRUE"]
        if "max_loss_ratio_12m" in r:
            conditions.append(f"coalesce(loss_ratio_12m, 0) < {r['max_loss_ratio_12m']}")
        if "max_claims_12m" in r:
            conditions.append(f"claims_count_12m <= {r['max_claims_12m']}")
        cases.append(f"WHEN {' AND '.join(conditions)} THEN '{r['rating']}'")
    return (f"CASE WHEN coalesce(total_annual_premium_eur, 0) <= 0 "
            f"THEN '{rules['rating_without_premium']}' {' '.join(cases)} END")


def age_band_sql(bounds: list[int], age: str) -> str:
    """'<18', '18-24', ..., '75+' from ascending lower bounds; NULL without a birth date."""
    cases = [f"WHEN {age} < {bounds[0]} THEN '<{bounds[0]}'"]
    cases += [f"WHEN {age} < {hi} THEN '{lo}-{hi - 1}'"
              for lo, hi in itertools.pairwise(bounds)]
    return f"CASE WHEN {age} IS NULL THEN NULL {' '.join(cases)} ELSE {quote_literal(f'{bounds[-1]}+')} END"


# Same normalised address -> same household: street/house number lower-cased, spaces and
# punctuation removed, German street suffixes unified; postcode or city; country.
HOUSEHOLD_ADDRESS_SQL = """
    lower(country) || '|' || coalesce(nullif(lower(replace(postcode, ' ', '')), ''), lower(city))
    || '|' || regexp_replace(regexp_replace(lower(street), '(straße|strasse|str\\.)', 'str', 'g'),
                             '[\\s\\pP]+', '', 'g')
    || '|' || regexp_replace(lower(coalesce(house_number, '')), '[\\s\\pP]+', '', 'g')
"""


def customer_360_sql(config: dict, golden_columns: list[str], export_date: date,
                     run_id: str) -> str:
    """One row per customer: golden fields plus policies, premium, claims, interactions, tiers."""
    rules = config["customer_360"]
    holder_roles = sql_list(rules["holder_roles"])
    covered_roles = sql_list(rules["covered_roles"])
    day = f"DATE '{export_date.isoformat()}'"
    renewal_end = f"{day} + INTERVAL {int(rules['renewal_window_months'])} MONTH"
    golden = ", ".join(f"c.{col}" for col in golden_columns)
    return f"""
        WITH rates AS (SELECT currency, rate_to_reporting AS rate_to_eur FROM currency_rates),
        country_currency AS ({mapping_values_sql(rules['currency_by_country'], 'country', 'currency')}),
        held AS (
            SELECT DISTINCT customer_id, policy_key
            FROM customer_policy_links WHERE role IN ({holder_roles})
        ),
        held_facts AS (
            SELECT h.customer_id, p.*, p.annual_premium * r.rate_to_eur AS annual_premium_eur
            FROM held h JOIN policy_facts p USING (policy_key)
            LEFT JOIN rates r USING (currency)
        ),
        policy_totals AS (
            SELECT customer_id,
                list(policy_number ORDER BY policy_number)
                    FILTER (WHERE policy_status = 'active') AS active_policies,
                list(policy_number ORDER BY policy_number)
                    FILTER (WHERE policy_status = 'lapsed') AS lapsed_policies,
                list(DISTINCT product ORDER BY product)
                    FILTER (WHERE policy_status = 'active' AND product IS NOT NULL) AS products_held,
                list_sum(list(annual_premium_eur ORDER BY policy_key)
                         FILTER (WHERE policy_status = 'active')) AS total_annual_premium_eur,
                min(policy_start_date) AS customer_since,
                list(struct_pack(policy_number, product, policy_end_date, annual_premium, currency)
                     ORDER BY policy_end_date, policy_number)
                    FILTER (WHERE policy_status = 'active' AND policy_end_date > {day}
                            AND policy_end_date <= {renewal_end}) AS renewals_due
            FROM held_facts GROUP BY customer_id
        ),
        covered AS (
            SELECT l.customer_id, list(DISTINCT l.policy_number ORDER BY l.policy_number)
                       AS covered_on_policies
            FROM customer_policy_links l
            WHERE l.role IN ({covered_roles}) AND l.policy_status = 'active'
            GROUP BY l.customer_id
        ),
        customer_claims AS (
            SELECT DISTINCT customer_id, claim_number FROM golden_records
            WHERE claim_number IS NOT NULL
            UNION
            SELECT h.customer_id, f.claim_number FROM held h JOIN claim_facts f USING (policy_key)
        ),
        claim_amounts AS (
            SELECT cc.customer_id, f.claim_number, f.claim_date,
                   f.claim_paid_amount * r.rate_to_eur AS paid_eur
            FROM customer_claims cc
            JOIN claim_facts f USING (claim_number)
            JOIN customers c ON c.customer_id = cc.customer_id
            LEFT JOIN policy_facts p ON p.policy_key = f.policy_key
            LEFT JOIN country_currency cur ON cur.country = c.country
            LEFT JOIN rates r ON r.currency = coalesce(f.currency, p.currency, cur.currency)
        ),
        claim_totals AS (
            SELECT customer_id,
                   count(*) AS claims_count,
                   coalesce(list_sum(list(paid_eur ORDER BY claim_number)), 0)
                       AS claims_paid_amount_eur,
                   max(claim_date) AS last_claim_date,
                   count(*) FILTER (WHERE claim_date > {day} - INTERVAL 12 MONTH
                                    AND claim_date <= {day}) AS claims_count_12m,
                   coalesce(list_sum(list(paid_eur ORDER BY claim_number)
                                     FILTER (WHERE claim_date > {day} - INTERVAL 12 MONTH
                                             AND claim_date <= {day})), 0) AS paid_12m_eur
            FROM claim_amounts GROUP BY customer_id
        ),
        last_interaction AS (
            SELECT customer_id, interaction_date AS last_interaction_date,
                   interaction_channel AS last_interaction_channel
            FROM golden_records WHERE interaction_date IS NOT NULL
            QUALIFY row_number() OVER (PARTITION BY customer_id
                ORDER BY interaction_date DESC, source_record_id) = 1
        ),
        households AS (
            SELECT customer_id,
                   'HH-' || substr(md5({HOUSEHOLD_ADDRESS_SQL}), 1, 16) AS household_id
            FROM customers
            WHERE party_type = 'person' AND street IS NOT NULL AND country IS NOT NULL
              AND coalesce(postcode, city) IS NOT NULL
        ),
        household_sizes AS (
            SELECT household_id, count(*) AS household_size FROM households GROUP BY household_id
        ),
        profile AS (
            SELECT {golden}, c.confidence, c.n_source_records, c.source_systems,
                   coalesce(pt.active_policies, []) AS active_policies,
                   coalesce(pt.lapsed_policies, []) AS lapsed_policies,
                   coalesce(pt.products_held, []) AS products_held,
                   coalesce(cv.covered_on_policies, []) AS covered_on_policies,
                   round(coalesce(pt.total_annual_premium_eur, 0), 2) AS total_annual_premium_eur,
                   coalesce(ct.claims_count, 0) AS claims_count,
                   round(coalesce(ct.claims_paid_amount_eur, 0), 2) AS claims_paid_amount_eur,
                   ct.last_claim_date,
                   coalesce(ct.claims_count_12m, 0) AS claims_count_12m,
                   CASE WHEN pt.total_annual_premium_eur > 0
                        THEN round(coalesce(ct.paid_12m_eur, 0) / pt.total_annual_premium_eur, 4)
                   END AS loss_ratio_12m,
                   li.last_interaction_date, li.last_interaction_channel,
                   pt.customer_since,
                   CAST(floor(date_diff('day', pt.customer_since, {day}) / 365.25) AS INTEGER)
                       AS tenure_years,
                   coalesce(pt.renewals_due, []) AS renewals_due,
                   hh.household_id,
                   CAST(date_part('year', age({day}, c.birth_date)) AS INTEGER) AS age_years
            FROM customers c
            LEFT JOIN policy_totals pt USING (customer_id)
            LEFT JOIN covered cv USING (customer_id)
            LEFT JOIN claim_totals ct USING (customer_id)
            LEFT JOIN last_interaction li USING (customer_id)
            LEFT JOIN households hh USING (customer_id)
        )
        SELECT profile.*,
               len(active_policies) AS n_active_policies,
               len(renewals_due) AS n_renewals_due,
               {value_tier_sql(rules)} AS value_tier,
               {rating_sql(rules)} AS rating,
               {age_band_sql([int(b) for b in rules['age_bands']], 'age_years')} AS age_band,
               hs.household_size,
               {quote_literal(run_id)} AS run_id
        FROM profile
        LEFT JOIN household_sizes hs USING (household_id)
        ORDER BY customer_id
    """
