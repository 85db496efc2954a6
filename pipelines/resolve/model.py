"""What the Splink models compare and how candidate pairs are found, per party type.

Fellegi-Sunter assumes comparisons are independent given match status. Evidence that travels
together in a household (address and landline) is therefore one comparison, so a shared landline
adds nothing on top of a shared address. Every personal attribute has a "different" level whose
weight EM learns; for households, twins and father/son pairs those levels are what keeps them
apart (different given name, birth date, suffix, sex, mobile, national ID).
"""

from __future__ import annotations

from typing import Any

import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import SettingsCreator, block_on
from splink.blocking_rule_library import CustomRule

DUCKDB = "duckdb"  # dialect our hand-written SQL levels are written in; sqlglot translates it


def _sql(condition: str, label: str) -> cll.CustomLevel:
    return cll.CustomLevel(condition, label_for_charts=label, base_dialect_str=DUCKDB)


def _address_levels() -> list:
    """Address levels shared by both party types (street spellings differ between hanzi-derived
    and Latin sources, so postcode plus house number counts as the same address too)."""
    return [
        _sql("street_house_l = street_house_r AND postcode_l = postcode_r",
             "Same street, house number and postcode"),
        _sql("postcode_l = postcode_r AND house_number_l = house_number_r "
             "AND (contains(street_key_l, street_key_r) OR contains(street_key_r, street_key_l))",
             "Same postcode and house number, street written differently"),
        _sql("postcode_l = postcode_r AND house_number_l = house_number_r",
             "Same postcode and house number"),
    ]


def _area_levels() -> list:
    return [
        _sql("postcode_l = postcode_r AND jaro_winkler_similarity(street_l, street_r) >= 0.88",
             "Same postcode, similar street"),
        cll.ExactMatchLevel("postcode").configure(label_for_charts="Same postcode"),
        cll.ExactMatchLevel("city", term_frequency_adjustments=True).configure(
            label_for_charts="Same city"),
        cll.ElseLevel().configure(label_for_charts="Different address"),
    ]


def household_comparison() -> cl.CustomComparison:
    """Address, landline and e-mail of a person as ONE piece of evidence.

    Household members share all three, so counting them separately would add their weights for
    what is one fact (same household). A shared landline or e-mail only counts when the address
    differs, which is what a person who moved looks like.
    """
    null = ("(street_house_l IS NULL OR street_house_r IS NULL) "
            "AND (postcode_l IS NULL OR postcode_r IS NULL) "
            "AND (phone_landline_l IS NULL OR phone_landline_r IS NULL) "
            "AND (email_l IS NULL OR email_r IS NULL)")
    return cl.CustomComparison(
        output_column_name="household",
        comparison_description="Address, household landline and e-mail, as one piece of evidence",
        comparison_levels=[
            _sql(null, "Nothing to compare").configure(is_null_level=True),
            *_address_levels(),
            _sql("email_l = email_r", "Same e-mail, address differs"),
            _sql("phone_landline_l = phone_landline_r", "Same landline, address differs"),
            *_area_levels(),
        ],
    )


