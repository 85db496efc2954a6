"""Generator profiles (schemas/profiles/<name>/): differently shaped populations, each ingested
through its own configuration folder with no code change."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import duckdb
import phonenumbers
import pyarrow.parquet as pq
import pytest
import stdnum.us.ein
import stdnum.us.ssn

from pipelines.generate import generate_exports, load_config
from pipelines.generate.config import PROFILES_DIR, profile_names
from pipelines.ingest import ingest, load_mappings
from pipelines.settings import EXPECTATIONS_DIR, SOURCES_DIR, RunPaths

CUSTOMERS = 1_500
SEED = 5
HAN = re.compile(r"[\u3400-\u9fff]")


def generated(tmp_path_factory, profile: str) -> Path:
    folder = tmp_path_factory.mktemp(profile)
    generate_exports(folder, CUSTOMERS, SEED, config=load_config(profile=profile))
    return folder


@pytest.fixture(scope="module")
def us(tmp_path_factory) -> Path:
    return generated(tmp_path_factory, "us")


@pytest.fixture(scope="module")
def no_id(tmp_path_factory) -> Path:
    return generated(tmp_path_factory, "no_national_id")


@pytest.fixture(scope="module")
def light(tmp_path_factory) -> Path:
    return generated(tmp_path_factory, "leads_light")


def landing_sql(folder: Path, sql: str) -> list[tuple]:
    """Run `sql` over views sales/underwriting/servicing/claims of a landing folder (all text)."""
    con = duckdb.connect()
    land = folder / "landing"
    claims = land / "claims.csv"
    us = b";" not in claims.read_bytes().split(b"\n", 1)[0]
    encoding = "cp1252" if us else "gb18030"
    con.read_csv(str(land / "sales_leads.csv"), all_varchar=True).to_view("sales")
    con.read_parquet(str(land / "underwriting_applications.parquet")).to_view("underwriting")
    con.read_json(str(land / "policy_servicing.jsonl"), format="newline_delimited").to_view("servicing")
    utf8 = folder / "claims_utf8.csv"
    utf8.write_text(claims.read_bytes().decode(encoding), encoding="utf-8")
    con.read_csv(str(utf8), all_varchar=True, sep="," if us else ";").to_view("claims")
    con.read_parquet(str(folder / "truth" / "ground_truth.parquet")).to_view("truth")
    return con.execute(sql).fetchall()


def ingest_with(folder: Path, tmp_path: Path, profile: str):
    """Ingest a profile's exports with its config folder's mappings and suites (project's otherwise)."""
    config = PROFILES_DIR / profile
    sources = config / "sources" if (config / "sources").is_dir() else SOURCES_DIR
    suites = config / "expectations" if (config / "expectations").is_dir() else EXPECTATIONS_DIR
    run = RunPaths.for_run("2026-11-22", base=tmp_path / "runs")
    summary = ingest(folder / "landing", run, load_mappings(sources, suites))
    return summary, run


def test_profiles_are_listed_and_unknown_ones_named():
    assert {"no_national_id", "us", "leads_light"} <= set(profile_names())
    with pytest.raises(ValueError, match="unknown generator profile 'nope'.*leads_light"):
        load_config(profile="nope")
    # a profile changes only what it says; the rest is the default
    default, us = load_config(), load_config(profile="us")
    assert us.population.western_country == "US" and us.mix.person_cn == 0
    assert us.noise == default.noise and us.hard_negatives == default.hard_negatives


def test_same_profile_and_seed_give_the_same_bytes(us, tmp_path):
    again = tmp_path / "again"
    generate_exports(again, CUSTOMERS, SEED, config=load_config(profile="us"))
    for path in sorted((us / "landing").iterdir()):
        assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(
            (again / "landing" / path.name).read_bytes()).digest(), path.name


def test_no_national_id_profile(no_id, tmp_path):
    entities = pq.read_table(no_id / "truth" / "entities.parquet").to_pandas()
    persons = entities[entities.party_type == "person"]
    assert persons.national_id.isna().all()
    no_mobile = persons.phone_mobile.isna()
    assert 0.4 < no_mobile.mean() < 0.6
    assert persons.loc[no_mobile, "phone_landline"].notna().all()  # landline only, never nothing
    assert landing_sql(no_id, "SELECT count(national_id) FROM underwriting")[0][0] == 0
    assert landing_sql(no_id, "SELECT count(claimant_id_no) FROM claims")[0][0] == 0
    assert landing_sql(no_id, """SELECT count(id_number) FROM servicing s JOIN truth t
                                 ON t.source_system = 'servicing' AND t.source_key = s.record_id
                                 WHERE t.party_type = 'person'""")[0][0] == 0
    summary, _ = ingest_with(no_id, tmp_path, "no_national_id")
    assert all(c.rows_read == c.rows_accepted + c.rows_quarantined for c in summary.sources.values())


def test_us_profile_exports(us):
    entities = pq.read_table(us / "truth" / "entities.parquet").to_pandas()
    persons = entities[entities.party_type == "person"]
    assert set(entities.country) == {"US"} and persons.name_native.isna().all()
    assert (persons.national_id_type == "us_ssn").all() and persons.national_id.is_unique
    assert all(stdnum.us.ssn.is_valid(v) and re.fullmatch(r"\d{3}-\d{2}-\d{4}", v) for v in persons.national_id)
    orgs = entities[entities.party_type == "organization"]
    assert all(stdnum.us.ein.is_valid(v) for v in orgs.registration_id)
    assert set(orgs.org_legal_form) == {"INC", "LLC", "CORP"}
    assert persons.name_suffix.isin(["Jr.", "Sr."]).sum() > 5
    for number in persons.phone_mobile.dropna().head(300).tolist() + entities.phone_landline.dropna().head(300).tolist():
        assert number.startswith("+1") and phonenumbers.is_valid_number(phonenumbers.parse(number)), number
    assert not any(HAN.search(p.read_bytes().decode("cp1252" if p.suffix == ".csv" else "utf-8", "replace"))
                   for p in (us / "landing").iterdir() if p.suffix != ".parquet")

    ssn = landing_sql(us, "SELECT national_id FROM underwriting WHERE national_id IS NOT NULL")
    dashed = sum(bool(re.fullmatch(r"\d{3}-\d{2}-\d{4}", v)) for (v,) in ssn)
    bare = sum(bool(re.fullmatch(r"\d{9}", v)) for (v,) in ssn)
    assert dashed + bare == len(ssn) and 0.15 < bare / len(ssn) < 0.45
    states = landing_sql(us, "SELECT DISTINCT state FROM sales UNION SELECT DISTINCT address.state FROM servicing")
    assert all(re.fullmatch(r"[A-Z]{2}", s) for (s,) in states)
    zips = [z for (z,) in landing_sql(us, "SELECT zip FROM sales WHERE zip IS NOT NULL")]
    assert all(re.fullmatch(r"\d{5}(?:-\d{4})?", z) for z in zips) and any("-" in z for z in zips)
    for sql in ["SELECT birth_date FROM servicing", "SELECT claimant_birthdate FROM claims"]:
        assert all(re.fullmatch(r"(0[1-9]|1[0-2])/(0[1-9]|[12]\d|3[01])/\d{4}", d)
                   for (d,) in landing_sql(us, sql) if d)
    assert landing_sql(us, "SELECT count(*) FILTER (WHERE currency <> 'USD') FROM servicing")[0][0] == 0


def test_us_profile_ingests_through_its_config_folder(us, tmp_path):
    summary, run = ingest_with(us, tmp_path, "us")
    assert all(c.rows_read == c.rows_accepted + c.rows_quarantined for c in summary.sources.values())
    assert all(c.rows_quarantined <= 0.01 * c.rows_read for c in summary.sources.values())
    con = duckdb.connect()
    rows = dict(con.execute("""
        SELECT source_system, count(national_id) FILTER (WHERE national_id_type = 'us_ssn')
        FROM read_parquet(?) GROUP BY 1""", [str(run.staged_dir / "source_records.parquet")]).fetchall())
    assert rows["underwriting"] > 0 and rows["servicing"] > 0 and rows["claims"] > 0
    countries, = con.execute("SELECT list(DISTINCT country) FROM read_parquet(?)",
                             [str(run.staged_dir / "source_records.parquet")]).fetchall()[0]
    assert countries == ["US"]
    dates = con.execute("SELECT count(*), count(birth_date) FROM read_parquet(?) WHERE source_system = 'servicing' "
                        "AND party_type = 'person'", [str(run.staged_dir / "source_records.parquet")]).fetchall()[0]
    assert dates[1] > 0.9 * dates[0]  # MM/DD/YYYY read as declared


def test_leads_light_profile(light, tmp_path):
    n, light_rows = landing_sql(light, """
        SELECT count(*), count(*) FILTER (WHERE mobile IS NULL AND phone IS NULL AND street_address IS NULL
                                          AND zip IS NULL AND country IS NULL AND birth_date IS NULL
                                          AND city IS NOT NULL)
        FROM sales""")[0]
    assert 0.7 < light_rows / n < 0.9
    summary_file = json.loads((light / "truth" / "generation_summary.json").read_text())
    assert summary_file["records_per_source"]["sales"] > 0.3 * summary_file["total_records"]
    summary, _ = ingest_with(light, tmp_path, "leads_light")
    assert all(c.rows_read == c.rows_accepted + c.rows_quarantined for c in summary.sources.values())
