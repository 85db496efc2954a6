"""Phone numbers in bulk: E.164 and mobile vs landline in DuckDB, from libphonenumber's metadata.

Calling phonenumbers costs ~50 µs a number, too slow for a million rows of mostly distinct
numbers. The common case is decided set-based instead, with the same metadata phonenumbers uses
(country codes, national prefix for parsing, the national number patterns of general, mobile,
fixed-line and the other number types): a number is decided in SQL only when it is a plain
mobile or fixed-line number of a country code with a single region; everything else (invalid,
other number types, shared country codes, transform rules) goes to `standardize_phone` one
distinct value at a time. Tests check that both paths agree.
"""

from __future__ import annotations

from functools import cache

import duckdb
import phonenumbers
import pyarrow as pa
from phonenumbers import PhoneMetadata

from pipelines.sql import quote_literal
from pipelines.standardize.contact import standardize_phone

OTHER_TYPES = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager",
               "uan", "voicemail")


def _literal(text: str) -> str:
    return quote_literal(text)


@cache
def region_rules(region: str) -> dict | None:
    """What SQL needs to read numbers of `region`, or None when only phonenumbers can."""
    meta = PhoneMetadata.metadata_for_region(region)
    if meta is None or meta.national_prefix_transform_rule or meta.country_code is None \
            or meta.general_desc is None or meta.general_desc.national_number_pattern is None:
        return None
    regions_of_cc = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(meta.country_code, ())

    def desc(d) -> tuple[str | None, tuple[int, ...]]:
        if d is None or d.national_number_pattern is None:
            return None, ()
        return d.national_number_pattern, tuple(n for n in d.possible_length if n > 0)

    others = [desc(getattr(meta, t))[0] for t in OTHER_TYPES]
    return {
        "cc": str(meta.country_code),
        "single_region": len(regions_of_cc) == 1,
        "idd00": meta.international_prefix == "00",
        "national_prefix_for_parsing": meta.national_prefix_for_parsing or meta.national_prefix,
        "general": desc(meta.general_desc),
        "mobile": desc(meta.mobile),
        "fixed": desc(meta.fixed_line),
        "same_mobile_fixed": bool(meta.same_mobile_and_fixed_line_pattern),
        "other": "|".join(f"(?:{p})" for p in others if p) or None,
    }


@cache
def country_codes() -> dict[str, str]:
    """Country calling code -> its main region (prefix-free, 1 to 3 digits)."""
    return {str(cc): regions[0] for cc, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items()
            if regions and regions[0] != "001"}


def _matches(column: str, desc: tuple[str | None, tuple[int, ...]]) -> str:
    pattern, lengths = desc
    if pattern is None:
        return "FALSE"
    sql = f"regexp_full_match({column}, {_literal(pattern)})"
    if lengths:
        sql += f" AND length({column}) IN ({', '.join(map(str, lengths))})"
    return f"({sql})"


