"""Names across romanisations and party types by content: the reviewed Hong Kong surname table
against the cantonese-romanisation package, keys that make romanisations of one name equal,
given-name origin, and party-type inference measured on the generator's default sample."""

from __future__ import annotations

import duckdb
import pytest
import yaml
from cantoroman import Cantonese

from pipelines.generate import generate_exports
from pipelines.ingest import ingest
from pipelines.settings import SCHEMAS_DIR, RunPaths
from pipelines.standardize.names import (
    family_name_key,
    given_name_origin,
    parse_full_name,
    pinyin_forms_of_cantonese,
    split_full_in_family,
)

TABLE = yaml.safe_load((SCHEMAS_DIR / "reference" / "cantonese_surnames.yaml").read_text(
    encoding="utf-8"))["surnames"]


@pytest.mark.parametrize("romanisation", sorted(TABLE))
def test_every_listed_romanisation_is_one_the_library_gives(romanisation: str) -> None:
    library = Cantonese()
    for characters in TABLE[romanisation].values():
        for character in characters:
            assert romanisation in library.getRoman(character)[0], (romanisation, character)


@pytest.mark.parametrize("names", [
    ("Chan", "Chen", "陳", "陈"), ("Cheung", "Zhang", "張", "张"), ("Lee", "Li", "李"),
    ("Leung", "Liang", "梁"), ("Tse", "Xie", "謝", "谢"), ("Ng", "Wu", "吳", "吴"),
])
def test_romanisations_of_one_surname_share_a_key(names: tuple[str, ...]) -> None:
    keys = [set(family_name_key(n) or ()) for n in names]
    assert set.intersection(*keys), dict(zip(names, keys, strict=True))


@pytest.mark.parametrize(("cantonese", "pinyin"), [
    ("fong", "fang"), ("lan ying", "lanying"), ("chikeung", "zhiqiang"), ("kwai chi", "guizhi"),
    ("sau wah", "xiuhua"), ("hoi yin", "haiyan"), ("yim", "yan"),
])
def test_a_cantonese_given_name_reads_as_the_pinyin_of_its_characters(cantonese, pinyin) -> None:
    forms = pinyin_forms_of_cantonese(cantonese)
    assert forms is not None and pinyin in forms, forms


@pytest.mark.parametrize("given", ["kathryn", "thomas", "fang", "xiaoming"])
def test_names_that_are_not_cantonese_syllables_get_no_pinyin_forms(given) -> None:
    # "fang" and "xiaoming" are pinyin only, not Hong Kong romanisation ("Fong", "Siu Ming")
    assert pinyin_forms_of_cantonese(given) is None
    assert "ming" not in (pinyin_forms_of_cantonese("fong") or ())


@pytest.mark.parametrize(("family_field", "given", "family"), [
    ("Lau Yim", "Yim", "Lau"), ("Suen Fong", "Fong", "Suen"), ("Chan Tai Man", "Tai Man", "Chan"),
    ("Wang Minhong", "Minhong", "Wang"),
])
def test_a_whole_cantonese_name_in_the_family_field_is_split(family_field, given, family) -> None:
    split = split_full_in_family(family_field, "chinese", "CN")
    assert split is not None and (split.given, split.family) == (given, family)
    assert split_full_in_family("Thomas Müller", "chinese", "DE") is None


def test_surnames_not_in_the_reviewed_table_are_read_from_the_library() -> None:
    assert family_name_key("Suen") == ("sun",)  # 孫, absent from cantonese_surnames.yaml
    assert "suen" not in TABLE


def test_ambiguous_romanisation_keeps_both_readings_and_others_stay_apart() -> None:
    assert set(family_name_key("Wong") or ()) == {"huang", "wang"}
    assert set(family_name_key("王") or ()) & set(family_name_key("Wong") or ())
    assert set(family_name_key("黄") or ()) & set(family_name_key("Wong") or ())
    assert not set(family_name_key("王") or ()) & set(family_name_key("黄") or ())
    assert family_name_key("Müller") == ("mueller",) and family_name_key("Chan") == ("chen",)


@pytest.mark.parametrize("given, origin", [
    ("敏红", "han"), ("Minhong", "pinyin"), ("Xiao Ming", "pinyin"), ("Wei", "pinyin"),
    ("Thomas", "western"), ("Anna", "western"), ("Cindy", "western"), ("", None), (None, None),
])
def test_given_name_origin(given, origin) -> None:
    assert given_name_origin(given) == origin


@pytest.mark.parametrize("full, order, given, family", [
    ("MUELLER THOMAS", "auto", "Thomas", "Mueller"),
    ("THOMAS MUELLER", "auto", "Thomas", "Mueller"),
    ("WANG MINHONG", "auto", "Minhong", "Wang"),
    ("Thomas Müller", "auto", "Thomas", "Müller"),
    ("Minhong Wang", "family_first", "Wang", "Minhong"),
    ("Wang Minhong", "family_first", "Minhong", "Wang"),
    ("Wang Minhong", "given_first", "Wang", "Minhong"),
    ("Wang Xiao Jun", "auto", "Wang Xiao", "Jun"),  # Jun without its dot is a given name
])
def test_declared_and_detected_name_order(full, order, given, family) -> None:
    parsed = parse_full_name(full, order=order)
    assert (parsed.given, parsed.family) == (given, family)


def test_party_type_inference_keeps_persons_persons_on_the_default_sample(tmp_path) -> None:
    """Legal forms and company words in person names: no real person becomes an organization."""
    generate_exports(tmp_path / "gen", 500, 11)
    summary = ingest(tmp_path / "gen" / "landing", RunPaths.for_run("2026-03-16", base=tmp_path))
    with duckdb.connect() as con:
        rows = con.execute("""
            SELECT t.party_type, r.party_type, list_contains(r.quality_flags, 'party_type_inferred'),
                   count(*)
              FROM read_parquet(?) r JOIN read_parquet(?) t USING (source_record_id)
             GROUP BY ALL""", [str(summary.source_records_path),
                               str(tmp_path / "gen" / "truth" / "ground_truth.parquet")]).fetchall()
    persons = sum(n for truth, _, _, n in rows if truth == "person")
    false_positives = sum(n for truth, party, _, n in rows if truth == "person" and party != "person")
    assert persons > 1000 and false_positives == 0
