"""The synthetic exports: determinism, formats, ground-truth coverage, noise rates, hard negatives."""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import stdnum.cn.ric
import stdnum.cn.uscc
import stdnum.de.idnr
import yaml
from nicknames import NickNamer

from pipelines.generate import (
    DEFAULT_EXPORT_DATE,
    EXPORT_FILES,
    generate_exports,
    load_config,
    records_to_customers,
)

CUSTOMERS = 5_000
SEED = 11


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("gen")
    generate_exports(folder, CUSTOMERS, SEED)
    return folder


@pytest.fixture(scope="module")
def summary(out) -> dict:
    return json.loads((out / "truth" / "generation_summary.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def truth(out) -> pa.Table:
    return pq.read_table(out / "truth" / "ground_truth.parquet")


@pytest.fixture(scope="module")
def entities(out):
    return pq.read_table(out / "truth" / "entities.parquet").to_pandas()


def read_sales(out: Path) -> pa.Table:
    text_types = {name: pa.string() for name in pacsv.read_csv(
        out / "landing" / EXPORT_FILES["sales"]).column_names}
    return pacsv.read_csv(out / "landing" / EXPORT_FILES["sales"],
                          parse_options=pacsv.ParseOptions(newlines_in_values=True),
                          convert_options=pacsv.ConvertOptions(column_types=text_types,
                                                                       strings_can_be_null=True))


def read_claims(out: Path) -> pa.Table:
    data = (out / "landing" / EXPORT_FILES["claims"]).read_bytes().decode("gb18030").encode("utf-8")
    names = data.split(b"\n", 1)[0].decode().replace('"', "").split(";")
    return pacsv.read_csv(io.BytesIO(data), parse_options=pacsv.ParseOptions(delimiter=";"),
                          convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                                                 strings_can_be_null=True))


def read_servicing(out: Path) -> list[dict]:
    lines = (out / "landing" / EXPORT_FILES["servicing"]).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def file_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "generation_summary.json"}


# --- determinism ----------------------------------------------------------------------------------

def test_same_seed_gives_identical_bytes_and_another_seed_does_not(out, summary, tmp_path):
    generate_exports(tmp_path / "again", CUSTOMERS, SEED)
    generate_exports(tmp_path / "other", CUSTOMERS, SEED + 1)
    first, again, other = file_hashes(out), file_hashes(tmp_path / "again"), file_hashes(tmp_path / "other")
    assert len(first) == 6 and first == again
    assert all(first[name] != other[name] for name in first)
    # the summary differs only in how long it took
    repeat = json.loads((tmp_path / "again" / "truth" / "generation_summary.json").read_text())

    def without_timings(d: dict) -> dict:
        return {k: v for k, v in d.items() if k not in ("elapsed_seconds", "stage_seconds")}

    assert without_timings(summary) == without_timings(repeat)


def test_landing_holds_only_the_four_exports(out, summary):
    assert sorted(p.name for p in (out / "landing").iterdir()) == sorted(EXPORT_FILES.values())
    assert summary["seed"] == SEED and summary["export_date"] == DEFAULT_EXPORT_DATE.isoformat()
    assert summary["elapsed_seconds"] > 0 and set(summary["records_per_source"]) == set(EXPORT_FILES)


# --- formats -------------------------------------------------------------------------------------