def phone_lookup_table(con: duckdb.DuckDBPyConnection, source_table: str = "phone_rows") -> None:
    """Table `phone_lookup` (v_clean, region, kind -> e164, phone_kind, phone_flag)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE pd AS SELECT DISTINCT v_clean, region, kind "
                f"FROM {source_table}")
    rules_of: dict[str, dict] = {}
    for (region,) in con.execute("SELECT DISTINCT region FROM pd WHERE region IS NOT NULL").fetchall():
        rules = region_rules(region)
        if rules:
            rules_of[region] = rules
    regions = list(rules_of)
    codes = country_codes()
    by_length: dict[int, list[str]] = {1: [], 2: [], 3: []}
    for cc in codes:
        by_length[len(cc)].append(_literal(cc))
    cc_of_intl = "CASE " + " ".join(
        f"WHEN substr(intl, 1, {n}) IN ({', '.join(ccs)}) THEN substr(intl, 1, {n})"
        for n, ccs in by_length.items() if ccs) + " END"
    region_cc = "CASE region " + " ".join(
        f"WHEN {_literal(r)} THEN {_literal(rules_of[r]['cc'])}" for r in regions) + " END" \
        if regions else "NULL"
    idd00 = [_literal(r) for r in regions if rules_of[r]["idd00"]]
    idd_sql = f"WHEN starts_with(v_clean, '00') AND region IN ({', '.join(idd00)}) " \
              f"THEN substr(v_clean, 3)" if idd00 else ""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE pd_split AS
        WITH a AS (
            SELECT *, CASE WHEN starts_with(v_clean, '+') THEN substr(v_clean, 2) {idd_sql} END AS intl
              FROM pd)
        SELECT *, CASE WHEN intl IS NULL THEN {region_cc} ELSE {cc_of_intl} END AS cc
          FROM a""")
    con.execute("""ALTER TABLE pd_split ADD COLUMN rest VARCHAR;
                   UPDATE pd_split SET rest = CASE WHEN intl IS NULL THEN v_clean
                                                   ELSE substr(intl, length(cc) + 1) END""")
    present = [cc for (cc,) in con.execute("SELECT DISTINCT cc FROM pd_split WHERE cc IS NOT NULL")
               .fetchall()]
    fast: dict[str, dict] = {}
    for cc in present:
        rules = region_rules(codes[cc]) if cc in codes else None
        if rules and rules["single_region"]:
            fast[cc] = rules

    decided_parts = []
    for cc, rules in fast.items():
        general = rules["general"]
        prefix = rules["national_prefix_for_parsing"]
        if prefix:
            # phonenumbers strips the national prefix unless that turns a viable number unviable.
            m = f"regexp_extract(rest, {_literal('^(?:' + prefix + ')')})"
            stripped = f"substr(rest, length({m}) + 1)"
            nsn = (f"CASE WHEN {m} <> '' AND NOT ({_matches('rest', general)} AND NOT "
                   f"{_matches(stripped, general)}) THEN {stripped} ELSE rest END")
        else:
            nsn = "rest"
        other = f"regexp_full_match(nsn, {_literal(rules['other'])})" if rules["other"] else "FALSE"
        same = "TRUE" if rules["same_mobile_fixed"] else "FALSE"
        decided_parts.append(f"""
            SELECT v_clean, region, kind, '+' || cc || nsn AS e164,
                   CASE WHEN is_fixed AND (is_mobile OR {same}) THEN coalesce(kind, 'landline')
                        WHEN is_fixed THEN 'landline'
                        WHEN is_mobile AND NOT {same} THEN 'mobile' END AS phone_kind
              FROM (SELECT *, {_matches('nsn', rules['fixed'])} AS is_fixed,
                              {_matches('nsn', rules['mobile'])} AS is_mobile,
                              {_matches('nsn', general)} AS is_general, {other} AS is_other
                      FROM (SELECT *, {nsn} AS nsn FROM pd_split WHERE cc = {_literal(cc)}
                               AND regexp_full_match(rest, '[0-9]+')))
             WHERE is_general AND NOT is_other AND (is_fixed OR is_mobile)
               AND regexp_full_match('+' || cc || nsn, '\\+[1-9][0-9]{{6,14}}')""")
    if decided_parts:
        con.execute("CREATE OR REPLACE TEMP TABLE pd_fast AS " + " UNION ALL ".join(decided_parts))
    else:
        con.execute("""CREATE OR REPLACE TEMP TABLE pd_fast AS SELECT v_clean, region, kind,
                       NULL::VARCHAR AS e164, NULL::VARCHAR AS phone_kind FROM pd WHERE FALSE""")
    rest = con.sql("""SELECT v_clean, region, kind FROM pd
                      ANTI JOIN pd_fast f ON pd.v_clean = f.v_clean
                       AND pd.region IS NOT DISTINCT FROM f.region
                       AND pd.kind IS NOT DISTINCT FROM f.kind""").to_arrow_table()
    values, regions_, kinds = (rest.column(i).to_pylist() for i in range(3))
    results = [standardize_phone(v, r, k) for v, r, k in zip(values, regions_, kinds, strict=True)]
    slow = pa.table({"v_clean": rest.column(0), "region": rest.column(1), "kind": rest.column(2),
                     "e164": pa.array([r[0] for r in results], pa.string()),
                     "phone_kind": pa.array([r[1] for r in results], pa.string()),
                     "phone_flag": pa.array([r[2] for r in results], pa.string())})
    con.register("pd_slow", slow)
    con.execute("""CREATE OR REPLACE TEMP TABLE phone_lookup AS
                   SELECT v_clean, region, kind, e164, phone_kind, NULL::VARCHAR AS phone_flag
                     FROM pd_fast
                   UNION ALL SELECT * FROM pd_slow""")
    con.unregister("pd_slow")
