"""A hand-written bare-Splink script: the baseline the pipeline's time and quality are measured against.

What a competent Splink user would write in an afternoon for the four landing exports, using none of
this project's ingest, standardization, features or models: read the files (the GB18030 claims CSV
decoded in Python, since DuckDB's CSV reader needs a downloadable extension for it), standardize in
plain DuckDB SQL (lower case, folded accents, hanzi names and cities in pinyin, national phone
numbers as digits, parsed dates, one table per party type), train one Splink model per party type
with `splink.comparison_library` comparisons (prior from deterministic rules, u by seeded random
sampling, two EM passes), predict with a handful of blocking rules and cluster at match
probability 0.95, a threshold chosen before looking at any truth. Issue 19 divides the pipeline's
wall time by this script's; issue 11 compares quality with it.

    python -m pipelines.bench.handwritten LANDING_DIR [--truth TRUTH_DIR] [--out results.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from pipelines.bench.resources import measure
from pipelines.sql import quote_literal, quote_path

# Chosen up front, as Splink's tutorials do (0.95), and never tuned on the ground truth.
CLUSTER_THRESHOLD = 0.95
# Pairs below this are not kept (the pair counts reported); clustering uses those at or above
# CLUSTER_THRESHOLD.
PREDICT_THRESHOLD = 0.5
U_MAX_PAIRS = {"person": 5e6, "organization": 2e6}
PARTY_TYPES = ("person", "organization")

# What docs/source_exports.md says of the two CSV exports: encoding and delimiter.
CSV_FORMATS = {"sales_leads.csv": ("utf-8", ","), "claims.csv": ("gb18030", ";")}

# Written once with the data open in front of you: accents and German umlauts folded, anything
# that is not a letter or digit made a space. Legal forms as they appear in the exports, after
# `clean` (so "Co., Ltd." is "co ltd" and "G.m.b.H." is "g m b h").
MACROS = r"""
CREATE OR REPLACE MACRO fold(s) AS strip_accents(
    replace(replace(replace(replace(lower(trim(s)), 'ä', 'ae'), 'ö', 'oe'), 'ü', 'ue'), 'ß', 'ss'));
CREATE OR REPLACE MACRO clean(s) AS nullif(trim(regexp_replace(fold(s), '[^\p{L}\p{N}]+', ' ', 'g')), '');
CREATE OR REPLACE MACRO legal_form() AS
    ' (gmbh|g m b h|gesellschaft mbh|gesellschaft mit beschraenkter haftung|ag|aktiengesellschaft'
    || '|kg|ohg|co ltd|ltd|limited|company limited|co limited|inc|llc|plc)$|有限公司$';
CREATE OR REPLACE MACRO has_legal_form(s) AS coalesce(regexp_matches(clean(s), legal_form()), false);
CREATE OR REPLACE MACRO org_name(s) AS nullif(trim(regexp_replace(clean(s), legal_form(), '')), '');
-- national number: no +49/+86/0049 country code, no trunk 0, digits only
CREATE OR REPLACE MACRO phone(p) AS nullif(regexp_replace(regexp_replace(
    regexp_replace(trim(p), '^(\+|00)\s*(49|86)', ''), '[^0-9]', '', 'g'), '^0+', ''), '');
CREATE OR REPLACE MACRO phones(ps) AS nullif(
    list_distinct(list_filter(list_transform(ps, lambda p: phone(p)), lambda p: length(p) >= 6)), []);
CREATE OR REPLACE MACRO email(e) AS nullif(lower(trim(e)), '');
CREATE OR REPLACE MACRO postcode(p) AS nullif(regexp_replace(upper(p), '[^0-9A-Z]', '', 'g'), '');
CREATE OR REPLACE MACRO id_number(i) AS nullif(regexp_replace(upper(i), '[^0-9A-Z]', '', 'g'), '');
CREATE OR REPLACE MACRO is_han(s) AS coalesce(regexp_matches(s, '\p{Han}'), false);
-- hanzi to pinyin, so 王伟 compares with "Wang Wei" (`pinyin` is a Python function, below)
CREATE OR REPLACE MACRO latin(s) AS CASE WHEN is_han(s) THEN pinyin(s) ELSE s END;
-- a name in one field: "Müller, Thomas", "WANG Wei" / "Na LI" (capitals = family name),
-- "王伟" (first character), else "Thomas Müller" (last word)
CREATE OR REPLACE MACRO family_of(n) AS CASE
    WHEN is_han(n) THEN left(replace(n, ' ', ''), 1)
    WHEN n LIKE '%,%' THEN split_part(n, ',', 1)
    WHEN regexp_matches(n, '(^|\s)\p{Lu}{2,}(\s|$)') THEN regexp_extract(n, '(^|\s)(\p{Lu}{2,})(\s|$)', 2)
    ELSE regexp_extract(trim(n), '(\S+)$', 1) END;