def test_each_export_reads_back_in_its_declared_format(out, summary):
    claims_bytes = (out / "landing" / "claims.csv").read_bytes()
    text = claims_bytes.decode("gb18030")
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text), "claims should contain hanzi"
    with pytest.raises(UnicodeDecodeError):
        claims_bytes.decode("utf-8")
    claims = read_claims(out)
    assert claims.column_names[:3] == ["claim_no", "policy_no", "claimant_name"]
    assert all("," in a and "." not in a for a in claims["claim_amount"].to_pylist())

    sales = read_sales(out)
    assert (out / "landing" / "sales_leads.csv").read_bytes().decode("utf-8")
    assert any("\n" in (note or "") for note in sales["notes"].to_pylist()), "multi-line notes quoted"
    births = [b for b in sales["birth_date"].to_pylist() if b]
    dmy = [b for b in births if len(b) == 10 and b[2] == "." and b[5] == "."]
    iso = [b for b in births if len(b) == 10 and b[4] == "-" and b[7] == "-"]
    # DD.MM.YYYY as declared, except the few malformed_date rows written ISO (checked below)
    assert births and len(dmy) + len(iso) == len(births) and len(iso) < 0.02 * len(births)

    servicing = read_servicing(out)
    first = servicing[0]
    assert list(first)[:3] == ["record_id", "policy_number", "role"]
    assert set(first["address"]) == {"street", "postcode", "city", "country"}
    assert all(isinstance(r["phone_numbers"], list) for r in servicing)
    assert {r["role"] for r in servicing} == {"PH", "INS", "BEN"}

    schema = pq.read_schema(out / "landing" / "underwriting_applications.parquet")
    assert schema.field("dob").type == pa.date32()
    assert schema.field("submitted_at").type == pa.timestamp("us")
    assert schema.field("annual_premium").type == pa.float64()
    assert schema.field("application_no").type == pa.string()
    for source, table in [("sales", sales), ("claims", claims)]:
        assert table.num_rows == summary["records_per_source"][source]
    assert len(servicing) == summary["records_per_source"]["servicing"]


def test_every_exported_record_is_in_the_ground_truth_exactly_once(out, truth):
    exported = {
        "sales": read_sales(out)["lead_id"].to_pylist(),
        "underwriting": pq.read_table(out / "landing" / "underwriting_applications.parquet")[
            "application_no"].to_pylist(),
        "servicing": [r["record_id"] for r in read_servicing(out)],
        "claims": read_claims(out)["claim_no"].to_pylist(),
    }
    ids = truth["source_record_id"].to_pylist()
    assert len(ids) == len(set(ids))
    for source, keys in exported.items():
        assert len(keys) == len(set(keys)), f"{source} keys not unique"
        in_truth = truth.filter(pa.compute.equal(truth["source_system"], source))["source_key"].to_pylist()
        assert sorted(keys) == sorted(in_truth), source
    assert truth.num_rows == sum(len(k) for k in exported.values())


# --- valid identifiers and phone numbers -----------------------------------------------------------

def test_identifiers_pass_stdnum_and_phones_have_the_right_type(entities):
    persons = entities[entities.party_type == "person"]
    for kind, module in [("cn_ric", stdnum.cn.ric), ("de_idnr", stdnum.de.idnr)]:
        ids = persons.loc[persons.national_id_type == kind, "national_id"]
        assert len(ids) > 500 and all(module.is_valid(v) for v in ids), kind
    assert persons.national_id.is_unique
    uscc = entities.loc[entities.registration_type == "cn_uscc", "registration_id"]
    assert len(uscc) > 100 and all(stdnum.cn.uscc.is_valid(v) for v in uscc)
    mobile = entities.phone_mobile.dropna().sample(400, random_state=0)
    landline = entities.phone_landline.dropna().sample(400, random_state=0)
    mobile_type, fixed_type = phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE
    assert all(phonenumbers.number_type(phonenumbers.parse(p)) == mobile_type for p in mobile)
    assert all(phonenumbers.number_type(phonenumbers.parse(p)) == fixed_type for p in landline)
    assert {p[:3] for p in mobile} == {"+49", "+86"} and {p[:3] for p in landline} == {"+49", "+86"}


def test_written_phones_parse_to_the_true_numbers(out, truth, entities):
    sales = read_sales(out).to_pandas()
    gt = truth.to_pandas()
    merged = sales.merge(gt[gt.source_system == "sales"], left_on="lead_id", right_on="source_key")
    merged = merged.merge(entities, on="entity_id", suffixes=("", "_true"))
    clean = merged[merged.noise.map(len) == 0]
    checked = 0
    for column, true_column in [("mobile", "phone_mobile"), ("phone", "phone_landline")]:
        rows = clean.dropna(subset=[column])
        for _, row in rows.head(300).iterrows():
            region = "CN" if row.country_true == "CN" else "DE"
            parsed = phonenumbers.parse(row[column], region)
            assert phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == row[true_column]
            checked += 1
    assert checked > 400
    assert clean.mobile.str.startswith("+").any() and (~clean.mobile.dropna().str.startswith("+")).any()


