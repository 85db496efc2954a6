"""Rich tables for `ucv lookup`: ranked candidates, and one customer's 360° view."""

from __future__ import annotations

from rich.table import Table

CANDIDATE_COLUMNS = ["customer_id", "name", "birth_date", "phone_mobile", "email", "city_display",
                     "confidence", "match_score", "match_reason"]
PROFILE_SECTIONS = {
    "identity": ["customer_id", "party_type", "display_name", "salutation", "given_name_display",
                 "family_name_display", "name_native", "org_name_display", "org_legal_form", "sex", "birth_date", "national_id",
                 "registration_id", "confidence", "source_systems", "n_source_records"],
    "contact": ["phone_mobile", "phone_landline", "email", "street_display",
                "house_number_display", "postcode", "city_display", "country", "language",
                "preferred_channel", "marketing_consent", "consent_email", "consent_sms",
                "consent_phone", "consent_post", "household_id", "household_size"],
    "business": ["active_policies", "lapsed_policies", "products_held", "covered_on_policies",
                 "total_annual_premium_eur", "value_tier", "rating", "claims_count",
                 "claims_paid_amount_eur", "loss_ratio_12m", "last_claim_date",
                 "last_interaction_date", "last_interaction_channel", "customer_since",
                 "tenure_years", "renewals_due"],
}


def show(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(show(v) for v in value)
    if isinstance(value, dict):
        return " ".join(show(v) for v in value.values() if v is not None)
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def candidates_table(rows: list[dict]) -> Table:
    table = Table(title=f"{len(rows)} candidates, best first")
    for column in CANDIDATE_COLUMNS:
        table.add_column(column)
    for row in rows:
        row = {**row, "name": display_name(row)}
        table.add_row(*(show(row.get(c)) for c in CANDIDATE_COLUMNS))
    return table


def display_name(row: dict) -> str:
    """The golden display name; for rows without one, the name parts as stored."""
    return row.get("display_name") or row.get("org_name") or " ".join(
        filter(None, [row.get("given_name"), row.get("family_name")]))


def profile_table(row: dict) -> Table:
    table = Table(title=f"{row['customer_id']}  {display_name(row)}", show_header=False)
    table.add_column("section", style="bold")
    table.add_column("field", style="cyan")
    table.add_column("value")
    for section, columns in PROFILE_SECTIONS.items():
        for i, column in enumerate(columns):
            if column in row:
                table.add_row(section if i == 0 else "", column, show(row[column]))
    if row.get("match_reason"):
        table.add_row("found by", "match_reason", show(row["match_reason"]))
    return table