CREATE OR REPLACE MACRO given_of(n) AS CASE
    WHEN is_han(n) THEN nullif(substr(replace(n, ' ', ''), 2), '')
    WHEN n LIKE '%,%' THEN split_part(n, ',', 2)
    WHEN regexp_matches(n, '(^|\s)\p{Lu}{2,}(\s|$)')
        THEN regexp_replace(n, '(^|\s)\p{Lu}{2,}(\s|$)', ' ')
    ELSE regexp_replace(trim(n), '\s*\S+$', '') END;
CREATE OR REPLACE MACRO surname(s) AS nullif(regexp_replace(clean(latin(s)), ' (jr|sr)$', ''), '');
CREATE OR REPLACE MACRO given(s) AS nullif(replace(clean(latin(s)), ' ', ''), '');
CREATE OR REPLACE MACRO city(s) AS nullif(replace(clean(latin(s)), ' ', ''), '');
"""

# One row per source record, the fields every party type needs, before cleaning. Sales leads and
# servicing parties say themselves whether they are a person; a "person" whose name ends in a legal
# form is a company typed in the wrong form.
PARTIES_SQL = """
CREATE OR REPLACE TABLE parties AS
SELECT 'sales:' || lead_id AS unique_id, 'sales' AS source_system,
       CASE WHEN lead_type = 'company' OR company_name IS NOT NULL
                 OR has_legal_form(concat_ws(' ', first_name, last_name))
            THEN 'organization' ELSE 'person' END AS party_type,
       first_name AS given_raw, last_name AS family_raw,
       coalesce(company_name, concat_ws(' ', first_name, last_name)) AS org_raw,
       try_strptime(birth_date, '%d.%m.%Y')::DATE AS dob, NULL AS id_raw, email AS email_raw,
       [mobile, phone] AS phones_raw, street_address AS street_raw, zip AS postcode_raw,
       city AS city_raw
FROM raw_sales
UNION ALL
SELECT 'underwriting:' || application_no, 'underwriting',
       CASE WHEN applicant_type = 'O' THEN 'organization' ELSE 'person' END,
       -- some applicants have the whole name in `surname` and no given names
       CASE WHEN nullif(trim(given_names), '') IS NULL THEN given_of(surname) ELSE given_names END,
       CASE WHEN nullif(trim(given_names), '') IS NULL THEN family_of(surname) ELSE surname END,
       company_name, TRY_CAST(dob AS DATE),
       CASE WHEN applicant_type = 'O' THEN company_reg_no ELSE national_id END, email, [phone],
       addr_line1, postal_code, town
FROM raw_underwriting
UNION ALL
SELECT 'servicing:' || record_id, 'servicing',
       CASE WHEN party_kind = 'legal' OR has_legal_form(name) THEN 'organization' ELSE 'person' END,
       given_of(name), family_of(name), name,
       try_strptime(birth_date, '%Y-%m-%d')::DATE, id_number, email_address, phone_numbers,
       address.street, address.postcode, address.city
FROM raw_servicing
UNION ALL
-- claims: the address is one line, "Hauptstraße 12, 10115 Berlin, DE" or "..., Beijing 100022"
SELECT 'claims:' || claim_no, 'claims',
       CASE WHEN has_legal_form(claimant_name) THEN 'organization' ELSE 'person' END,
       given_of(claimant_name), family_of(claimant_name), claimant_name,
       try_strptime(claimant_birthdate, '%Y%m%d')::DATE, claimant_id_no, contact_email,
       [contact_phone], split_part(address, ',', 1), regexp_extract(address, '\\b(\\d{5,6})\\b', 1),
       coalesce(nullif(regexp_extract(address, '\\d{5} ([^,]+)', 1), ''),
                nullif(regexp_extract(address, ',\\s*([^,0-9]+?)\\s+\\d{6}\\s*$', 1), ''))
FROM raw_claims
"""

PERSON_SQL = """
CREATE OR REPLACE TABLE person AS
WITH p AS (
    SELECT unique_id, source_system, given(given_raw) AS first_name, surname(family_raw) AS surname,
           dob, id_number(id_raw) AS national_id, email(email_raw) AS email,
           phones(phones_raw) AS phones, clean(street_raw) AS street,
           postcode(postcode_raw) AS postcode, city(city_raw) AS city
    FROM parties WHERE party_type = 'person')