def test_typos_change_one_letter_but_never_the_first():
    from pipelines.generate.noise import typos

    names = ["Müller", "Schmidt", "Anna", "Wei", "Xiuying", "Hauptstraße 12", "Bob", "Otto"]
    rng = np.random.default_rng(0)
    for _ in range(50):
        for before, after in zip(names, typos(names, rng), strict=True):
            assert after != before and after[0] == before[0]
            assert abs(len(after) - len(before)) <= 1


# --- noise ------------------------------------------------------------------------------------------

def test_noise_rates_are_realised_within_tolerance(truth, summary, entities):
    """Realised = records labelled in the truth / eligible records (from the summary).

    Tolerance: +-30% relative, at least +-0.01 absolute. Draws are Bernoulli per eligible record;
    with 5,000 customers every kind has several hundred eligible records, so the binomial standard
    error is at most ~12% of the rate, while a broken rate (off by 2x, or never applied) fails.
    """
    labels = Counter(k for kinds in truth["noise"].to_pylist() for k in kinds)
    for kind, figures in summary["noise"].items():
        asked, eligible = figures["asked"], figures["eligible"]
        assert eligible >= 200, kind
        if figures["unit"] == "records":
            realised = labels[kind] / eligible
            assert labels[kind] == figures["applied"], kind
        else:
            flag = entities.moved if kind == "moved" else entities.previous_family_name.notna()
            realised = flag.sum() / eligible
            assert labels[kind] == figures["records_affected"] > 0
        assert abs(realised - asked) <= max(0.3 * asked, 0.01), (kind, asked, realised)


def test_hard_negative_rates_are_realised(summary):
    for kind, figures in summary["hard_negatives"].items():
        assert figures["groups"] >= 3, kind
        assert abs(figures["realised"] - figures["asked"]) <= max(0.3 * figures["asked"], 0.01), kind


def test_noise_changes_what_it_says(out, truth, entities):
    gt = truth.to_pandas()
    sales = read_sales(out).to_pandas().merge(gt[gt.source_system == "sales"],
                                              left_on="lead_id", right_on="source_key")
    written_iso = sales.birth_date.str.match(r"^\d{4}-\d{2}-\d{2}$", na=False)
    assert (written_iso == sales.noise.map(lambda k: "malformed_date" in k)).all()
    ent = entities.set_index("entity_id")
    uw = pq.read_table(out / "landing" / "underwriting_applications.parquet").to_pandas()
    uw = uw.merge(gt[gt.source_system == "underwriting"], left_on="application_no", right_on="source_key")
    bad = uw[uw.noise.map(lambda k: "invalid_id_checksum" in k)]
    good = uw[uw.noise.map(lambda k: "invalid_id_checksum" not in k)]
    validators = {11: stdnum.de.idnr.is_valid, 18: stdnum.cn.ric.is_valid}
    assert len(bad) > 5
    for ids, expected in [(bad.national_id, False), (good.national_id, True)]:
        for value in ids.dropna():
            assert validators[len(value)](value) is expected, value
    assert all(stdnum.cn.uscc.is_valid(v) for v in good.company_reg_no.dropna() if len(v) == 18)

    wrong = uw[uw.noise.map(lambda k: "wrong_column" in k)]
    assert len(wrong) > 0 and not wrong.email.dropna().str.contains("@").any()

    sales = read_sales(out).to_pandas().merge(gt[gt.source_system == "sales"], left_on="lead_id",
                                              right_on="source_key")
    nick = sales[sales.noise.map(lambda k: "nickname" in k and "swapped_name_order" not in k
                                 and "typo" not in k)]
    namer = NickNamer()
    assert len(nick) > 20
    for _, row in nick.iterrows():
        true_given = ent.loc[row.entity_id, "given_name_latin"]
        assert row.first_name != true_given
        assert row.first_name.lower() in namer.nicknames_of(true_given.lower())

    swapped = sales[sales.noise.map(lambda k: list(k) == ["swapped_day_month"])]
    for _, row in swapped.iterrows():
        true = ent.loc[row.entity_id, "birth_date"]
        assert row.birth_date == f"{true.month:02d}.{true.day:02d}.{true.year}"

    moved = sales[sales.noise.map(lambda k: list(k) == ["moved"])]
    assert len(moved) > 0
    for _, row in moved.iterrows():
        street = f"{ent.loc[row.entity_id, 'street']} {ent.loc[row.entity_id, 'house_number']}"
        assert row.street_address != street or row.zip != ent.loc[row.entity_id, "postcode"]
        region = ent.loc[row.entity_id, "country"]
        for number in [row.mobile, row.phone]:  # the old numbers are real numbers too
            if isinstance(number, str):
                assert phonenumbers.is_valid_number(phonenumbers.parse(number, region)), number


