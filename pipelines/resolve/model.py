"""What the Splink models compare and how candidate pairs are found, derived from the data.

`ucv train` profiles the staged records (profile.py) and builds each model from a catalogue of
candidate comparisons per canonical field: a comparison (and each of its levels) is included only
when the fields it reads are populated (`training.min_fill_rate` / `min_filled_records` in
resolution.yaml); no field is assumed to exist. Blocking rules, EM passes and deterministic rules
are chosen from catalogues of candidates in the same way (training.py measures their cost).

Fellegi-Sunter assumes comparisons are independent given match status. Evidence that travels
together in a household (address and landline) is therefore one comparison, so a shared landline
adds nothing on top of a shared address. Every personal attribute has a "different" level whose
weight EM learns; for households, twins and father/son pairs those levels are what keeps them
apart (different given name, birth date, suffix, sex, mobile, national ID).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import SettingsCreator

DUCKDB = "duckdb"  # dialect our hand-written SQL levels are written in; sqlglot translates it

Has = Callable[[str], bool]  # is this field populated enough in the training data?


def _sql(condition: str, label: str) -> cll.CustomLevel:
    return cll.CustomLevel(condition, label_for_charts=label, base_dialect_str=DUCKDB)


def _both_null(columns: list[str]) -> str:
    return " AND ".join(f"({c}_l IS NULL OR {c}_r IS NULL)" for c in columns)


def _address_levels(has: Has) -> list:
    """Address levels shared by both party types (street spellings differ between hanzi-derived
    and Latin sources, so postcode plus house number counts as the same address too)."""
    levels: list[Any] = []
    if has("postcode") and has("street"):
        levels.append(_sql("street_house_l = street_house_r AND postcode_l = postcode_r",
                           "Same street, house number and postcode"))
    if has("postcode") and has("house_number") and has("street"):
        levels.append(_sql(
            "postcode_l = postcode_r AND house_number_l = house_number_r "
            "AND (contains(street_key_l, street_key_r) OR contains(street_key_r, street_key_l))",
            "Same postcode and house number, street written differently"))
    if has("postcode") and has("house_number"):
        levels.append(_sql("postcode_l = postcode_r AND house_number_l = house_number_r",
                           "Same postcode and house number"))
    if not has("postcode") and has("street") and has("city"):
        levels.append(_sql("street_house_l = street_house_r AND city_l = city_r",
                           "Same street, house number and city"))
    return levels


def _area_levels(has: Has, with_email: bool = False, city_only: bool = True) -> list:
    levels: list[Any] = []
    if has("postcode") and has("street"):
        levels.append(_sql("postcode_l = postcode_r "
                           "AND jaro_winkler_similarity(street_l, street_r) >= 0.88",
                           "Same postcode, similar street"))
    if has("postcode"):
        levels.append(cll.ExactMatchLevel("postcode").configure(label_for_charts="Same postcode"))
    if city_only and has("city") and (has("postcode") or has("street")):
        # A record that has only a city (a web lead) cannot show the same street: for it the
        # same city is the whole address. Scored apart from "same city, different street",
        # which EM rightly learns as evidence against (people at one address are one household).
        # A different e-mail on both sides is kept apart: with nothing but a name and a city
        # it is what tells a father from his son of the same name.
        partial = " AND ".join(f"({c}_l IS NULL OR {c}_r IS NULL)"
                               for c in ("postcode", "street_house")
                               if has(c if c != "street_house" else "street"))
        variants = [("", "Same city, no street to compare")]
        if with_email:
            variants = [(" AND email_l <> email_r",
                         "Same city, no street to compare, different e-mail"),
                        ("", "Same city, no street to compare")]
        for extra, label in variants:
            levels.append(cll.CustomLevel(f"city_l = city_r AND {partial}{extra}",
                                          label_for_charts=label,
                                          base_dialect_str=DUCKDB).configure(
                tf_adjustment_column="city"))
    if has("city"):
        levels.append(cll.ExactMatchLevel("city", term_frequency_adjustments=True).configure(
            label_for_charts="Same city"))
    return levels


def _address_columns(has: Has) -> list[str]:
    """The address columns whose absence on either side means 'nothing to compare'."""
    return [c for c in ("street_house", "postcode", "city")
            if has(c if c != "street_house" else "street")]


# Contact details age together: a record from before a move often carries the old mobile too, so
# among true matches "address differs" and "mobile differs" are far from independent (measured on
# the generator: a third of movers changed their mobile, against 2.5 % of all true pairs), and
# Fellegi-Sunter would count the one fact "this record is older" twice. The household levels that
# mean "address differs" (same e-mail, different address) therefore come in a variant for pairs whose personal mobiles differ as
# well; EM learns its m and u jointly, and after EM (training.condition_on_mobile) they are
# divided by the mobile comparison's "Different personal mobile" m and u, so that household plus
# mobile together score the joint Bayes factor of what the pair shows, learnt from the data.
MOBILE_DIFFERS = ("phone_mobile_l <> phone_mobile_r "
                  "AND damerau_levenshtein(phone_mobile_l, phone_mobile_r) > 1")
MOBILE_DIFFERS_TOO = ", mobile differs too"
MOBILE_DIFFERENT_LEVEL = "Different personal mobile"


def household_comparison(has: Has) -> cl.CustomComparison | None:
    """Address, landline and e-mail of a person as ONE piece of evidence.

    Household members share all three, so counting them separately would add their weights for
    what is one fact (same household). A shared landline or e-mail only counts when the address
    differs, which is what a person who moved looks like.
    """
    columns = _address_columns(has) + [c for c in ("phone_landline", "email") if has(c)]
    if not columns:
        return None
    stale = has("phone_mobile")  # see MOBILE_DIFFERS_TOO

    def with_stale(condition: str, label: str) -> list[Any]:
        """The level, preceded by its 'mobile differs too' variant when mobiles are compared."""
        variants = ([(f"({condition}) AND {MOBILE_DIFFERS}", label + MOBILE_DIFFERS_TOO)]
                    if stale else [])
        return [_sql(sql, name) for sql, name in [*variants, (condition, label)]]

    levels: list[Any] = [*_address_levels(has)]
    if has("email"):
        levels += with_stale("email_l = email_r", "Same e-mail, address differs")
    if has("phone_landline"):
        levels.append(_sql("phone_landline_l = phone_landline_r",
                           "Same landline, address differs"))
    # Not "Same city": its term-frequency adjustment is scaled by the u of the exact city level
    # (Splink), which a variant taking most same-city pairs would shrink eightfold, and every
    # city level (a web lead's "same city, no street") would lose 3 bits (measured).
    levels += _area_levels(has, with_email=has("email"))
    else_levels = with_stale("TRUE", "Different address")
    return cl.CustomComparison(
        output_column_name="household",
        comparison_description="Address, household landline and e-mail, as one piece of evidence",
        comparison_levels=[
            _sql(_both_null(columns), "Nothing to compare").configure(is_null_level=True),
            *levels,
            *else_levels[:-1],
            cll.ElseLevel().configure(label_for_charts="Different address"),
        ],
    )


def identifier_comparison(column: str, what: str, type_column: str | None = None
                          ) -> cl.CustomComparison:
    """An identifier (checksum-validated or declared pattern) as its own exact-match evidence.

    With a type column (national_id_type), two IDs of different kinds do not contradict each
    other (a person may hold IDs of two countries): only IDs of one kind can be "different".
    """
    levels: list[Any] = [cll.NullLevel(column), cll.ExactMatchLevel(column)]
    if type_column:
        levels.append(_sql(f"{type_column}_l <> {type_column}_r", f"{what}s of different kinds"))
    levels.append(cll.ElseLevel().configure(label_for_charts=f"Different {what}"))
    return cl.CustomComparison(output_column_name=column,
                               comparison_description=f"{what} (exact match)",
                               comparison_levels=levels)


# a name in another order is scored once, under given_name: these levels weigh nothing elsewhere
COUNTED_ONCE: dict[str, Any] = {"m_probability": 0.5, "u_probability": 0.5,
                                "fix_m_probability": True, "fix_u_probability": True}
SWAPPED_TYPO = ("jaro_winkler_similarity(given_name_norm_l, family_name_norm_r) >= 0.92 "
                "AND jaro_winkler_similarity(family_name_norm_l, given_name_norm_r) >= 0.92")


SAME_HANZI = "name_native_l = name_native_r"
# a Cantonese romanisation ("Fong", standardize/names.pinyin_forms_of_cantonese) that can stand
# for the other side's pinyin or hanzi given name (芳 = "fang")
CANTONESE_SOUND = ("list_contains(given_name_pinyin_forms_l, replace(given_name_norm_r, ' ', '')) "
                   "OR list_contains(given_name_pinyin_forms_r, replace(given_name_norm_l, ' ', ''))")
# the whole name in one field on one side ("Lau Yim" as family name): its parts still compare
GIVEN_MISSING = ("(given_name_norm_l IS NULL OR given_name_norm_r IS NULL) "
                 "AND NOT coalesce(name_tokens_l = name_tokens_r, false)")
# one side an English/Christian given name, the other a Chinese one: not comparable by spelling
OTHER_ORIGIN = ("given_name_origin_l <> given_name_origin_r "
                "AND 'western' IN (given_name_origin_l, given_name_origin_r)")


def given_name_comparison(has: Has) -> cl.CustomComparison:
    both = has("family_name_norm")
    levels: list[Any] = [
        _sql(GIVEN_MISSING, "given_name_norm is NULL").configure(is_null_level=True) if both
        else cll.NullLevel("given_name_norm"),
        cll.ExactMatchLevel("given_name_norm", term_frequency_adjustments=True),
    ]
    if has("name_native"):
        # Cantonese and Mandarin romanisations of one hanzi name ('Wong' / 'Wang')
        levels.append(_sql(SAME_HANZI, "Same name in Chinese characters, romanised differently"))
    levels.append(_sql("list_has_any(given_name_variants_l, given_name_variants_r)",
                       "Nickname or formal form (Ronny = Ronald)"))
    if both:
        # common names ('wang wei') are common in either order: adjust by their frequency
        levels.append(_sql("name_tokens_l = name_tokens_r",
                           "Same name parts in another order or split")
                      .configure(tf_adjustment_column="name_tokens",
                                 disable_tf_exact_match_detection=True))
    levels.append(cll.JaroWinklerLevel("given_name_norm", 0.92))
    if both:
        levels.append(_sql(SWAPPED_TYPO, "Given and family name swapped, with a typo"))
    if has("name_native"):
        levels.append(_sql(CANTONESE_SOUND, "Cantonese romanisation of the other's name "
                                            "(Fong / Fang, 芳)"))
    levels.append(cll.JaroWinklerLevel("given_name_norm", 0.85))
    if has("given_name_origin"):
        levels.append(_sql(OTHER_ORIGIN, "English and Chinese given names (Cindy / Minhong)"))
    levels.append(cll.ElseLevel().configure(label_for_charts="Different given name"))
    return cl.CustomComparison(
        output_column_name="given_name",
        comparison_description="Given name (pinyin/Latin form, nicknames resolved); also scores "
                               "names written in another order, for the whole name",
        comparison_levels=levels)


def family_name_comparison(has: Has) -> cl.CustomComparison:
    both = has("given_name_norm")
    levels: list[Any] = [cll.NullLevel("family_name_norm"),
              cll.ExactMatchLevel("family_name_norm", term_frequency_adjustments=True)]
    if has("name_native"):
        levels.append(_sql(SAME_HANZI, "Same name in Chinese characters (scored under given name)")
                      .configure(**COUNTED_ONCE))
    if has("birth_family_name_norm"):
        # a married name: evidence scored under birth_family_name, not a conflict here
        levels.append(_sql("birth_family_name_norm_l = family_name_norm_r "
                           "OR family_name_norm_l = birth_family_name_norm_r",
                           "The other's birth family name (scored under birth family name)")
                      .configure(**COUNTED_ONCE))
    if both:
        levels.append(_sql("name_tokens_l = name_tokens_r",
                           "Name in another order (scored under given name)")
                      .configure(**COUNTED_ONCE))
    levels.append(cll.JaroWinklerLevel("family_name_norm", 0.92))
    if both:
        levels.append(_sql(SWAPPED_TYPO, "Swapped with a typo (scored under given name)")
                      .configure(**COUNTED_ONCE))
    levels.append(cll.ElseLevel().configure(label_for_charts="Different family name"))
    return cl.CustomComparison(output_column_name="family_name",
                               comparison_description="Family name (pinyin/Latin form)",
                               comparison_levels=levels)


def birth_family_name_comparison(has: Has) -> cl.CustomComparison:
    """Birth (maiden) family name: equal, or one side's birth name is the other's family name."""
    crossed = ("birth_family_name_norm_l = family_name_norm_r "
               "OR family_name_norm_l = birth_family_name_norm_r")
    return cl.CustomComparison(
        output_column_name="birth_family_name",
        comparison_description="Birth family name, also against the other side's family name",
        comparison_levels=[
            _sql(f"(birth_family_name_norm_l IS NULL OR birth_family_name_norm_r IS NULL) "
                 f"AND NOT coalesce({crossed}, false)", "No birth name to compare")
            .configure(is_null_level=True),
            cll.ExactMatchLevel("birth_family_name_norm").configure(
                label_for_charts="Same birth family name"),
            _sql(crossed, "Birth family name is the other's family name"),
            cll.ElseLevel().configure(label_for_charts="Different birth family name"),
        ])


def suffix_comparison(has: Has) -> cl.CustomComparison:
    return cl.CustomComparison(
        output_column_name="name_suffix",
        comparison_description="Name suffix (JR, SR, II, III)",
        comparison_levels=[
            _sql("name_suffix_l IS NULL AND name_suffix_r IS NULL", "No suffix on either side")
            .configure(is_null_level=True),
            cll.ExactMatchLevel("name_suffix").configure(label_for_charts="Same suffix"),
            _sql("name_suffix_l IS NULL OR name_suffix_r IS NULL", "Suffix on one side only"),
            cll.ElseLevel().configure(label_for_charts="Different suffix (JR vs SR)"),
        ])


def sex_comparison(has: Has) -> cl.CustomComparison:
    return cl.CustomComparison(output_column_name="sex", comparison_levels=[
        cll.NullLevel("sex"), cll.ExactMatchLevel("sex"),
        cll.ElseLevel().configure(label_for_charts="Different sex")])


def birth_date_comparison(has: Has) -> cl.CustomComparison:
    return cl.CustomComparison(
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
        ])


def mobile_comparison(has: Has) -> cl.CustomComparison:
    return cl.CustomComparison(
        output_column_name="phone_mobile",
        comparison_description="Personal mobile number (E.164)",
        comparison_levels=[
            cll.NullLevel("phone_mobile"),
            cll.ExactMatchLevel("phone_mobile"),
            cll.DamerauLevenshteinLevel("phone_mobile", 1).configure(
                label_for_charts="One-digit typo"),
            cll.ElseLevel().configure(label_for_charts=MOBILE_DIFFERENT_LEVEL),
        ])


QUALIFIERS_DIFFER = ("list_sort(coalesce(org_name_qualifiers_l, []::VARCHAR[])) <> "
                     "list_sort(coalesce(org_name_qualifiers_r, []::VARCHAR[]))")
SAME_TOKENS = ("len(org_name_tokens_l) > 0 "
               "AND list_sort(org_name_tokens_l) = list_sort(org_name_tokens_r)")
# the qualifier's own word is one of the tokens: the other name's words are all in this one's
# ... or one name, spaces removed, inside the other: "wuhanenti information technology property
# management" (hanzi, the city run into the name) holds "wuhan enti information technology"
SIMILAR_NAME = ("len(org_name_tokens_l) > 0 AND len(org_name_tokens_r) > 0 "
                "AND (list_has_all(org_name_tokens_l, org_name_tokens_r) "
                "OR list_has_all(org_name_tokens_r, org_name_tokens_l) "
                "OR contains(replace(org_name_norm_l, ' ', ''), replace(org_name_norm_r, ' ', '')) "
                "OR contains(replace(org_name_norm_r, ' ', ''), replace(org_name_norm_l, ' ', '')) "
                "OR jaro_winkler_similarity(org_name_norm_l, org_name_norm_r) >= 0.88)")
# ... or the same name once the structural words are taken out, a typo allowed: 武汉泰天医药投资
# and "Wuhan Taitian Pharmaceutical Property Management", "Krranz Bau" and "Kranz Bau Beteiligungs"
SIMILAR_CORE = "jaro_winkler_similarity(org_name_core_l, org_name_core_r) >= 0.92"
RELATED_COMPANY = "Same distinctive name, a qualifier on one side only (related company)"


def org_name_comparison(has: Has) -> cl.CustomComparison:
    """Organization name. With distinctive tokens and qualifiers from standardization, a
    'Holding' or 'Beteiligungs' company beside its operating company is a related company."""
    levels: list[Any] = [cll.NullLevel("org_name_norm")]
    if has("org_name_qualifiers") and has("org_name_tokens"):
        # before any similarity level: 'hoevel druckerei' vs 'hoevel druckerei beteiligungs'
        similar = f"({SIMILAR_NAME} OR {SIMILAR_CORE})" if has("org_name_core") else SIMILAR_NAME
        levels.append(_sql(f"({similar}) AND ({QUALIFIERS_DIFFER})", RELATED_COMPANY))
    levels.append(cll.ExactMatchLevel("org_name_norm", term_frequency_adjustments=True))
    # "xianhaojia electronics" (from hanzi) and "xian haojia electronics" (its English name)
    levels.append(_sql("replace(org_name_norm_l, ' ', '') = replace(org_name_norm_r, ' ', '')",
                       "Same name, words run together or apart"))
    if has("org_name_tokens"):
        levels.append(_sql(SAME_TOKENS, "Same distinctive name tokens"))
    levels += [cll.JaroWinklerLevel("org_name_norm", 0.95),
               cll.JaroWinklerLevel("org_name_norm", 0.88),
               cll.ElseLevel().configure(label_for_charts="Different name")]
    return cl.CustomComparison(output_column_name="org_name",
                               comparison_description="Organization name without legal form",
                               comparison_levels=levels)


def legal_form_comparison(has: Has) -> cl.CustomComparison:
    return cl.CustomComparison(output_column_name="org_legal_form", comparison_levels=[
        cll.NullLevel("org_legal_form"), cll.ExactMatchLevel("org_legal_form"),
        cll.ElseLevel().configure(label_for_charts="Different legal form")])


def org_phone_comparison(has: Has) -> cl.CustomComparison:
    levels: list[Any] = [cll.NullLevel("phone_any"), cll.ExactMatchLevel("phone_any")]
    if has("phone_mobile") and has("phone_landline"):
        levels.append(_sql(
            "phone_mobile_l = phone_mobile_r OR phone_landline_l = phone_landline_r "
            "OR phone_mobile_l = phone_landline_r OR phone_landline_l = phone_mobile_r",
            "Share one number"))
    levels.append(cll.ElseLevel().configure(label_for_charts="Different phone"))
    return cl.CustomComparison(output_column_name="phone", comparison_levels=levels)


def org_email_comparison(has: Has) -> cl.CustomComparison:
    return cl.CustomComparison(output_column_name="email", comparison_levels=[
        cll.NullLevel("email"),
        cll.ExactMatchLevel("email", term_frequency_adjustments=True),
        cll.ExactMatchLevel("email_domain", term_frequency_adjustments=True).configure(
            label_for_charts="Same e-mail domain"),
        cll.ElseLevel().configure(label_for_charts="Different e-mail")])


def org_address_comparison(has: Has) -> cl.CustomComparison | None:
    columns = _address_columns(has)
    if not columns:
        return None
    return cl.CustomComparison(
        output_column_name="address",
        comparison_description="Address parts",
        comparison_levels=[
            _sql(_both_null(columns), "Address missing").configure(is_null_level=True),
            *_address_levels(has),
            # not for companies: namesake companies in one city (branches, successors, the
            # shelf companies of one founder) are common, and a city adds nothing to a name
            *_area_levels(has, city_only=False),
            cll.ElseLevel().configure(label_for_charts="Different address"),
        ])


@dataclass(frozen=True)
class CandidateComparison:
    """One entry of the catalogue: a comparison and the fields it needs (all, or any one of)."""

    name: str
    build: Callable[[Has], cl.CustomComparison | None]
    needs: tuple[str, ...] = ()
    needs_any: tuple[str, ...] = ()
    identifier: bool = False

    def missing(self, has: Has) -> list[str]:
        """The needed fields that are not populated (empty when the comparison can be built)."""
        missing = [f for f in self.needs if not has(f)]
        if self.needs_any and not any(has(f) for f in self.needs_any):
            missing.append(" or ".join(self.needs_any))
        return missing


CATALOGUE: dict[str, list[CandidateComparison]] = {
    "person": [
        CandidateComparison("given_name", given_name_comparison, ("given_name_norm",)),
        CandidateComparison("family_name", family_name_comparison, ("family_name_norm",)),
        CandidateComparison("birth_family_name", birth_family_name_comparison,
                            ("birth_family_name_norm", "family_name_norm")),
        CandidateComparison("name_suffix", suffix_comparison, ("name_suffix",)),
        CandidateComparison("sex", sex_comparison, ("sex",)),
        CandidateComparison("birth_date", birth_date_comparison, ("birth_date",)),
        CandidateComparison(
            "national_id", lambda has: identifier_comparison(
                "national_id", "national ID",
                "national_id_type" if has("national_id_type") else None),
            ("national_id",), identifier=True),
        CandidateComparison("passport_number", lambda has: identifier_comparison(
            "passport_number", "passport number"), ("passport_number",), identifier=True),
        CandidateComparison("customer_number", lambda has: identifier_comparison(
            "customer_number", "customer number"), ("customer_number",), identifier=True),
        CandidateComparison("phone_mobile", mobile_comparison, ("phone_mobile",)),
        CandidateComparison("household", household_comparison, needs_any=(
            "street", "postcode", "city", "phone_landline", "email")),
    ],
    "organization": [
        CandidateComparison("org_name", org_name_comparison, ("org_name_norm",)),
        CandidateComparison("org_legal_form", legal_form_comparison, ("org_legal_form",)),
        CandidateComparison("registration_id", lambda has: identifier_comparison(
            "registration_id", "registration number"), ("registration_id",), identifier=True),
        CandidateComparison("tax_id", lambda has: identifier_comparison(
            "tax_id", "tax number"), ("tax_id",), identifier=True),
        CandidateComparison("phone", org_phone_comparison, ("phone_any",)),
        CandidateComparison("email", org_email_comparison, ("email",)),
        CandidateComparison("address", org_address_comparison,
                            needs_any=("street", "postcode", "city")),
    ],
}

# Evidence without which a party type cannot be resolved at all: a name.
NAME_FIELDS = {"person": ("given_name_norm", "family_name_norm"),
               "organization": ("org_name_norm",)}


@dataclass(frozen=True)
class CandidateRule:
    """A blocking / training / deterministic rule and the fields it joins on.

    `left` and `right` pair up: l.left[i] = r.right[i]. They are equal for ordinary rules and
    crossed for names written in the other order.
    """

    left: tuple[str, ...]
    right: tuple[str, ...] = ()
    # a fallback: used only when none of these fields is populated
    only_without: tuple[str, ...] = ()

    @property
    def right_columns(self) -> tuple[str, ...]:
        return self.right or self.left

    @property
    def fields(self) -> set[str]:
        return set(self.left) | set(self.right_columns)

    @property
    def sql(self) -> str:
        if not self.right:
            from splink import block_on

            return block_on(*self.left).get_blocking_rule(DUCKDB).blocking_rule_sql
        return " AND ".join(f"l.{a} = r.{b}" for a, b in zip(self.left, self.right, strict=True))


def _rule(*columns: str) -> CandidateRule:
    return CandidateRule(tuple(columns))


SWAPPED = ("given_name_norm", "family_name_norm")

# Prediction blocking candidates, most selective evidence first; training.py keeps those whose
# fields are populated and whose comparison count stays near linear.
BLOCKING_CANDIDATES: dict[str, list[CandidateRule]] = {
    "person": [
        _rule("national_id"), _rule("passport_number"), _rule("customer_number"),
        _rule("phone_mobile"), _rule("email"),
        _rule("family_name_norm", "birth_date"), _rule("given_name_norm", "birth_date"),
        # movers and renamed people: stable evidence without the address or the family name
        _rule("given_name_canonical", "birth_date"),
        _rule("birth_family_name_norm", "birth_date"),
        CandidateRule(("birth_family_name_norm", "given_name_canonical"),
                      ("family_name_norm", "given_name_canonical")),
        CandidateRule(("family_name_norm", "given_name_canonical"),
                      ("birth_family_name_norm", "given_name_canonical")),
        _rule("name_native", "birth_date"),
        _rule("given_name_canonical", "family_name_norm", "postcode"),
        _rule("birth_date", "postcode"),
        # names written in the other order; common names ('wang wei' / 'wei wang') make
        # this quadratic on its own, so it also needs the birth date or the postcode
        CandidateRule((*SWAPPED, "birth_date"), (*reversed(SWAPPED), "birth_date")),
        CandidateRule((*SWAPPED, "postcode"), (*reversed(SWAPPED), "postcode")),
        # on the city, keys capped at a block size (features.CAPPED_KEYS): a common name in a
        # big city would make this quadratic
        CandidateRule(("name_city_key_gf",), ("name_city_key_fg",)),
        # records without a postcode or birth date (web leads: a name, a city, maybe an e-mail)
        _rule("name_city_key"),
        # a typo in either name ("Grenwood", "Zhnag") on a record without a birth date: both
        # names by their sound (features.phonetic_keys) with the postcode or the city
        _rule("name_sound", "postcode"), _rule("name_sound_city_key"),
    ],
    "organization": [
        _rule("registration_id"), _rule("tax_id"),
        # different companies share names ("Nordwind Logistik"): the name alone is quadratic
        _rule("org_name_norm", "city"),
        _rule("phone_any"), _rule("email"),
        # the same company under a spelling that changes the folded name
        CandidateRule(("array_to_string(list_sort(org_name_tokens), ' ')", "postcode")),
        CandidateRule(("postcode", "substr(org_name_norm, 1, 4)")),
        # hanzi names fold to run-together pinyin; their English twins have spaces
        CandidateRule(("replace(org_name_norm, ' ', '')", "city")),
        # a typo in a word of the name ("Boohnbach Consulting"): each word by its sound
        _rule("org_sound_city_key"),
    ],
}

# EM passes, preferred first. training.py picks passes until every comparison has its m
# estimated in at least `em.estimates_per_comparison` passes that do not block on its fields.
EM_CANDIDATES: dict[str, list[CandidateRule]] = {
    "person": [
        _rule("family_name_norm", "birth_date"), _rule("phone_mobile"), _rule("national_id"),
        _rule("email"), _rule("customer_number"), _rule("passport_number"),
        _rule("given_name_norm", "birth_date"), _rule("birth_date", "postcode"),
        _rule("given_name_norm", "family_name_norm", "postcode"),
        _rule("given_name_norm", "family_name_norm", "city"),
        _rule("given_name_norm", "family_name_norm"),
    ],
    # not on the name first: different companies share names ("Nordwind Logistik"), which
    # would teach EM that a shared name is a match
    "organization": [
        _rule("registration_id"), _rule("phone_any"), _rule("email"), _rule("tax_id"),
        _rule("org_name_norm", "postcode"), _rule("org_name_norm", "city"),
    ],
}

# Rules that admit almost no false matches; the prior is estimated from the first tier that the
# data supports (a later tier only when no rule of an earlier one is populated).
DETERMINISTIC_CANDIDATES: dict[str, list[list[CandidateRule]]] = {
    "person": [
        [_rule("national_id"), _rule("passport_number"), _rule("customer_number"),
         _rule("given_name_norm", "family_name_norm", "birth_date", "phone_mobile"),
         _rule("given_name_norm", "family_name_norm", "birth_date", "email")],
        [_rule("given_name_norm", "family_name_norm", "birth_date", "postcode"),
         _rule("given_name_norm", "family_name_norm", "email"),
         _rule("given_name_norm", "family_name_norm", "phone_mobile")],
    ],
    "organization": [
        [_rule("registration_id"), _rule("tax_id"), _rule("org_name_norm", "postcode")],
        [_rule("org_name_norm", "email"), _rule("org_name_norm", "phone_any"),
         _rule("org_name_norm", "city")],
    ],
}


def rule_populated(rule: CandidateRule, has: Has) -> bool:
    """All fields of the rule populated (an expression like substr(x, ...) needs x)."""
    import re

    # the column names in each key, not the SQL functions around them ("substr(x, 1, 4)")
    names = {m.strip() for f in rule.fields for m in re.findall(r"[a-z_]+\s*\(?", f)
             if not m.endswith("(")}
    return all(has(n) for n in names) and not any(has(f) for f in rule.only_without)


@dataclass
class ComparisonChoice:
    """The comparisons of a model, and the catalogue entries left out with the reason."""

    comparisons: list[cl.CustomComparison] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)


def choose_comparisons(party_type: str, has: Has) -> ComparisonChoice:
    """The catalogue entries whose fields are populated, built for the fields that are."""
    choice = ComparisonChoice()
    for candidate in CATALOGUE[party_type]:
        missing = candidate.missing(has)
        if missing:
            choice.excluded[candidate.name] = "not populated: " + ", ".join(missing)
            continue
        comparison = candidate.build(has)
        if comparison is None:
            choice.excluded[candidate.name] = "no populated field to compare"
            continue
        choice.comparisons.append(comparison)
    return choice


def settings_for(party_type: str, comparisons: list, blocking_rules: list[str]) -> SettingsCreator:
    """Untrained Splink settings of one party type (dedupe across all sources at once)."""
    from splink.blocking_rule_library import CustomRule

    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        comparisons=comparisons,
        blocking_rules_to_generate_predictions=[CustomRule(sql, sql_dialect=DUCKDB)
                                                for sql in blocking_rules],
        retain_matching_columns=True,
        retain_intermediate_calculation_columns=True,
        max_iterations=50,
        em_convergence=0.0001,
        # fixed so the saved JSON depends only on data and seed
        linker_uid=f"ucv_{party_type}",
    )


def comparison_names(settings: dict[str, Any]) -> list[str]:
    return [c["output_column_name"] for c in settings["comparisons"]]


def tf_columns(model: dict[str, Any]) -> list[str]:
    """Columns with term-frequency adjustments (their tf tables must exist for real-time scoring)."""
    columns = [lv["tf_adjustment_column"] for c in model["comparisons"]
               for lv in c["comparison_levels"] if lv.get("tf_adjustment_column")]
    return list(dict.fromkeys(columns))


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


def _levels_exist(model: dict[str, Any], comparison: str, labels: list[str]) -> bool:
    try:
        level_gammas(model, comparison, labels)
    except KeyError:
        return False
    return True


def applicable_guard(model: dict[str, Any], guard: dict[str, Any]
                     ) -> tuple[dict[str, Any] | None, list[str]]:
    """The guard as it applies to this model, and notes on what was left out of it.

    A model derived from other data may lack a comparison (or level) a guard names: a guard
    whose `when` is absent is skipped; an `unless` option naming absent evidence is dropped
    (absent evidence cannot settle a conflict).
    """
    name = guard.get("name", "?")

    def present(comparison: str, labels: list[str]) -> list[str]:
        """The listed levels this model has (a model trained without mobiles has no "mobile
        differs too" variants; the other listed levels still count)."""
        return [label for label in labels if _levels_exist(model, comparison, [label])]

    when = {c: present(c, labels) for c, labels in guard["when"].items()}
    for comparison, labels in guard["when"].items():
        if not when[comparison]:
            return None, [f"link guard {name} skipped: the model has no {comparison} "
                          f"level(s) {labels}"]
    guard = {**guard, "when": when}
    notes = []
    unless = guard.get("unless") or {}
    options = [unless] if isinstance(unless, dict) else list(unless)
    kept_options = []
    for option in options:
        kept = {c: present(c, labels) for c, labels in option.items()}
        kept = {c: labels for c, labels in kept.items() if labels}
        for c in sorted(set(option) - set(kept)):
            notes.append(f"link guard {name}: 'unless {c}' dropped (not in the model)")
        # an option of several conditions that all must hold is void when one is absent
        if kept and (isinstance(unless, dict) or len(kept) == len(option)):
            kept_options.append(kept)
    if isinstance(unless, dict):
        merged = {c: labels for option in kept_options for c, labels in option.items()}
        return {**guard, "unless": merged}, notes
    return {**guard, "unless": kept_options}, notes
