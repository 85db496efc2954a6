"""`ucv train` on data of other shapes: models derived from the populated fields, clear refusals,
the stored field profile, the nightly fit check, the training report, and link guards that
name comparisons a derived model lacks."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.resolve import predict_and_cluster, train_models
from pipelines.resolve.features import ORGANIZATION_COLUMNS, PERSON_COLUMNS
from pipelines.resolve.predict import ModelFitError, blocked_by_sql, scale_prior
from pipelines.resolve.sample import write_sample
from pipelines.resolve.training import (
    TrainingError,
    profile_path,
    report_path,
    train_party_model,
)
from pipelines.settings import RunPaths

DROPPABLE = sorted((set(PERSON_COLUMNS) | set(ORGANIZATION_COLUMNS)) - {"source_system"})


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("training_sample")
    records_path, truth_path = write_sample(root / "sample", seed=7)
    models = train_models(records_path, seed=42, models_dir=root / "models",
                          truth_dir=truth_path.parent)
    return {"root": root, "records": records_path, "truth": truth_path.parent, "models": models,
            "frame": pd.read_parquet(records_path)}


def _comparison_sql(settings: dict) -> str:
    return json.dumps(settings["comparisons"]) + json.dumps(
        settings["blocking_rules_to_generate_predictions"])


@pytest.fixture(scope="module")
def small_frame(tmp_path_factory):
    records_path, _ = write_sample(tmp_path_factory.mktemp("small_sample"), seed=3,
                                   households=15, singles=50)
    return pd.read_parquet(records_path)


@pytest.mark.slow
@pytest.mark.parametrize("column", DROPPABLE)
def test_training_without_a_field_gives_a_model_or_names_the_missing_evidence(
        small_frame, tmp_path, column):
    frame = small_frame
    if column not in frame.columns:
        pytest.skip(f"the sample has no {column} to drop")
    path = tmp_path / "records.parquet"
    frame.drop(columns=[column]).to_parquet(path, index=False)
    for party_type, columns in (("person", PERSON_COLUMNS), ("organization", ORGANIZATION_COLUMNS)):
        if column not in columns:
            continue
        try:
            trained = train_party_model(path, party_type, seed=42)
        except TrainingError as error:
            assert column in str(error) and "\n" not in str(error)
            continue
        assert f'"{column}_l"' not in _comparison_sql(trained.settings)
        assert f'l."{column}"' not in _comparison_sql(trained.settings)
        assert len(trained.settings["comparisons"]) >= 2


def test_names_only_stops_with_one_paragraph_and_no_traceback(sample, tmp_path):
    from pipelines.cli import app

    frame = sample["frame"]
    keep = ["source_record_id", "source_system", "party_type", "given_name_norm",
            "family_name_norm", "org_name_norm"]
    path = tmp_path / "names_only.parquet"
    frame[keep].to_parquet(path, index=False)
    result = CliRunner().invoke(app, ["train", "--records", str(path),
                                      "--models-dir", str(tmp_path / "models")])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "Cannot train the person model" in " ".join(result.output.split())
    assert not list((tmp_path / "models").glob("*.json"))


def test_model_records_its_profile_and_report_without_personal_data(sample):
    person = sample["models"]["person"]
    fit = json.loads(profile_path(person).read_text())
    assert fit["training_records"] == int((sample["frame"]["party_type"] == "person").sum())
    assert "birth_date" in fit["used_fields"] and "national_id" in fit["used_fields"]
    assert fit["profile"]["fields"]["birth_date"]["fill_rate"] > 0.5
    assert set(fit["profile"]["by_source"]) == set(sample["frame"]["source_system"])
    report = report_path(person).read_text()
    assert "Field profile" in report and "EM passes" in report and "vegaEmbed" in report
    assert "cdn.jsdelivr" not in report
    assert "pairwise_precision" in report  # labels were given
    persons = sample["frame"][sample["frame"]["party_type"] == "person"]
    for value in persons["email"].dropna().head(20).tolist() + \
            persons["phone_mobile"].dropna().head(20).tolist():
        assert value not in report


def test_train_prints_the_resolution_yaml_lines(sample, tmp_path):
    from pipelines.cli import app

    result = CliRunner().invoke(app, ["train", "--records", str(sample["records"]),
                                      "--models-dir", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "models:" in result.output
    assert f"person: {tmp_path / 'm' / 'person-v1.json'}" in result.output


def _run_with(records: pd.DataFrame, base, run_id: str) -> RunPaths:
    run = RunPaths.for_run(run_id, base=base).ensure()
    records.to_parquet(run.staged_dir / "source_records.parquet", index=False)
    return run


def test_nightly_run_fails_when_a_source_stops_sending_a_field(sample, tmp_path):
    frame = sample["frame"].copy()
    source = frame.loc[frame["party_type"] == "person", "source_system"].value_counts().index[0]
    frame.loc[frame["source_system"] == source, "birth_date"] = None
    run = _run_with(frame, tmp_path, "2026-03-05")
    with pytest.raises(ModelFitError, match=f"birth_date \\(source {source}\\)"):
        predict_and_cluster(run, models=sample["models"])


def test_nightly_run_warns_within_tolerance(sample, tmp_path):
    frame = sample["frame"].copy()
    persons = frame.index[(frame["party_type"] == "person") & frame["email"].notna()]
    # drop e-mail on a fifth of the records: above warn_drop (0.10), below fail_drop (0.30)
    frame.loc[persons[: int(len(persons) * 0.2) + 1], "email"] = None
    run = _run_with(frame, tmp_path, "2026-03-06")
    result = predict_and_cluster(run, models=sample["models"])
    fit = result.summary["party_types"]["person"]["model_fit"]
    assert fit["checked"] and not fit["failures"]
    assert any(w.startswith("email") for w in fit["warnings"]), fit


def test_prior_scales_with_the_number_of_records(sample):
    model = json.loads(sample["models"]["person"].read_text())
    fit = json.loads(profile_path(sample["models"]["person"]).read_text())
    n = fit["training_records"]
    assert scale_prior(model, fit, n) == model
    assert scale_prior(model, fit, n // 2) == model  # never more lenient than trained
    ten_times = scale_prior(model, fit, 10 * n)["probability_two_random_records_match"]
    assert ten_times == pytest.approx(model["probability_two_random_records_match"]
                                      * (n - 1) / (10 * n - 1))


def test_a_model_without_national_ids_skips_the_guards_that_need_them(sample, tmp_path):
    frame = sample["frame"].drop(columns=["national_id", "national_id_type"], errors="ignore")
    path = tmp_path / "no_ids.parquet"
    frame.to_parquet(path, index=False)
    trained = train_party_model(path, "person", seed=42)
    names = [c["output_column_name"] for c in trained.settings["comparisons"]]
    assert "national_id" not in names and "birth_date" in names
    assert "national_id" in trained.report["excluded_comparisons"]
    sql, notes = blocked_by_sql(trained.settings, "person")
    assert any("national_id_conflict skipped" in n for n in notes)
    assert "birth_date" in sql  # birth_date_conflict still applies, without its 'unless'
    run = _run_with(frame, tmp_path, "2026-03-07")
    result = predict_and_cluster(run, models={"person": trained.settings,
                                              "organization": sample["models"]["organization"]})
    assert result.summary["party_types"]["person"]["links"] > 0


def test_a_declared_identifier_gets_its_own_exact_match_evidence(sample, tmp_path):
    from pipelines.resolve.evaluate import evaluate

    frame = sample["frame"].copy()
    truth = pd.read_parquet(sample["truth"] / "ground_truth.parquet")
    entity = truth.set_index("source_record_id")["entity_id"]
    persons = frame["party_type"] == "person"
    # an insurer's own customer number on most person records, no checksum
    frame["customer_number"] = None
    frame.loc[persons, "customer_number"] = frame.loc[persons, "source_record_id"].map(
        lambda rid: f"K-{entity[rid]}")
    frame.loc[frame.index[persons][::4], "customer_number"] = None
    path = tmp_path / "with_customer_number.parquet"
    frame.to_parquet(path, index=False)
    trained = train_party_model(path, "person", seed=42)
    levels = {c["output_column_name"]: c for c in trained.settings["comparisons"]}
    assert "customer_number" in levels
    exact = [lv for lv in levels["customer_number"]["comparison_levels"]
             if lv["label_for_charts"] == "Exact match on customer_number"][0]
    assert exact["m_probability"] / exact["u_probability"] > 2**8
    rules = [r["blocking_rule"] for r in trained.settings["blocking_rules_to_generate_predictions"]]
    assert 'l."customer_number" = r."customer_number"' in rules
    run = _run_with(frame, tmp_path, "2026-03-08")
    result = predict_and_cluster(run, models={"person": trained.settings,
                                              "organization": sample["models"]["organization"]})
    quality = evaluate(result.clusters_path, result.match_pairs_path, sample["truth"])
    assert quality["by_party_type"]["person"]["pairwise_precision"] >= 0.99


def test_a_config_folder_needs_only_the_models_lines(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "models").mkdir()
    (tmp_path / "resolution.yaml").write_text(
        "models:\n  person: models/person-v7.json\n", encoding="utf-8")
    code = ("from pipelines.resolve.config import model_paths, thresholds; "
            "print(model_paths()['person']); print(model_paths()['organization']); "
            "print(thresholds('person').match)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "UCV_CONFIG_DIR": str(tmp_path)}).stdout.split()
    assert out[0] == str(tmp_path / "models" / "person-v7.json")
    assert out[1].endswith("schemas/models/organization-v7.json")  # the project's, not overlaid
    assert float(out[2]) > 0


def _levels(party_type: str, name: str) -> list[dict]:
    from pipelines.resolve.model import choose_comparisons

    choice = choose_comparisons(party_type, lambda field: True)
    comparison = [c for c in choice.comparisons if c.create_output_column_name() == name][0]
    return comparison.get_comparison("duckdb").as_dict()["comparison_levels"]


def _first_level(levels: list[dict], row: dict) -> str:
    """The label of the first level whose SQL holds for a pair given as *_l / *_r values."""
    import duckdb

    con = duckdb.connect()
    from pipelines.resolve.spark import LIST_COLUMNS

    def sql_type(key: str) -> str:
        return "VARCHAR[]" if key[:-2] in LIST_COLUMNS else "VARCHAR"

    con.execute("CREATE TABLE pair AS SELECT " + ", ".join(
        f"{'NULL' if v is None else repr(v)}::{sql_type(k)} AS {k}" for k, v in row.items()))
    for level in levels:
        if level.get("is_null_level"):
            continue
        if level["sql_condition"] == "ELSE" or con.execute(
                f"SELECT coalesce(({level['sql_condition']}), false) FROM pair").fetchall()[0][0]:
            return level["label_for_charts"]
    raise AssertionError("no level")


def test_a_holding_beside_its_operating_company_is_a_related_company():
    from pipelines.resolve.model import RELATED_COMPANY

    levels = _levels("organization", "org_name")
    pair = {"org_name_norm_l": "hoevel druckerei", "org_name_norm_r": "hoevel druckerei beteiligungs",
            "org_name_tokens_l": ["druckerei", "hoevel"],
            "org_name_tokens_r": ["beteiligungs", "druckerei", "hoevel"],
            "org_name_qualifiers_l": [], "org_name_qualifiers_r": ["beteiligung"],
            "org_name_core_l": "hoeveldruckerei", "org_name_core_r": "hoeveldruckerei"}
    assert _first_level(levels, pair) == RELATED_COMPANY
    same = {**pair, "org_name_norm_r": "hoevel druckerei", "org_name_tokens_r": ["druckerei", "hoevel"],
            "org_name_qualifiers_r": []}  # the same core, no qualifier on either side
    assert _first_level(levels, same) == "Exact match on org_name_norm"


def test_an_english_next_to_a_chinese_given_name_is_not_a_different_given_name():
    levels = _levels("person", "given_name")
    pair = {"given_name_norm_l": "cindy", "given_name_norm_r": "minhong",
            "given_name_origin_l": "western", "given_name_origin_r": "pinyin",
            "name_native_l": None, "name_native_r": "王敏红",
            "given_name_variants_l": ["cindy"], "given_name_variants_r": ["minhong"],
            "name_tokens_l": "cindy wang", "name_tokens_r": "minhong wang",
            "family_name_norm_l": "wang", "family_name_norm_r": "wang",
            "given_name_pinyin_forms_l": None, "given_name_pinyin_forms_r": None}
    assert _first_level(levels, pair) == "English and Chinese given names (Cindy / Minhong)"
    namesakes = {**pair, "given_name_norm_r": "peter", "given_name_origin_r": "western",
                 "given_name_variants_r": ["peter"], "name_tokens_r": "peter wang"}
    assert _first_level(levels, namesakes) == "Different given name"


def test_a_cantonese_given_name_matches_the_pinyin_of_the_same_characters():
    from pipelines.resolve.features import cantonese_pinyin_forms

    levels = _levels("person", "given_name")
    forms = cantonese_pinyin_forms(["fong", "fang"])
    assert "fang" not in forms  # pinyin itself has no Cantonese reading
    pair = {"given_name_norm_l": "fong", "given_name_norm_r": "fang",
            "given_name_pinyin_forms_l": forms["fong"], "given_name_pinyin_forms_r": None,
            "given_name_origin_l": "western", "given_name_origin_r": "han",
            "name_native_l": None, "name_native_r": "孙芳",
            "given_name_variants_l": ["fong"], "given_name_variants_r": ["fang"],
            "name_tokens_l": "fong suen", "name_tokens_r": "fang sun",
            "family_name_norm_l": "suen", "family_name_norm_r": "sun"}
    assert _first_level(levels, pair) == "Cantonese romanisation of the other's name (Fong / Fang, 芳)"
    swapped = {f"{k[:-2]}_{'r' if k.endswith('_l') else 'l'}": v for k, v in pair.items()}
    assert _first_level(levels, swapped) == "Cantonese romanisation of the other's name (Fong / Fang, 芳)"
    other = {**pair, "given_name_norm_r": "ming", "given_name_variants_r": ["ming"]}
    assert _first_level(levels, other) != "Cantonese romanisation of the other's name (Fong / Fang, 芳)"


def test_a_whole_name_in_one_field_is_still_compared_by_its_parts():
    import duckdb

    from pipelines.resolve.model import GIVEN_MISSING

    levels = _levels("person", "given_name")
    null_level = [lv for lv in levels if lv.get("is_null_level")][0]
    assert null_level["sql_condition"] == GIVEN_MISSING

    def missing(tokens_r: str) -> bool:
        return duckdb.sql(f"SELECT {GIVEN_MISSING} FROM (SELECT NULL::VARCHAR AS given_name_norm_l, "
                          f"'yim' AS given_name_norm_r, 'lau yim' AS name_tokens_l, "
                          f"'{tokens_r}' AS name_tokens_r)").fetchall()[0][0]

    assert not missing("lau yim")  # "Lau Yim" in the family field against Yim / Lau
    assert missing("lau yan")
    pair = {"given_name_norm_l": None, "given_name_norm_r": "yim", "name_tokens_l": "lau yim",
            "name_tokens_r": "lau yim", "family_name_norm_l": "lau yim", "family_name_norm_r": "lau",
            "name_native_l": None, "name_native_r": None, "given_name_variants_l": None,
            "given_name_variants_r": ["yim"], "given_name_origin_l": None,
            "given_name_origin_r": "western", "given_name_pinyin_forms_l": None,
            "given_name_pinyin_forms_r": None}
    assert _first_level(levels, pair) == "Same name parts in another order or split"


def _household_pair(**values) -> dict:
    columns = ["street_house", "street_key", "street", "house_number", "postcode", "city",
               "phone_landline", "email", "phone_mobile"]
    pair = {f"{c}_{side}": None for c in columns for side in "lr"}
    return {**pair, **values}


def test_a_lead_with_only_a_city_is_not_scored_as_a_different_street():
    levels = _levels("person", "household")
    lead = _household_pair(city_l="nuernberg", city_r="nuernberg", postcode_r="90280",
                           street_r="hauptstr", street_house_r="hauptstr 1", house_number_r="1")
    assert _first_level(levels, lead) == "Same city, no street to compare"
    other_mail = {**lead, "email_l": "stefan67@gmx.de", "email_r": "s.schneider@web.de"}
    assert _first_level(levels, other_mail) == "Same city, no street to compare, different e-mail"
    moved = {**lead, "postcode_l": "90372", "street_l": "ringstr", "street_house_l": "ringstr 9",
             "house_number_l": "9"}
    assert _first_level(levels, moved) == "Same city"


def test_an_older_record_with_another_address_and_mobile_has_its_own_level():
    """Address and mobile age together: the pair where both differ is scored on its own level
    (learnt jointly, then conditioned on the mobile comparison's "different" level)."""
    levels = _levels("person", "household")
    moved = _household_pair(city_l="nuernberg", city_r="nuernberg", postcode_l="90372",
                            postcode_r="90280", street_house_l="ringstr 9",
                            street_house_r="hauptstr 1", street_l="ringstr", street_r="hauptstr",
                            house_number_l="9", house_number_r="1")
    assert _first_level(levels, moved) == "Same city"
    new_mobile = {**moved, "phone_mobile_l": "+491701234567", "phone_mobile_r": "+491609876543"}
    # the city level keeps its term-frequency adjustment, whose scale is its own u: not split
    assert _first_level(levels, new_mobile) == "Same city"
    far = {**new_mobile, "city_r": "hamburg"}
    typo = {**far, "phone_mobile_r": "+491701234568"}
    assert _first_level(levels, typo) == "Different address"
    assert _first_level(levels, far) == "Different address, mobile differs too"
    assert _first_level(levels, {**far, "phone_mobile_r": None}) == "Different address"
    mail = {**far, "email_l": "a@b.de", "email_r": "a@b.de"}
    assert _first_level(levels, mail) == "Same e-mail, address differs, mobile differs too"


def test_conditioning_on_the_mobile_turns_joint_m_and_u_into_conditional_ones():
    from pipelines.resolve.training import condition_on_mobile

    def level(label, m, u):
        return {"label_for_charts": label, "m_probability": m, "u_probability": u}

    model = {"comparisons": [
        {"output_column_name": "phone_mobile", "comparison_levels": [
            level("Exact match on phone_mobile", 0.975, 3e-5),
            level("Different personal mobile", 0.025, 0.99997)]},
        {"output_column_name": "household", "comparison_levels": [
            level("Same city, mobile differs too", 0.002, 0.04),
            level("Same city", 0.005, 0.002),
            level("Different address, mobile differs too", None, None),
            level("Different address", 0.002, 0.95)]}]}
    out = condition_on_mobile(model)["comparisons"][1]["comparison_levels"]
    # joint 0.002 among matches / 0.025 mobile differing = 0.08 given that the mobile differs
    assert out[0]["m_probability"] == pytest.approx(0.08)
    assert out[0]["u_probability"] == pytest.approx(0.04 / 0.99997)
    assert out[1]["m_probability"] == 0.005  # the base level is left as it is
    # a variant never seen together falls back to independence (the base level's m and u)
    assert (out[2]["m_probability"], out[2]["u_probability"]) == (0.002, 0.95)


def test_a_hanzi_company_name_and_its_english_name_are_the_same_name():
    from pipelines.standardize.organizations import split_legal_form

    hanzi, _ = split_legal_form("西安豪佳电子有限公司")
    english, _ = split_legal_form("Xi'an Haojia Electronics Co., Ltd.")
    levels = _levels("organization", "org_name")
    pair = {"org_name_norm_l": hanzi, "org_name_norm_r": english,
            "org_name_tokens_l": sorted(hanzi.split()), "org_name_tokens_r": sorted(english.split()),
            "org_name_qualifiers_l": [], "org_name_qualifiers_r": [],
            "org_name_core_l": hanzi.replace(" ", ""), "org_name_core_r": english.replace(" ", "")}
    assert _first_level(levels, pair) == "Same name, words run together or apart"


@pytest.mark.parametrize(("holding", "operating"), [
    ("杭州巨奥物流控股有限公司", "杭州巨奥物流有限公司"),             # 控股: the holding
    ("武汉恩悌信息技术物业有限公司", "Wuhan Enti Information Technology Co., Ltd."),
    ("Warmer Autohaus Holding GmbH", "Warmer Autohaus Gesellschaft mbH"),
    ("Clements Holdings Holdings Ltd", "Clements Holdings Ltd"),  # the holding of a "Holdings"
    ("武汉泰天医药投资有限公司", "Wuhan Taitian Pharmaceutical Property Management Co., Ltd."),
    ("Kranz Bau Beteiligungs G.m.b.H.", "Krranz Bau GmbH"),       # a typo in the other name
    ("Schwarzwald Software Vrwaltungs GmbH", "Schwarzwald Software GmbH"),  # in the qualifier
])
def test_a_holding_in_any_script_beside_its_operating_company_is_a_related_company(
        holding, operating):
    import duckdb

    from pipelines.resolve.model import RELATED_COMPANY
    from pipelines.sql import quote_literal
    from pipelines.standardize.organizations import (
        org_core_sql,
        org_qualifiers_sql,
        split_legal_form,
    )

    def side(name: str, s: str) -> dict:
        norm, _ = split_legal_form(name)
        qualifiers, core = duckdb.sql(f"SELECT {org_qualifiers_sql(quote_literal(norm))}, "
                                      f"{org_core_sql(quote_literal(norm))}").fetchall()[0]
        return {f"org_name_norm_{s}": norm, f"org_name_tokens_{s}": sorted(norm.split()),
                f"org_name_qualifiers_{s}": qualifiers, f"org_name_core_{s}": core}

    pair = {**side(holding, "l"), **side(operating, "r")}
    assert _first_level(_levels("organization", "org_name"), pair) == RELATED_COMPANY, pair


def test_blocking_rules_are_judged_at_the_size_the_model_will_run_at():
    import duckdb

    from pipelines.resolve import training
    from pipelines.resolve.model import CandidateRule
    from pipelines.resolve.training import choose_blocking_rules, prefilter_count

    # 4,000 records: 2,000 customers with two records each, sharing an e-mail; 20 cities
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT i AS unique_id, 'm' || (i // 2) AS email, "
                "'c' || (i % 20) AS city FROM range(4000) r(i)")
    rules = [CandidateRule(("email",)), CandidateRule(("city",))]
    cfg = {"max_rule_comparisons_per_record": 150.0, "max_comparisons_per_record": 1000.0}
    original = training.BLOCKING_CANDIDATES
    training.BLOCKING_CANDIDATES = {"person": rules}
    try:
        chosen, rows = choose_blocking_rules(con, "t", "person", 4000, lambda f: True, cfg)
        assert [r.sql for r in chosen] == [r.sql for r in rules]  # city: 100 per record here
        chosen, rows = choose_blocking_rules(con, "t", "person", 4000, lambda f: True,
                                             {**cfg, "expected_records": 400_000})
    finally:
        training.BLOCKING_CANDIDATES = original
    assert [r.sql for r in chosen] == [rules[0].sql]
    email, city = rows
    assert email["per_record_at_expected"] == 0.5  # a customer's two records stay one pair
    # 20 cities of 20,000 records each at 400,000: C(20,000, 2) * 20 / 400,000 = 9,999.5
    assert abs(city["per_record_at_expected"] - 9999.5) < 1.0
    assert "at 400,000 records" in city["excluded"]
    assert prefilter_count(con, "t", rules[1]) == 20 * 200 * 199 / 2


def test_a_term_frequency_level_without_an_exact_level_is_scaled_by_the_value_frequency():
    """'lei qiu' / 'qiu lei': Splink scores log2(m) - log2(tf) on such a level; only u / P(same
    tokens) of the random pairs sharing the tokens are in another order, so m grows by
    P(same tokens) / u."""
    import duckdb

    from pipelines.resolve.training import scale_own_tf_levels

    con = duckdb.connect()
    # 10 records: tokens a (4), b (4), c (2): P(same) = (16 + 16 + 4) / 100 = 0.36
    con.execute("CREATE TABLE t AS SELECT unnest(['a','a','a','a','b','b','b','b','c','c']) "
                "AS name_tokens")
    level = {"label_for_charts": "Same name parts in another order or split",
             "tf_adjustment_column": "name_tokens", "disable_tf_exact_match_detection": True,
             "m_probability": 0.04, "u_probability": 0.036}
    plain = {"label_for_charts": "Exact match", "tf_adjustment_column": "name_tokens",
             "m_probability": 0.9, "u_probability": 0.3}
    model = {"comparisons": [{"comparison_levels": [plain, level]}]}
    scale_own_tf_levels(model, con, "t")
    assert level["m_probability"] == pytest.approx(0.04 * 0.36 / 0.036)
    assert plain["m_probability"] == 0.9  # an exact level is Splink's own scale: untouched


def test_a_name_too_common_in_its_city_gets_no_name_and_city_key(tmp_path):
    """Wang Wei in Shanghai (more records than block_keys.max_block_records) is not a block;
    Stefan Schneider in Nuernberg (three records) is."""
    import duckdb

    from pipelines.resolve.config import max_block_records
    from pipelines.resolve.features import create_comparison_table

    cap = max_block_records()
    rows = ([("wei", "wang", "shanghai")] * (cap + 1) + [("stefan", "schneider", "nuernberg")] * 3
            + [("wei", "wang", "beijing")] * 2)
    frame = pd.DataFrame([{"source_record_id": f"r{i}", "party_type": "person",
                           "given_name_norm": g, "given_name_canonical": g,
                           "family_name_norm": f, "city": c} for i, (g, f, c) in enumerate(rows)])
    con = duckdb.connect()
    con.register("canonical", frame)
    create_comparison_table(con, "canonical", "person", "t")
    keys = dict(con.execute("SELECT city, list_distinct(list(name_city_key)) FROM t "
                            "GROUP BY city").fetchall())
    assert keys == {"shanghai": [], "nuernberg": ["stefan|schneider|nuernberg"],
                    "beijing": ["wei|wang|beijing"]}
    # the swapped-order and sound keys are capped the same way
    assert con.execute("SELECT count(name_city_key_fg), count(name_sound_city_key) FROM t "
                       "WHERE city = 'shanghai'").fetchall() == [(0, 0)]


def test_a_capped_key_is_judged_linear_at_the_expected_size():
    import duckdb

    from pipelines.resolve.model import CandidateRule
    from pipelines.resolve.training import prefilter_count

    # blocks of 2 (a customer's own) and of 15 (shared by chance, under a cap of 20)
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT i AS unique_id, CASE WHEN i < 1000 THEN 'p' || (i // 2) "
                "ELSE 'c' || (i % 20) END AS k FROM range(1300) r(i)")
    rule = CandidateRule(("k",))
    uncapped = prefilter_count(con, "t", rule, 10.0, 10)
    capped = prefilter_count(con, "t", rule, 10.0, 10, cap=20)
    # ten times the people: the blocks of 15 grow to 150, past the cap, and are dropped
    assert capped == 500 * 1
    assert uncapped == 500 + 20 * (150 * 149 / 2) / 10


def test_em_passes_go_on_until_every_source_is_reached():
    """A source of web leads fills neither birth date nor mobile: passes blocking on those never
    see its pairs, so one that does (the e-mail) is added."""
    from pipelines.resolve.training import _source_reach

    profile = {"records": 1000, "by_source": {
        "servicing": {"records": 600, "fill_rate": {"birth_date": 0.97, "phone_mobile": 0.9,
                                                     "email": 0.8, "city": 1.0}},
        "sales": {"records": 400, "fill_rate": {"birth_date": 0.1, "phone_mobile": 0.18,
                                                 "email": 0.82, "city": 1.0}},
        "tiny": {"records": 10, "fill_rate": {}}}}
    sources, reaches = _source_reach(profile, {"em": {"source_min_share": 0.05}})
    assert sources == ["servicing", "sales"]  # 1% of the records is not a source to wait for
    assert reaches({"birth_date"}, "servicing") and not reaches({"birth_date"}, "sales")
    assert reaches({"email"}, "sales") and not reaches({"email", "phone_mobile"}, "sales")