def person_comparisons() -> list[cl.CustomComparison]:
    swapped_typo = ("jaro_winkler_similarity(given_name_norm_l, family_name_norm_r) >= 0.92 "
                    "AND jaro_winkler_similarity(family_name_norm_l, given_name_norm_r) >= 0.92")
    given = cl.CustomComparison(
        output_column_name="given_name",
        comparison_description="Given name (pinyin/Latin form, nicknames resolved); also scores "
                               "names written in another order, for the whole name",
        comparison_levels=[
            cll.NullLevel("given_name_norm"),
            cll.ExactMatchLevel("given_name_norm", term_frequency_adjustments=True),
            _sql("list_has_any(given_name_variants_l, given_name_variants_r)",
                 "Nickname or formal form (Ronny = Ronald)"),
            # common names ('wang wei') are common in either order: adjust by their frequency
            _sql("name_tokens_l = name_tokens_r", "Same name parts in another order or split")
            .configure(tf_adjustment_column="name_tokens", disable_tf_exact_match_detection=True),
            cll.JaroWinklerLevel("given_name_norm", 0.92),
            _sql(swapped_typo, "Given and family name swapped, with a typo"),
            cll.JaroWinklerLevel("given_name_norm", 0.85),
            cll.ElseLevel().configure(label_for_charts="Different given name"),
        ],
    )
    # a name in another order is scored once, under given_name: these levels weigh nothing here
    counted_once: dict[str, Any] = {"m_probability": 0.5, "u_probability": 0.5,
                                    "fix_m_probability": True, "fix_u_probability": True}
    family = cl.CustomComparison(
        output_column_name="family_name",
        comparison_description="Family name (pinyin/Latin form)",
        comparison_levels=[
            cll.NullLevel("family_name_norm"),
            cll.ExactMatchLevel("family_name_norm", term_frequency_adjustments=True),
            _sql("name_tokens_l = name_tokens_r",
                 "Name in another order (scored under given name)").configure(**counted_once),
            cll.JaroWinklerLevel("family_name_norm", 0.92),
            _sql(swapped_typo, "Swapped with a typo (scored under given name)")
            .configure(**counted_once),
            cll.ElseLevel().configure(label_for_charts="Different family name"),
        ],
    )
    suffix = cl.CustomComparison(
        output_column_name="name_suffix",
        comparison_description="Name suffix (JR, SR, II, III)",
        comparison_levels=[
            _sql("name_suffix_l IS NULL AND name_suffix_r IS NULL", "No suffix on either side")
            .configure(is_null_level=True),
            cll.ExactMatchLevel("name_suffix").configure(label_for_charts="Same suffix"),
            _sql("name_suffix_l IS NULL OR name_suffix_r IS NULL", "Suffix on one side only"),
            cll.ElseLevel().configure(label_for_charts="Different suffix (JR vs SR)"),
        ],
    )
    sex = cl.CustomComparison(
        output_column_name="sex",
        comparison_levels=[
            cll.NullLevel("sex"),
            cll.ExactMatchLevel("sex"),
            cll.ElseLevel().configure(label_for_charts="Different sex"),
        ],
    )
    birth_date = cl.CustomComparison(
        output_column_name="birth_date",
        comparison_description="Date of birth, with day/month swaps and one-character typos",
        comparison_levels=[
            cll.NullLevel("birth_date"),
            cll.ExactMatchLevel("birth_date"),
            _sql("year(birth_date_l) = year(birth_date_r) "
                 "AND month(birth_date_l) = day(birth_date_r) "
                 "AND day(birth_date_l) = month(birth_date_r)", "Day and month swapped"),
            cll.DamerauLevenshteinLevel("birth_date_text", 1).configure(
                label_for_charts="One-character typo"),
            cll.ElseLevel().configure(label_for_charts="Different birth date"),
        ],
    )
    national_id = cl.CustomComparison(
        output_column_name="national_id",
        comparison_levels=[
            cll.NullLevel("national_id"),
            cll.ExactMatchLevel("national_id"),
            cll.ElseLevel().configure(label_for_charts="Different national ID"),
        ],
    )
    mobile = cl.CustomComparison(
        output_column_name="phone_mobile",
        comparison_description="Personal mobile number (E.164)",
        comparison_levels=[
            cll.NullLevel("phone_mobile"),
            cll.ExactMatchLevel("phone_mobile"),
            cll.DamerauLevenshteinLevel("phone_mobile", 1).configure(
                label_for_charts="One-digit typo"),
            cll.ElseLevel().configure(label_for_charts="Different personal mobile"),
        ],
    )
    return [given, family, suffix, sex, birth_date, national_id, mobile, household_comparison()]


def organization_comparisons() -> list[cl.CustomComparison]:
    name = cl.CustomComparison(
        output_column_name="org_name",
        comparison_description="Organization name without legal form",
        comparison_levels=[
            cll.NullLevel("org_name_norm"),
            cll.ExactMatchLevel("org_name_norm", term_frequency_adjustments=True),
            cll.JaroWinklerLevel("org_name_norm", 0.95),
            cll.JaroWinklerLevel("org_name_norm", 0.88),
            cll.ElseLevel().configure(label_for_charts="Different name"),
        ],
    )
    legal_form = cl.CustomComparison(
        output_column_name="org_legal_form",
        comparison_levels=[
            cll.NullLevel("org_legal_form"),
            cll.ExactMatchLevel("org_legal_form"),
            cll.ElseLevel().configure(label_for_charts="Different legal form"),
        ],
    )
    registration = cl.CustomComparison(
        output_column_name="registration_id",
        comparison_levels=[
            cll.NullLevel("registration_id"),
            cll.ExactMatchLevel("registration_id"),
            cll.ElseLevel().configure(label_for_charts="Different registration number"),
        ],
    )
    phone = cl.CustomComparison(
        output_column_name="phone",
        comparison_levels=[
            cll.NullLevel("phone_any"),
            cll.ExactMatchLevel("phone_any"),
            _sql("phone_mobile_l = phone_mobile_r OR phone_landline_l = phone_landline_r "
                 "OR phone_mobile_l = phone_landline_r OR phone_landline_l = phone_mobile_r",
                 "Share one number"),
            cll.ElseLevel().configure(label_for_charts="Different phone"),
        ],
    )
    email = cl.CustomComparison(
        output_column_name="email",
        comparison_levels=[
            cll.NullLevel("email"),
            cll.ExactMatchLevel("email", term_frequency_adjustments=True),
            cll.ExactMatchLevel("email_domain", term_frequency_adjustments=True).configure(
                label_for_charts="Same e-mail domain"),
            cll.ElseLevel().configure(label_for_charts="Different e-mail"),
        ],
    )
    address = cl.CustomComparison(
        output_column_name="address",
        comparison_description="Address parts",
        comparison_levels=[
            _sql("(street_house_l IS NULL OR street_house_r IS NULL) "
                 "AND (postcode_l IS NULL OR postcode_r IS NULL)", "Address missing")
            .configure(is_null_level=True),
            *_address_levels(),
            *_area_levels(),
        ],
    )
    return [name, legal_form, registration, phone, email, address]


