"""The generator's fifth export (broker claim notifications, docs/source_exports.md#broker) through
`schemas/sources/optional/broker.yaml` and `expectations/broker.json` alone: every party record
the truth names comes out, and each shape of issue 13's table shows in the record, field or flag
the truth says it should."""

from __future__ import annotations

import importlib.util
import shutil

import duckdb
import pytest

from pipelines.generate import generate_exports, load_config
from pipelines.ingest import ingest, load_mappings
from pipelines.settings import EXPECTATIONS_DIR, SOURCES_DIR, RunPaths

CONFIG = load_config()
pytestmark = pytest.mark.skipif(importlib.util.find_spec("pipelines.generate.broker") is None,
                                reason="this generator does not write the broker export yet")


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    import dataclasses

    root = tmp_path_factory.mktemp("broker_export")
    config = dataclasses.replace(CONFIG, exports=dataclasses.replace(CONFIG.exports, broker=True))
    generate_exports(root / "gen", 1500, 3, config=config)
    sources = root / "sources"
    sources.mkdir()
    shutil.copy(SOURCES_DIR / "servicing.yaml", sources)
    shutil.copy(SOURCES_DIR / "optional" / "broker.yaml", sources)
    mappings = load_mappings(sources, EXPECTATIONS_DIR)
    summary = ingest(root / "gen" / "landing", RunPaths.for_run("2026-03-16", base=root / "runs"),
                     mappings)
    connection = duckdb.connect()
    connection.execute("CREATE TABLE r AS SELECT * FROM read_parquet(?)",
                       [str(summary.source_records_path)])
    connection.execute("CREATE TABLE t AS SELECT * FROM read_parquet(?)",
                       [str(root / "gen" / "truth" / "ground_truth.parquet")])
    connection.execute("""CREATE TABLE b AS SELECT r.*, t.entity_id, t.kinds FROM r
                          JOIN t USING (source_record_id) WHERE r.source_system = 'broker'""")
    yield connection, summary
    connection.close()


def one(con, sql: str):
    return con[0].execute(sql).fetchall()


def test_every_party_the_truth_names_is_a_record(con) -> None:
    counts = con[1].sources["broker"]
    assert counts.rows_read == counts.rows_accepted + counts.rows_quarantined
    assert counts.rows_staged == counts.rows_accepted < counts.records_staged
    missing = one(con, """SELECT count(*) FROM t WHERE source_system = 'broker'
                           AND source_record_id NOT IN (SELECT source_record_id FROM r)""")
    extra = one(con, """SELECT count(*) FROM r WHERE source_system = 'broker'
                         AND source_record_id NOT IN (SELECT source_record_id FROM t)""")
    assert missing == [(0,)] and extra == [(0,)]
    parts = dict(one(con, "SELECT coalesce(split_part(source_part, '[', 1), '-'), count(*) "
                          "FROM b GROUP BY 1"))
    assert parts["-"] == counts.rows_staged and parts["claimant"] > 0 and parts["co_insured"] > 0


def test_companies_typed_as_persons_are_organizations(con) -> None:
    rows = one(con, """SELECT party_type, list_contains(quality_flags, 'party_type_inferred')
                         FROM b WHERE list_contains(kinds, 'party_type_wrong')""")
    assert rows and all(r == ("organization", True) for r in rows)
    persons = one(con, """SELECT count(*) FROM b JOIN t USING (source_record_id)
                           WHERE t.party_type = 'person' AND b.party_type <> 'person'""")
    assert persons == [(0,)]


def test_whole_chinese_names_in_the_family_field_are_split(con) -> None:
    rows = one(con, """SELECT given_name, family_name FROM b
                        WHERE list_contains(kinds, 'full_name_in_family_field')
                          AND source_part IS DISTINCT FROM 'claimant'""")
    assert rows and all(given and family for given, family in rows)


def test_one_register_number_per_company_however_written(con) -> None:
    rows = one(con, """SELECT entity_id, count(DISTINCT registration_id) FROM b
                        WHERE party_type = 'organization' AND registration_id IS NOT NULL
                        GROUP BY 1 HAVING count(DISTINCT registration_id) > 1""")
    assert rows == []
    assert one(con, "SELECT count(*) FROM b WHERE list_contains(quality_flags, "
                    "'registration_id_invalid')") == [(0,)]


def test_countries_are_all_recognised_and_uk_phones_read_as_uk(con) -> None:
    assert one(con, "SELECT count(*) FROM b WHERE country IS NULL "
                    "OR list_contains(quality_flags, 'country_unknown')") == [(0,)]
    uk = one(con, "SELECT count(*), count(*) FILTER (WHERE phone_mobile LIKE '+44%' OR "
                  "phone_landline LIKE '+44%') FROM b WHERE country = 'GB' "
                  "AND (phone_mobile IS NOT NULL OR phone_landline IS NOT NULL)")
    assert uk[0][0] > 0 and uk[0][0] == uk[0][1]


def test_policy_spellings_share_the_servicing_policy_key(con) -> None:
    unmatched = one(con, """SELECT count(*) FROM (SELECT DISTINCT policy_key FROM b
                             WHERE policy_number NOT LIKE 'P-GB%' AND policy_number NOT LIKE 'PGB%'
                               AND policy_number NOT LIKE 'P GB%') k
                             WHERE policy_key NOT IN (SELECT policy_key FROM r
                                                       WHERE source_system = 'servicing')""")
    assert unmatched == [(0,)]


def test_email_in_phone_field_and_house_numbers(con) -> None:
    wrong = one(con, """SELECT count(*), count(email) FROM b
                         WHERE list_contains(quality_flags, 'phone_was_email')""")
    assert wrong[0][0] == wrong[0][1]
    assert one(con, "SELECT count(*) FROM b WHERE house_number LIKE '%号%'") == [(0,)]


def test_suffix_birth_name_consent_and_language(con) -> None:
    rows = one(con, """SELECT count(*) FILTER (WHERE family_name LIKE '% Jr.' OR family_name
                                              LIKE '% Sr.' OR family_name LIKE '% jun.'),
                              count(consent_email), count(consent_email_at), count(language),
                              count(*) FILTER (WHERE language NOT IN ('de', 'en', 'zh')),
                              count(marketing_consent)
                         FROM b WHERE party_type = 'person'""")
    suffix_left, consents, consent_times, languages, odd_languages, marketing = rows[0]
    assert suffix_left == 0 and consents > 0 and consent_times == consents
    assert languages > 0 and odd_languages == 0 and marketing >= consents
