"""The analyst model's policy and claim grains: `policies` (one row per policy across sources),
`claims` (one row per claim) and `currency_rates` (the rate table their reporting amounts used).

Policy facts come from the most trusted source (the `policy_facts` and `claim_facts` tables that
customer_360 reads too, see profile.create_fact_tables); premiums and claim amounts are
kept in their own currency and converted to the reporting currency at the configured rates
(`customer_360.currency_rates` in schemas/survivorship.yaml: a rate table with its as-of date).
"""

from __future__ import annotations

from pipelines.golden.survivorship import sql_list, trust_rank_sql
from pipelines.sql import quote_literal


def currency_rates(config: dict) -> dict:
    """The configured rate table: reporting currency, as-of date, currency -> rate."""
    table = config["customer_360"]["currency_rates"]
    return {"reporting_currency": str(table["reporting_currency"]), "as_of": str(table["as_of"]),
            "source": str(table.get("source", "")),
            "rates": {str(k): float(v) for k, v in table["to_reporting"].items()}}


def currency_rates_sql(config: dict) -> str:
    """One row per currency: its rate to the reporting currency, and the table's as-of date."""
    table = currency_rates(config)
    rows = ", ".join(f"({sql_list([currency])}, {rate!r})" for currency, rate in table["rates"].items())
    return f"""
        SELECT currency, CAST(rate AS DOUBLE) AS rate_to_reporting,
               {sql_list([table['reporting_currency']])} AS reporting_currency,
               DATE {sql_list([table['as_of']])} AS rates_as_of,
               {sql_list([table['source']])} AS rates_source
        FROM (VALUES {rows}) AS t(currency, rate)
        ORDER BY currency
    """


def line_of_business_sql(config: dict, product: str) -> str:
    """The configured line of business of a product code ('other' for codes it does not name)."""
    rules = config["customer_360"]
    cases = " ".join(f"WHEN {sql_list([code])} THEN {sql_list([line])}"
                     for code, line in rules["lines_of_business"].items())
    return f"CASE {product} {cases} ELSE {sql_list([rules['line_of_business_unknown']])} END"


def policies_sql(config: dict, run_id: str) -> str:
    """One row per policy (policy_key): facts, premium in policy and reporting currency, holder."""
    rules = config["customer_360"]
    holder_trust = trust_rank_sql(config["source_trust"])
    return f"""
        WITH holders AS (
            SELECT policy_key,
                   first(customer_id ORDER BY CASE role WHEN 'policyholder' THEN 0 ELSE 1 END,
                         {holder_trust}, customer_id) AS holder_customer_id
            FROM customer_policy_links WHERE role IN ({sql_list(rules['holder_roles'])})
            GROUP BY policy_key
        ),
        linked AS (
            SELECT policy_key, count(DISTINCT customer_id) AS n_customers,
                   list(DISTINCT customer_id ORDER BY customer_id) AS customer_ids
            FROM customer_policy_links GROUP BY policy_key
        )
        SELECT p.policy_key, p.policy_number,
               {line_of_business_sql(config, 'p.product')} AS line_of_business,
               p.product, p.policy_status, p.policy_start_date, p.policy_end_date,
               p.annual_premium, p.currency,
               round(p.annual_premium * r.rate_to_reporting, 2) AS annual_premium_reporting,
               r.reporting_currency, r.rate_to_reporting, r.rates_as_of,
               h.holder_customer_id, coalesce(l.n_customers, 0) AS n_customers,
               coalesce(l.customer_ids, []) AS customer_ids,
               p.source_systems, p.n_source_records, {quote_literal(run_id)} AS run_id
        FROM policy_facts p
        LEFT JOIN currency_rates r USING (currency)
        LEFT JOIN holders h USING (policy_key)
        LEFT JOIN linked l USING (policy_key)
        ORDER BY p.policy_key
    """


def claims_sql(config: dict, run_id: str) -> str:
    """One row per claim: its policy, claimant and holder, amounts in claim and reporting currency."""
    country_currency = ", ".join(f"({sql_list([k])}, {sql_list([v])})"
                                 for k, v in config["customer_360"]["currency_by_country"].items())
    return f"""
        WITH country_currency AS (SELECT * FROM (VALUES {country_currency}) AS t(country, currency))
        SELECT f.claim_number AS claim_id, f.policy_key,
               coalesce(p.policy_number, f.policy_number) AS policy_number,
               p.line_of_business, p.product,
               f.claimant_customer_id, p.holder_customer_id,
               f.claim_date, f.claim_status, f.claim_amount, f.claim_paid_amount,
               coalesce(f.currency, p.currency, cc.currency) AS currency,
               round(f.claim_amount * r.rate_to_reporting, 2) AS claim_amount_reporting,
               round(f.claim_paid_amount * r.rate_to_reporting, 2) AS claim_paid_amount_reporting,
               r.reporting_currency, r.rate_to_reporting, r.rates_as_of,
               f.source_system, f.source_record_id, {quote_literal(run_id)} AS run_id
        FROM claim_facts f
        LEFT JOIN policies p USING (policy_key)
        LEFT JOIN customers c ON c.customer_id = f.claimant_customer_id
        LEFT JOIN country_currency cc ON cc.country = c.country
        LEFT JOIN currency_rates r ON r.currency = coalesce(f.currency, p.currency, cc.currency)
        ORDER BY claim_id
    """
