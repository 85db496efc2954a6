-- Example queries on the published warehouse (a read-only SQL shell on it: `ucv sql`).
-- Each query starts with a `-- name:` line; tests/test_golden_queries.py runs every one of them
-- against a fixture warehouse and checks the answers. Tables and columns: docs/data_dictionary.md.
-- Set the customer to look at first:  SET VARIABLE customer_id = 'C1';

-- name: what_does_this_customer_hold
-- Every policy the customer is on, in which role, with product and status.
SELECT l.policy_number, l.role, l.product, l.policy_status, l.source_systems,
       l.first_seen, l.last_seen
FROM customer_policy_links l
WHERE l.customer_id = getvariable('customer_id')
ORDER BY l.policy_number, l.role;

-- name: customers_in_more_than_two_systems
-- Customers known to three or more source systems, most systems first.
SELECT customer_id, party_type, len(source_systems) AS n_systems, source_systems,
       n_source_records, confidence
FROM customers
WHERE len(source_systems) > 2
ORDER BY n_systems DESC, customer_id;

-- name: renewals_due_next_month_by_product
-- Policies that end in the month after the export date, per product (the list agents are sent);
-- the last interaction channel says whether an agent or another channel reaches the customer.
SELECT r.product, coalesce(p.last_interaction_channel, 'none') AS channel,
       count(*) AS policies, round(sum(r.annual_premium), 2) AS premium_due
FROM customer_360 p, unnest(p.renewals_due) AS u(r)
GROUP BY ALL
ORDER BY policies DESC, r.product, channel;

-- name: households_with_more_than_one_policyholder
-- Addresses where several customers each hold an active policy: household cross-selling.
SELECT household_id, count(*) AS policyholders,
       list(customer_id ORDER BY customer_id) AS customers,
       any_value(street || ' ' || coalesce(house_number, '') || ', ' || coalesce(postcode, '')
                 || ' ' || city) AS address
FROM customer_360
WHERE household_id IS NOT NULL AND n_active_policies > 0
GROUP BY household_id
HAVING count(*) > 1
ORDER BY policyholders DESC, household_id;

-- name: where_does_each_golden_value_come_from
-- Provenance: the golden e-mail and the source record (and system) it was taken from.
SELECT c.customer_id, c.email, s.source_system, s.source_key, s.updated_at
FROM customers c
JOIN source_records s ON s.source_record_id = c.email_source_record_id
WHERE c.customer_id = getvariable('customer_id');

-- name: least_certain_customers
-- Customers the marketing export leaves out for low confidence, with the reason.
SELECT customer_id, confidence, weakest_link_probability, nearest_other_customer_probability
FROM customers
WHERE confidence < 0.9
ORDER BY confidence, customer_id;

-- name: customers_with_two_or_more_lines_of_business
-- Cross-sold customers (view customers_multi_line): who holds active policies in 2+ lines.
SELECT customer_id, display_name, lines_of_business, n_active_policies, annual_premium_reporting
FROM customers_multi_line
ORDER BY n_lines_of_business DESC, annual_premium_reporting DESC, customer_id;

-- name: loss_ratio_by_tier_and_product
-- 12-month loss ratio per value tier and product, in the reporting currency (one rate table:
-- currency_rates), from policies and claims de-duplicated across sources.
SELECT value_tier, product, n_active_policies, annual_premium_reporting, n_claims_12m,
       claims_paid_12m_reporting, loss_ratio_12m
FROM loss_ratio_by_tier_product
ORDER BY value_tier, product;

-- name: renewals_next_month
-- Every active policy ending in the month after the export date, with its holder.
SELECT policy_number, product, policy_end_date, annual_premium, currency, customer_id,
       display_name, last_interaction_channel
FROM renewals_next_month
ORDER BY policy_end_date, policy_number;

-- name: households_and_what_they_hold
-- Households with more than one member: who lives there and what they hold together.
SELECT household_id, n_members, members, address, n_active_policies, products_held
FROM households
WHERE n_members > 1
ORDER BY n_members DESC, household_id;

-- name: why_are_these_records_one_customer
-- The scored pairs around a customer, with the compared values side by side.
SELECT source_record_id_l, source_record_id_r, round(match_probability, 3) AS p,
       name_l, name_r, birth_date_l, birth_date_r, phone_mobile_l, phone_mobile_r
FROM match_pairs_explained
WHERE getvariable('customer_id') IN (customer_id_l, customer_id_r)
ORDER BY match_probability DESC, source_record_id_l, source_record_id_r;