def blocking_rules(party_type: str) -> list:
    """Candidate-pair rules: equi-joins on selective keys, so comparisons grow about linearly."""
    if party_type == "person":
        return [
            block_on("national_id"),
            block_on("phone_mobile"),
            block_on("email"),
            block_on("family_name_norm", "birth_date"),
            block_on("given_name_norm", "birth_date"),
            block_on("given_name_canonical", "family_name_norm", "postcode"),
            block_on("birth_date", "postcode"),
            # names written in the other order; common names ('wang wei' / 'wei wang') make
            # this quadratic on its own, so it also needs the birth date or the postcode
            CustomRule("l.given_name_norm = r.family_name_norm "
                       "AND l.family_name_norm = r.given_name_norm "
                       "AND l.birth_date = r.birth_date", sql_dialect=DUCKDB),
            CustomRule("l.given_name_norm = r.family_name_norm "
                       "AND l.family_name_norm = r.given_name_norm "
                       "AND l.postcode = r.postcode", sql_dialect=DUCKDB),
        ]
    return [
        block_on("registration_id"),
        # different companies share names ("Nordwind Logistik"): the name alone is quadratic
        block_on("org_name_norm", "city"),
        block_on("phone_any"),
        block_on("email"),
        block_on("postcode", "substr(org_name_norm, 1, 4)"),
    ]


def deterministic_rules(party_type: str) -> list:
    """Rules that admit almost no false matches; they estimate the prior match probability."""
    if party_type == "person":
        return [
            block_on("national_id"),
            block_on("given_name_norm", "family_name_norm", "birth_date", "phone_mobile"),
            block_on("given_name_norm", "family_name_norm", "birth_date", "email"),
        ]
    return [block_on("registration_id"), block_on("org_name_norm", "postcode")]


def em_training_rules(party_type: str) -> list:
    """EM sessions; each estimates m for every comparison not used in its blocking rule."""
    if party_type == "person":
        return [block_on("family_name_norm", "birth_date"), block_on("phone_mobile"),
                block_on("national_id")]
    # not on the name: different companies share names ("Nordwind Logistik"), which would
    # teach EM that a shared name is a match
    return [block_on("registration_id"), block_on("phone_any"), block_on("email")]


def settings_for(party_type: str) -> SettingsCreator:
    """Untrained Splink settings of one party type (dedupe across all sources at once)."""
    comparisons: list = (person_comparisons() if party_type == "person"
                         else organization_comparisons())
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        comparisons=comparisons,
        blocking_rules_to_generate_predictions=blocking_rules(party_type),
        retain_matching_columns=True,
        retain_intermediate_calculation_columns=True,
        max_iterations=50,
        em_convergence=0.0001,
        # fixed so the saved JSON depends only on data and seed
        linker_uid=f"ucv_{party_type}",
    )


def comparison_names(settings: dict[str, Any]) -> list[str]:
    return [c["output_column_name"] for c in settings["comparisons"]]


def tf_columns(party_type: str) -> list[str]:
    """Columns with term-frequency adjustments (their tf tables must exist for real-time scoring)."""
    if party_type == "person":
        return ["given_name_norm", "family_name_norm", "name_tokens", "city"]
    return ["org_name_norm", "email", "email_domain", "city"]


def level_gammas(model: dict[str, Any], comparison: str, labels: list[str]) -> list[int]:
    """Splink's gamma values of the named levels (null level -1, then n-1 down to 0)."""
    for c in model["comparisons"]:
        if c["output_column_name"] != comparison:
            continue
        levels = [lv for lv in c["comparison_levels"] if not lv.get("is_null_level")]
        gammas = {lv["label_for_charts"]: len(levels) - 1 - i for i, lv in enumerate(levels)}
        missing = set(labels) - set(gammas)
        if missing:
            raise KeyError(f"comparison {comparison!r} has no level(s) {sorted(missing)}")
        return [gammas[label] for label in labels]
    raise KeyError(f"model has no comparison {comparison!r}")


def guard_sql(model: dict[str, Any], guard: dict[str, Any]) -> str:
    """SQL over gamma_* columns that is true when the guard blocks the link.

    `when` maps comparisons to levels that must all be present. `unless` settles the conflict:
    either a mapping (any one listed comparison at a listed level settles it) or a list of such
    mappings in which every comparison of one mapping must be at a listed level.
    """
    def at_levels(comparison: str, labels: list[str]) -> str:
        gammas = ", ".join(map(str, level_gammas(model, comparison, labels)))
        return f"gamma_{comparison} IN ({gammas})"

    when = " AND ".join(at_levels(c, labels) for c, labels in guard["when"].items())
    unless = guard.get("unless") or {}
    if isinstance(unless, dict):
        settled = [at_levels(c, labels) for c, labels in unless.items()]
    else:
        settled = ["(" + " AND ".join(at_levels(c, labels) for c, labels in option.items()) + ")"
                   for option in unless]
    return f"({when})" + (f" AND NOT ({' OR '.join(settled)})" if settled else "")