# --- hard negatives ---------------------------------------------------------------------------------

def test_hard_negative_groups_are_distinct_entities_sharing_what_they_should(entities):
    groups = entities.dropna(subset=["hard_case_group"]).groupby("hard_case_group")
    seen = Counter()
    for _, g in groups:
        kind = g.hard_case.iloc[0]
        seen[kind] += 1
        assert len(g) >= 2 and g.entity_id.is_unique and (g.hard_case == kind).all()

        def same(col: str, g=g) -> bool:
            return g[col].nunique(dropna=False) == 1
        if kind in ("household", "twin", "father_son"):
            assert same("street") and same("postcode") and same("phone_landline"), kind
            assert g.phone_landline.notna().all()
        if kind == "twin":
            assert same("family_name") and same("birth_date") and g.given_name.is_unique
        if kind == "father_son":
            assert same("given_name") and same("family_name") and g.birth_date.is_unique
            assert (g.sex == "M").all()
        if kind == "common_name":
            assert same("given_name") and same("family_name") and same("city")
            assert g.birth_date.nunique() > 1 and g.national_id.is_unique
        if kind == "company_owner":
            assert sorted(g.party_type) == ["organization", "person"]
            assert same("street") and same("phone_landline") and g.phone_landline.notna().all()
        if kind == "related_company":  # one address, related names, each its own register number
            assert (g.party_type == "organization").all() and same("street") and same("postcode")
            assert g.org_name.is_unique and g.registration_id.is_unique
            assert len({tuple(name.split()[:2]) for name in g.org_name}) == 1, list(g.org_name)
        elif kind != "company_owner":
            assert g.national_id.is_unique
    assert set(seen) == {"household", "twin", "father_son", "common_name", "company_owner", "related_company"}
    households = entities[entities.hard_case == "household"]
    shared_mail = households.dropna(subset=["email"]).groupby("hard_case_group").email.nunique()
    assert (shared_mail == 1).any(), "some households share one e-mail address"
    assert not entities[entities.hard_case.isna()].email.dropna().duplicated().any()


def test_mix_locales_and_organizations(entities, out):
    share = entities.groupby(["party_type", "locale"]).size() / len(entities)
    assert abs(share["person"]["de"] - 0.45) < 0.01 and abs(share["person"]["cn"] - 0.40) < 0.01
    forms = set(entities.org_legal_form.dropna())
    assert {"GMBH", "AG", "LTD", "CO_LTD"} <= forms
    assert entities.org_name_native.dropna().str.endswith("有限公司").all()
    uw = pq.read_table(out / "landing" / "underwriting_applications.parquet").to_pandas()
    names = " ".join(uw.company_name.dropna())
    assert "Gesellschaft mit beschränkter Haftung" in names and "GmbH" in names and "有限公司" in names
    servicing = read_servicing(out)
    assert any("," in r["name"] for r in servicing if r["party_kind"] == "natural")  # Müller, Thomas
    assert any(r["name"] and "\u4e00" <= r["name"][0] <= "\u9fff" for r in servicing)  # 王伟