SELECT * EXCLUDE (phones), nullif(concat_ws(' ', first_name, surname), '') AS full_name, phones,
       phones[1] AS phone
FROM p
"""

ORGANIZATION_SQL = """
CREATE OR REPLACE TABLE organization AS
WITH o AS (
    SELECT unique_id, source_system, org_name(org_raw) AS org_name, id_number(id_raw) AS reg_no,
           email(email_raw) AS email, phones(phones_raw) AS phones, clean(street_raw) AS street,
           postcode(postcode_raw) AS postcode, city(city_raw) AS city
    FROM parties WHERE party_type = 'organization')
SELECT *, phones[1] AS phone FROM o
"""


def read_exports(con: Any, landing_dir: Path, work_dir: Path) -> dict[str, int]:
    """Tables raw_sales, raw_claims, raw_servicing, raw_underwriting as landed (text columns)."""
    for name, table in (("sales_leads.csv", "raw_sales"), ("claims.csv", "raw_claims")):
        encoding, delimiter = CSV_FORMATS[name]
        path = landing_dir / name
        if encoding != "utf-8":  # DuckDB reads UTF-8 only (without a downloadable extension)
            path = work_dir / f"{path.stem}.utf8.csv"
            path.write_text((landing_dir / name).read_bytes().decode(encoding), encoding="utf-8")
        delim = "';'" if delimiter == ";" else "','"
        con.execute(f"""CREATE OR REPLACE TABLE {table} AS SELECT * FROM read_csv(
            {quote_path(path)}, header = true, delim = {delim}, quote = '"', all_varchar = true)""")
    con.execute(f"""
        CREATE OR REPLACE TABLE raw_servicing AS SELECT * FROM read_json(
            {quote_path(landing_dir / 'policy_servicing.jsonl')}, format = 'newline_delimited',
            ignore_errors = true, columns = {{
                record_id: 'VARCHAR', party_kind: 'VARCHAR', name: 'VARCHAR',
                birth_date: 'VARCHAR', id_number: 'VARCHAR', phone_numbers: 'VARCHAR[]',
                email_address: 'VARCHAR',
                address: 'STRUCT(street VARCHAR, postcode VARCHAR, city VARCHAR, country VARCHAR)'}})
        WHERE record_id IS NOT NULL""")
    con.execute(f"""CREATE OR REPLACE TABLE raw_underwriting AS
        SELECT * FROM read_parquet({quote_path(landing_dir / 'underwriting_applications.parquet')})""")
    return {table: int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
            for table in ("raw_sales", "raw_underwriting", "raw_servicing", "raw_claims")}


def standardize(con: Any) -> dict[str, int]:
    """Tables `person` and `organization`, one row per source record, unique_id `source:key`."""
    from pypinyin import lazy_pinyin

    @functools.cache
    def pinyin(text: str) -> str:
        return " ".join(lazy_pinyin(text))

    con.create_function("pinyin", pinyin, ["VARCHAR"], "VARCHAR")
    con.execute(MACROS)
    con.execute(PARTIES_SQL)
    con.execute(PERSON_SQL)
    con.execute(ORGANIZATION_SQL)
    return {p: int(con.execute(f"SELECT count(*) FROM {p}").fetchall()[0][0]) for p in PARTY_TYPES}


def address_comparison() -> Any:
    """Street, postcode and city as one comparison: they say the same thing (where one lives), so
    three comparisons would count it three times."""
    import splink.comparison_level_library as cll
    from splink.comparison_library import CustomComparison

    return CustomComparison(output_column_name="address", comparison_levels=[
        cll.And(cll.NullLevel("postcode"), cll.NullLevel("city")),
        cll.And(cll.ExactMatchLevel("postcode"), cll.JaroWinklerLevel("street", 0.9)),
        cll.ExactMatchLevel("postcode"),
        cll.ExactMatchLevel("city").configure(tf_adjustment_column="city"),
        cll.ElseLevel()])


def settings(party_type: str) -> Any:
    """The Splink model of one party type: library comparisons and the prediction blocking rules."""
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    if party_type == "person":
        comparisons = [
            cl.ForenameSurnameComparison("first_name", "surname",
                                         forename_surname_concat_col_name="full_name"),
            cl.DateOfBirthComparison("dob", input_is_string=False),
            cl.ExactMatch("national_id"),
            cl.EmailComparison("email"),
            cl.ArrayIntersectAtSizes("phones", [1]),
            address_comparison(),
        ]
        rules: list[Any] = [
            block_on("surname", "dob"), block_on("first_name", "dob"), block_on("national_id"),
            block_on("email"), block_on("phone"), block_on("surname", "postcode"),
            block_on("first_name", "surname", "city")]
    else:
        comparisons = [
            cl.JaroWinklerAtThresholds("org_name", [0.95, 0.88]).configure(
                term_frequency_adjustments=True),
            cl.ExactMatch("reg_no"),
            cl.EmailComparison("email"),
            cl.ArrayIntersectAtSizes("phones", [1]),
            address_comparison(),
        ]
        rules = [block_on("org_name"), block_on("reg_no"), block_on("email"),
                 block_on("phone"), block_on("postcode", "substr(org_name, 1, 3)")]
    return SettingsCreator(link_type="dedupe_only", comparisons=comparisons,
                           blocking_rules_to_generate_predictions=rules,
                           retain_intermediate_calculation_columns=False)


def train(linker: Any, party_type: str, seed: int) -> None:
    """Prior from deterministic rules, u from random pairs, m by EM on two blocking rules."""
    from splink import block_on

    if party_type == "person":
        deterministic = [block_on("first_name", "surname", "dob"), block_on("national_id")]
        em_rules = [block_on("first_name", "surname"), block_on("dob")]
    else:
        deterministic = [block_on("org_name", "postcode"), block_on("reg_no")]
        em_rules = [block_on("org_name"), block_on("postcode")]
    linker.training.estimate_probability_two_random_records_match(deterministic, recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=U_MAX_PAIRS[party_type], seed=seed)
    for rule in em_rules:
        linker.training.estimate_parameters_using_expectation_maximisation(rule)


def pairwise_quality(con: Any, truth_path: Path) -> dict[str, Any]:
    """Pairwise precision and recall of table `clusters` against the ground truth, per party type
    (as the truth types the record) and overall; records the script did not cluster are left out."""
    con.execute(f"""CREATE OR REPLACE TABLE labelled AS
        SELECT c.unique_id, c.cluster_id, t.entity_id, t.party_type
        FROM clusters c JOIN read_parquet({quote_path(truth_path)}) t
          ON t.source_record_id = c.unique_id""")
    clustered, in_truth, labelled = con.execute(f"""
        SELECT (SELECT count(*) FROM clusters),
               (SELECT count(*) FROM read_parquet({quote_path(truth_path)})),
               (SELECT count(*) FROM labelled)""").fetchall()[0]
    quality: dict[str, Any] = {"records_not_in_truth": int(clustered - labelled),
                               "truth_records_not_clustered": int(in_truth - labelled)}
    for name, where in (("overall", "TRUE"), ("person", "party_type = 'person'"),
                        ("organization", "party_type = 'organization'")):
        records, tp, predicted, true_pairs = con.execute(f"""
            WITH r AS (SELECT * FROM labelled WHERE {where}),
            ce AS (SELECT cluster_id, entity_id, count(*) AS n FROM r GROUP BY ALL),
            c AS (SELECT cluster_id, sum(n) AS n FROM ce GROUP BY ALL),
            e AS (SELECT entity_id, sum(n) AS n FROM ce GROUP BY ALL)
            SELECT (SELECT count(*) FROM r),
                   (SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM ce),
                   (SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM c),
                   (SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM e)""").fetchall()[0]
        quality[name] = {
            "records": int(records), "true_pairs": int(true_pairs),
            "predicted_pairs": int(predicted), "true_positive_pairs": int(tp),
            "pairwise_precision": round(tp / predicted, 6) if predicted else 1.0,
            "pairwise_recall": round(tp / true_pairs, 6) if true_pairs else 1.0}
    return quality


def handwritten_splink(landing_dir: Path, work_dir: Path, seed: int = 42,
                       truth_dir: Path | None = None,
                       count_comparisons: bool = False) -> dict[str, Any]:
    """Read, standardize, train, predict and cluster the landing exports with Splink alone.

    Returns seconds and peak RSS per step, record / pair / cluster counts per party type, and with
    `truth_dir` pairwise precision and recall. Writes `clusters.parquet` (unique_id = the truth's
    source_record_id, party_type, cluster_id) to `work_dir`. `count_comparisons` adds Splink's
    cumulative comparison counts of the prediction rules, counted after the timed steps."""
    import duckdb
    from splink import DuckDBAPI, Linker
    from splink.blocking_analysis import count_comparisons_from_blocking_rules

    landing_dir, work_dir = Path(landing_dir), Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"SET temp_directory = {quote_path(work_dir / 'duckdb_tmp')}")
    db_api = DuckDBAPI(connection=con)
    steps: dict[str, Any] = {}
    per_party: dict[str, dict[str, Any]] = {p: {} for p in PARTY_TYPES}
    linkers: dict[str, Any] = {}
    predictions: dict[str, Any] = {}
    with measure() as total:
        with measure() as step:
            sources = read_exports(con, landing_dir, work_dir)
        steps["read"] = step.to_dict()
        with measure() as step:
            records = standardize(con)
        steps["standardize"] = step.to_dict()
        with measure() as step:
            for party_type in PARTY_TYPES:
                if records[party_type] < 2:
                    continue
                sdf = db_api.register(party_type, dataset_display_name=party_type)
                linkers[party_type] = Linker(sdf, settings(party_type), log_level=logging.WARNING)
                train(linkers[party_type], party_type, seed)
        steps["train"] = step.to_dict()
        with measure() as step:
            for party_type, linker in linkers.items():
                predictions[party_type] = linker.inference.predict(
                    threshold_match_probability=PREDICT_THRESHOLD)
        steps["predict"] = step.to_dict()
        with measure() as step:
            parts = []
            for party_type in PARTY_TYPES:
                if party_type in linkers:
                    clustered = linkers[party_type].clustering.cluster_pairwise_predictions_at_threshold(
                        predictions[party_type], threshold_match_probability=CLUSTER_THRESHOLD)
                    table, cluster_id = clustered.physical_name, "cluster_id"
                else:  # fewer than two records: every record is its own cluster
                    table, cluster_id = party_type, "unique_id"
                parts.append(f"SELECT unique_id, {quote_literal(party_type)} AS party_type, "
                             f"{quote_literal(party_type + ':')} || {cluster_id} AS cluster_id "
                             f"FROM {table}")
            con.execute("CREATE OR REPLACE TABLE clusters AS " + " UNION ALL ".join(parts))
            con.execute(f"COPY clusters TO {quote_path(work_dir / 'clusters.parquet')} (FORMAT parquet)")
        steps["cluster"] = step.to_dict()
    for party_type in PARTY_TYPES:
        pairs = (int(con.execute(f"SELECT count(*) FROM {predictions[party_type].physical_name}")
                     .fetchall()[0][0]) if party_type in predictions else 0)
        clusters = int(con.execute("SELECT count(DISTINCT cluster_id) FROM clusters "
                                   "WHERE party_type = ?", [party_type]).fetchall()[0][0])
        per_party[party_type] = {"records": records[party_type], "pairs": pairs,
                                 "clusters": clusters}
        if count_comparisons and party_type in linkers:
            counted = count_comparisons_from_blocking_rules(
                db_api.register(party_type, table_name=f"{party_type}_counted"),
                blocking_rules=settings(party_type).blocking_rules_to_generate_predictions,
                link_type="dedupe_only", record_sample_proportion=1.0)
            per_party[party_type]["blocking"] = [
                {"rule": c["blocking_rule"], "marginal": int(c["marginal_comparison_count"]),
                 "cumulative": int(c["cumulative_comparison_count"])} for c in counted]
    result: dict[str, Any] = {
        "landing_dir": str(landing_dir), "seed": seed,
        "cluster_threshold_match_probability": CLUSTER_THRESHOLD,
        "predict_threshold_match_probability": PREDICT_THRESHOLD,
        "seconds": {name: s["seconds"] for name, s in steps.items()} | {
            "total": round(total.seconds, 3)},
        "peak_rss_mib": round(total.peak_rss_mib, 1),
        "peak_rss_mib_by_step": {name: s["peak_rss_mib"] for name, s in steps.items()},
        "source_rows": sources, "party_types": per_party,
    }
    if truth_dir is not None:
        result["quality"] = pairwise_quality(con, Path(truth_dir) / "ground_truth.parquet")
    con.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.bench.handwritten",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("landing_dir", type=Path, help="folder with the four landing exports")
    parser.add_argument("--truth", type=Path, help="folder with ground_truth.parquet")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--count-comparisons", action="store_true",
                        help="also count each prediction rule's comparisons (not timed)")
    args = parser.parse_args(argv)
    if not args.landing_dir.is_dir():
        parser.error(f"no such folder: {args.landing_dir}")
    with tempfile.TemporaryDirectory(prefix="handwritten-") as tmp:
        result = handwritten_splink(args.landing_dir, args.work or Path(tmp), seed=args.seed,
                                    truth_dir=args.truth, count_comparisons=args.count_comparisons)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