def test_leads_renewals_and_dates(out, truth, entities):
    gt = truth.to_pandas()
    systems = gt.groupby("entity_id").source_system.agg(set)
    sales_only = (systems == {"sales"}).mean()
    assert 0.15 < sales_only < 0.3
    per_entity_sales = gt[gt.source_system == "sales"].groupby("entity_id").size()
    assert (per_entity_sales == 2).mean() > 0.03  # the same person entered through two channels
    assert 2.2 < len(gt) / len(entities) < 2.9
    export = DEFAULT_EXPORT_DATE
    servicing = read_servicing(out)
    ends = [date.fromisoformat(r["end_date"]) for r in servicing if r["status"] == "active"]
    renewals = [d for d in ends if export < d <= export + timedelta(days=31)]
    assert all(d > export for d in ends) and 0.03 < len(renewals) / len(ends) < 0.2
    claims = read_claims(out).to_pandas()
    assert (claims.loss_date <= claims.reported_date).all()
    assert (claims.reported_date < export.isoformat()).all()
    assert max(r["last_updated"] for r in servicing) < export.isoformat()


def test_records_option_sizes_customers_and_config_overrides_rates(tmp_path):
    customers = records_to_customers(20_000)
    assert 7_000 < customers < 9_000
    config_file = tmp_path / "rates.yaml"
    config_file.write_text(yaml.safe_dump({"noise": {"typo": 0.2}}))
    config = load_config(config_file)
    assert config.noise.typo == 0.2 and config.noise.nickname == load_config().noise.nickname
    result = generate_exports(tmp_path / "out", 1_500, 3, config=config)
    assert abs(result.noise["typo"]["realised"] - 0.2) < 0.03
    assert abs(result.total_records / 1_500 - 2.54) < 0.25
    with pytest.raises(ValueError):
        bad = tmp_path / "bad.yaml"
        bad.write_text(yaml.safe_dump({"noise": {"tpyo": 0.1}}))
        load_config(bad)
    np.testing.assert_equal(result.to_dict()["seed"], 3)


def test_cli_writes_exports_and_prints_a_summary_table(tmp_path):
    from typer.testing import CliRunner

    from pipelines.generate.commands import app

    result = CliRunner().invoke(app, ["--out", str(tmp_path), "--records", "1500", "--seed", "5",
                                      "--export-date", "2025-06-30"])
    assert result.exit_code == 0, result.output
    assert "policy_servicing.jsonl" in result.output and "total" in result.output
    summary = json.loads((tmp_path / "truth" / "generation_summary.json").read_text())
    assert summary["export_date"] == "2025-06-30" and summary["policies"]["renewals_in_window"] > 0
    assert abs(summary["total_records"] - 1500) < 300
    both = CliRunner().invoke(app, ["--out", str(tmp_path), "--records", "10", "--customers", "5"])
    assert both.exit_code != 0


# --- kinds (issue 12): what was done to each record, for evaluation by kind -------------------------

def test_kinds_extend_noise_with_entity_level_kinds(truth, entities):
    gt = truth.to_pandas()
    assert all(set(n) <= set(k) for n, k in zip(gt.noise, gt.kinds, strict=True))
    has = gt.kinds.map(set)
    assert ((gt.party_type == "organization") == has.map(lambda k: "organization" in k)).all()
    for kind in ("company_owner", "related_company"):
        assert ((gt.hard_case == kind) == has.map(lambda k, kind=kind: kind in k)).all()
    seen = set().union(*has)
    assert {"english_given_name", "cantonese_romanisation", "party_type_wrong",
            "full_name_in_family_field", "related_company", "moved", "surname_change", "nickname"} <= seen


def test_kind_rates_are_realised(summary):
    for kind, figures in summary["kinds"].items():
        assert figures["eligible"] >= 100, kind
        assert abs(figures["realised"] - figures["asked"]) <= max(0.3 * figures["asked"], 0.01), (kind, figures)


def test_kinds_change_what_they_say(out, truth, entities):
    gt = truth.to_pandas()
    ent = entities.set_index("entity_id")
    sales = read_sales(out).to_pandas().merge(gt[gt.source_system == "sales"], left_on="lead_id",
                                              right_on="source_key")

    def having(frame, kind):
        return frame[frame.kinds.map(lambda k: kind in k)]

    def only(frame, kind):  # records where no other name change hides this one
        others = {"typo", "swapped_name_order", "full_name_in_family_field", "party_type_wrong"} - {kind}
        return frame[frame.kinds.map(lambda k: kind in k and not others & set(k))]

    english = only(sales, "english_given_name")
    assert len(english) > 5
    for row in english.itertuples():
        assert ent.loc[row.entity_id, "locale"] == "cn"
        assert row.first_name == ent.loc[row.entity_id, "english_given_name"]
    canto = only(sales, "cantonese_romanisation")
    assert len(canto) > 5
    for row in canto.itertuples():
        cantonese = ent.loc[row.entity_id, "cantonese_name"]
        assert cantonese.split(" ", 1)[0] in (row.first_name or "") + " " + (row.last_name or "")
    wrong = having(sales, "party_type_wrong")
    assert len(wrong) > 3 and (wrong.lead_type == "person").all() and wrong.company_name.isna().all()
    assert (wrong.party_type == "organization").all() and wrong.last_name.notna().all()
    whole = having(sales, "full_name_in_family_field")
    assert len(whole) > 5 and whole.first_name.isna().all() and whole.last_name.str.contains(" ").all()
    uw = pq.read_table(out / "landing" / "underwriting_applications.parquet").to_pandas().merge(
        gt[gt.source_system == "underwriting"], left_on="application_no", right_on="source_key")
    whole = having(uw, "full_name_in_family_field")
    assert len(whole) > 5 and whole.given_names.isna().all()
    assert whole.surname.map(lambda s: ent_name_forms(s)).all()
    servicing = pd_servicing(out).merge(gt[gt.source_system == "servicing"], left_on="record_id",
                                        right_on="source_key")
    wrong = having(servicing, "party_type_wrong")
    assert len(wrong) > 3 and (wrong.party_kind == "natural").all()
    # in every related-company group one member's register number is not written down
    related = uw[uw.hard_case == "related_company"]
    hidden = related.groupby("entity_id").company_reg_no.apply(lambda s: s.isna().all())
    assert hidden.any() and not hidden.all()


def ent_name_forms(surname: str) -> bool:
    """A whole Chinese name: hanzi without a space, or pinyin family + given."""
    return (" " not in surname and all("\u4e00" <= ch <= "\u9fff" for ch in surname)) or " " in surname


def pd_servicing(out: Path):
    import pandas as pd

    return pd.DataFrame(read_servicing(out))


# --- later nights (--night N) -----------------------------------------------------------------------

def test_night_two_is_night_one_plus_one_day_of_changes(out, tmp_path):
    night2 = tmp_path / "night2"
    summary = generate_exports(night2, CUSTOMERS, SEED, night=2)
    assert summary.export_date == (DEFAULT_EXPORT_DATE + timedelta(days=1)).isoformat() and summary.night == 2
    for name in ("underwriting_applications.parquet", "claims.csv"):
        assert (out / "landing" / name).read_bytes() == (night2 / "landing" / name).read_bytes(), name
    first, second = read_sales(out).to_pylist(), read_sales(night2).to_pylist()
    assert second[: len(first)] == first
    new = second[len(first):]
    assert new and all(r["lead_id"].startswith("L92") and r["created_at"].startswith("2026-11-22") for r in new)
    truth = pq.read_table(night2 / "truth" / "ground_truth.parquet").to_pandas()
    ent = pq.read_table(night2 / "truth" / "entities.parquet").to_pandas().set_index("entity_id")
    changed = truth[truth.kinds.map(lambda k: "mobile_changed" in k)]
    assert len(changed) > 20 and (changed.source_system == "servicing").all()
    before = {r["record_id"]: r for r in read_servicing(out)}
    for row in read_servicing(night2):
        old = before[row["record_id"]]
        if row["record_id"] not in set(changed.source_key):
            assert row == old
            continue
        entity = ent.loc[truth.set_index("source_key").loc[row["record_id"], "entity_id"]]
        assert row["last_updated"].startswith("2026-11-22")
        region = row["address"]["country"]
        written = [phonenumbers.format_number(phonenumbers.parse(p, region), phonenumbers.PhoneNumberFormat.E164)
                   for p in row["phone_numbers"] + [row["email_address"] or ""] if p and "@" not in p]
        assert entity.phone_mobile in written or "missing_field" in truth.set_index("source_key").loc[
            row["record_id"], "kinds"], (row, entity.phone_mobile)
        assert entity.previous_phone_mobile and entity.previous_phone_mobile != entity.phone_mobile
    assert ent.previous_phone_mobile.notna().sum() == changed.entity_id.nunique()


# --- the fifth export (exports.broker): one line, several parties (issue 13) ------------------------

def test_broker_export_exercises_the_mapping_rows(tmp_path):
    import dataclasses
    import re

    from pipelines.generate.config import Exports

    config = dataclasses.replace(load_config(), exports=Exports(broker=True, underwriting_birth_name=True))
    summary = generate_exports(tmp_path, CUSTOMERS, SEED, config=config)
    rows = [json.loads(line) for line in (tmp_path / "landing" / "broker_claims.jsonl").read_text(
        encoding="utf-8").splitlines()]
    insured = [r["insured"] for r in rows]
    claimants = [r["claimant"] for r in rows if r["claimant"]]
    co = [p for r in rows for p in r["co_insured"]]
    parties = insured + claimants + co
    truth = pq.read_table(tmp_path / "truth" / "ground_truth.parquet").to_pandas()
    broker = truth[truth.source_system == "broker"]
    # one record per party object, keyed as `records:` parts name them: <row>/<part>/<ref>
    expected = [r["notification_id"] for r in rows]
    expected += [f"{r['notification_id']}/claimant/{r['claimant']['ref']}" for r in rows if r["claimant"]]
    expected += [f"{r['notification_id']}/co_insured/{p['ref']}" for r in rows for p in r["co_insured"]]
    assert sorted(broker.source_key) == sorted(expected)
    assert summary.records_per_source["broker"] == len(parties) and len(claimants) > 50 and len(co) > 50
    assert (broker.source_record_id == "broker:" + broker.source_key).all()
    regs = [p["register_number"] for p in insured if p["register_number"]]
    for pattern in [r"HR[AB] \d+", r"HR[AB]\d+", r"HR [AB] \d+", r"\D+ HR[AB] \d+", r"0\d{7}", r"[1-9]\d{6,7}"]:
        assert any(re.fullmatch(pattern, r) for r in regs), pattern
    assert any(p["name"].split()[0].isupper() and len(p["name"].split()[0]) > 1 for p in claimants)
    assert any(p["name_suffix"] for p in parties) and any(re.search(r" (Jr|Sr)\.$", p.get("last_name") or "")
                                                         for p in parties)
    assert any(p["type"] == "P" and p["first_name"] is None and "\u4e00" <= (p["last_name"] or " ")[0] <= "\u9fff"
               for p in insured + co)
    assert any(p["company_name"] and p["legal_form"] for p in insured)
    assert {"Großbritannien", "GB", "Deutschland", "DE"} <= {p["country"] for p in parties}
    assert any("@" in (p["phone"] or "") for p in parties) and any("号" in (p["house_number"] or "") for p in parties)
    assert any(p["birth_name"] for p in parties)
    assert all(p["consent_email_at"].endswith("Z") for p in parties if p["consent_email"] is not None)
    assert {p["preferred_channel"] for p in parties} <= {"email", "phone", "post", "sms"}
    assert {p["language"] for p in parties} <= {"de", "en", "zh"}
    wrong = broker[broker.kinds.map(lambda k: "party_type_wrong" in k)]
    by_ref = {r["notification_id"]: r["insured"] for r in rows}
    assert all(by_ref[k]["type"] == "P" and by_ref[k]["company_name"] is None for k in wrong.source_key)
    # the broker's policy numbers, spelled three ways, are the servicing system's numbers
    servicing = {r["policy_number"] for r in read_servicing(tmp_path)}

    def canonical(number: str) -> str:
        prefix, country, serial = re.fullmatch(r"P[- ]?([A-Z]{2})[- ]?(\d+)", number).group(0, 1, 2)
        return f"P-{country}-{int(serial):07d}"

    spelled = [r["policy_ref"] for r in rows if "GB" not in r["policy_ref"]]
    assert len({re.sub(r"\d", "9", s) for s in spelled}) >= 3
    assert all(canonical(s) in servicing for s in spelled)
    uw = pq.read_table(tmp_path / "landing" / "underwriting_applications.parquet")
    assert "birth_name" in uw.column_names and uw["birth_name"].null_count < uw.num_rows
