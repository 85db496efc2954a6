"""Property and example tests for every standardizer (names, phones, e-mails, addresses, IDs)."""

from __future__ import annotations

import re
import string

import phonenumbers
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pypinyin import Style, lazy_pinyin
from stdnum.cn import ric
from stdnum.de import idnr

from pipelines.ingest.mapping import IdPattern
from pipelines.standardize.addresses import (
    normalise_country,
    split_street_line,
    standardize_address,
)
from pipelines.standardize.contact import standardize_email, standardize_phone
from pipelines.standardize.names import (
    canonical_given_name,
    family_name_norm,
    nickname_table,
    parse_full_name,
    split_hanzi_name,
)
from pipelines.standardize.organizations import check_identifier, split_legal_form
from pipelines.standardize.text import fold

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HANZI = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5)
FOLDED = re.compile(r"^[a-z0-9]+(?: [a-z0-9]+)*$")


# --- folding ------------------------------------------------------------------------------------

@FAST
@given(st.text(max_size=40))
def test_fold_is_idempotent_lowercase_ascii(text: str) -> None:
    folded = fold(text)
    assert folded is None or FOLDED.match(folded)
    assert fold(folded) == folded


@FAST
@given(st.text(alphabet=HANZI, min_size=1, max_size=6))
def test_fold_gives_pinyin_of_hanzi(han: str) -> None:
    folded = fold(han)
    # never empty: characters pypinyin cannot read are transliterated, not dropped
    assert folded is not None and re.fullmatch(r"[a-z]+", folded)
    readings = lazy_pinyin(han, style=Style.NORMAL, errors="ignore")
    if len(readings) == len(han):  # every character has a pinyin reading: exactly that
        assert folded == "".join(readings)


def test_fold_keeps_a_syllable_for_hanzi_without_a_pinyin_reading() -> None:
    assert lazy_pinyin("瓼", style=Style.NORMAL, errors="ignore") == []
    assert fold("王瓼") == "wanglei"


@pytest.mark.parametrize("raw, folded", [
    ("Müller", "mueller"), ("MÜLLER", "mueller"), ("Weiß", "weiss"), ("José", "jose"),
    ("Hans-Peter", "hans peter"), ("  O'Brien ", "obrien"), ("Xi'an", "xian"), ("北京", "beijing"),
])
def test_fold_examples(raw: str, folded: str) -> None:
    assert fold(raw) == folded


# --- names --------------------------------------------------------------------------------------

LATIN_WORD = st.text(alphabet=string.ascii_lowercase, min_size=2, max_size=10).map(str.capitalize)


@FAST
@given(LATIN_WORD, LATIN_WORD)
def test_name_orders_agree(given_name: str, family: str) -> None:
    """"Given Family", "Family, Given" and "FAMILY Given" give the same parts."""
    assume(given_name.lower() not in {"jr", "sr", "ii", "iii", "iv", "dr", "mr", "ms", "mrs", "senior", "junior",
                                      "jun", "sen", "prof", "herr", "frau", "miss", "dipl", "ing"})
    assume(family.lower() not in {"jr", "sr", "ii", "iii", "iv", "jun", "sen", "senior", "junior",
                                  "dr", "mr", "ms", "mrs", "prof", "herr", "frau", "miss", "dipl",
                                  "ing"})
    expected = (given_name, family)
    for written in (f"{given_name} {family}", f"{family}, {given_name}"):
        parsed = parse_full_name(written)
        assert (parsed.given, parsed.family) == expected, written
    parsed = parse_full_name(f"{family.upper()} {given_name}")
    assert (parsed.given, fold(parsed.family)) == (given_name, fold(family))


@FAST
@given(st.sampled_from(["王", "李", "张", "欧阳", "司马", "诸葛"]), st.text(alphabet=HANZI, min_size=1, max_size=2))
def test_hanzi_name_split_uses_surname_list(family: str, given_name: str) -> None:
    assume(len(family) == 2 or family + given_name[:1] not in {"欧阳", "司马", "诸葛"})
    assert split_hanzi_name(family + given_name) == (family, given_name)
    parsed = parse_full_name(family + given_name)
    assert (parsed.family, parsed.given, parsed.script) == (family, given_name, "han")


def test_name_examples() -> None:
    def parts(name: str, country=None) -> tuple:
        parsed = parse_full_name(name, country)
        return parsed.given, parsed.family

    assert parts("WANG Wei") == ("Wei", "Wang")  # capitals mark the family name, not kept
    assert parts("XIE Jun") == ("Jun", "Xie")  # Jun is a given name here, not "junior"
    assert parse_full_name("Thomas Müller jun.").suffix == "JR"
    assert parts("Thomas MÜLLER-LÜDENSCHEIDT") == ("Thomas", "Müller-Lüdenscheidt")
    assert parts("VON DER HEIDE Hans") == ("Hans", "von der Heide")
    assert parts("Sean O'BRIEN") == ("Sean", "O'Brien")
    assert parts("Müller, Thomas") == ("Thomas", "Müller")
    assert parts("Wang Wei", country="CN") == ("Wei", "Wang")
    assert parts("Jianping Liu", country="CN") == ("Jianping", "Liu")  # given name: not a surname
    assert parts("Li Jianping", country="CN") == ("Jianping", "Li")
    # both words can be surnames: a common given name is the given name, in either order ...
    assert parts("Zou Li", country="CN") == parts("Li Zou", country="CN") == ("Li", "Zou")
    assert parts("Zhang Bo", country="CN") == parts("Bo Zhang", country="CN") == ("Bo", "Zhang")
    # ... and when that does not tell (both or neither), the more common surname is the family
    assert parts("Yang Wei", country="CN") == ("Wei", "Yang")  # 杨 is commoner than 魏
    assert parts("Xu Zhou", country="CN") == ("Xu", "Zhou")  # neither listed: 周 before 徐
    assert parts("Thomas Wang", country="DE") == ("Thomas", "Wang")
    assert parse_full_name("John Smith Jr.").suffix == "JR"
    assert parts("Hans von der Heide") == ("Hans", "von der Heide")
    assert family_name_norm("单") == "shan" and family_name_norm("王") == "wang"


def test_nickname_canonical_is_idempotent_and_deterministic() -> None:
    table = nickname_table()
    assert table["bill"] == "william" and table["tom"] == "thomas" and table["bob"] == "robert"
    for name, canonical in table.items():
        assert canonical_given_name(canonical) == canonical, name
    assert canonical_given_name("thomas") == "thomas"
    assert canonical_given_name("hans peter") == "hans peter"


# --- phones -------------------------------------------------------------------------------------

E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@FAST
@given(st.sampled_from(["151", "160", "170", "176"]), st.integers(10_000_000, 99_999_999),
       st.sampled_from(["+49 {p} {s}", "0{p}-{s}", "0049{p}{s}", "(0{p}) {s}", "+49 (0){p} {s}"]))
def test_german_mobiles_become_e164_in_any_format(prefix: str, subscriber: int, template: str) -> None:
    raw = template.format(p=prefix, s=subscriber)
    e164, kind, flag = standardize_phone(raw.replace("(0)", "") if "+49 (0)" in raw else raw, "DE")
    assert e164 == f"+49{prefix}{subscriber}" and kind == "mobile" and flag is None


@FAST
@given(st.text(alphabet="0123456789+ -()/", max_size=20), st.sampled_from(["DE", "CN", "US", None]))
def test_phone_output_is_e164_or_none(raw: str, region) -> None:
    e164, kind, flag = standardize_phone(raw, region)
    if e164 is not None:
        assert E164.match(e164) and kind in ("mobile", "landline")
        assert standardize_phone(e164, None)[0] == e164  # idempotent
        assert phonenumbers.is_possible_number(phonenumbers.parse(e164))
    else:
        assert kind is None


def test_phone_examples() -> None:
    assert standardize_phone("13812345678", "CN")[:2] == ("+8613812345678", "mobile")
    assert standardize_phone("030 12345678", "DE")[:2] == ("+493012345678", "landline")
    assert standardize_phone("hello", "DE") == (None, None, "phone_invalid")


# --- e-mails ------------------------------------------------------------------------------------

LOCAL = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,15}", fullmatch=True)
DOMAIN = st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9-]{1,8}[a-z0-9])?\.(de|cn|com|org)", fullmatch=True)


@FAST
@given(LOCAL, DOMAIN)
def test_email_fast_path_agrees_with_email_validator(local: str, domain: str) -> None:
    raw = f"{local}@{domain}"
    email, flag, phone = standardize_email(raw)
    try:
        expected = validate_email(raw, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        expected = None
    assert email == expected and phone is None
    assert (flag == "email_invalid") == (expected is None)
    if email:
        assert standardize_email(email)[0] == email  # idempotent


@FAST
@given(st.from_regex(r"\+?[0-9]{6,12}(?: [0-9]{1,4})?", fullmatch=True))
def test_phone_in_email_column_is_moved_not_lost(raw: str) -> None:
    assert standardize_email(raw) == (None, "email_was_phone", raw.strip())


# --- addresses ----------------------------------------------------------------------------------

@FAST
@given(st.sampled_from(["Hauptstraße", "Am Markt", "Karl-Marx-Allee", "Goethestr."]),
       st.integers(1, 300), st.sampled_from(["", "a", "b"]))
def test_street_lines_split_number(street: str, number: int, letter: str) -> None:
    parsed_street, house, _ = split_street_line(f"{street} {number}{letter}")
    assert parsed_street == street and house == f"{number}{letter}"


def test_address_forms_agree() -> None:
    one_line = standardize_address(one_line="Hauptstraße 12, 10115 Berlin, DE")
    parts = standardize_address(street_line="Hauptstr. 12", postcode="10115", city="Berlin",
                                country="Germany")
    assert one_line.canonical == parts.canonical
    assert (parts.street_display, parts.city_display) == ("Hauptstr.", "Berlin")
    assert (one_line.street, one_line.house_number, one_line.postcode, one_line.city,
            one_line.country) == ("hauptstrasse", "12", "10115", "berlin", "DE")
    cn = standardize_address(one_line="北京市朝阳区建国路88号, 100022")
    assert cn.canonical == standardize_address(street_line="朝阳区建国路88号", postcode="100022",
                                               city="北京").canonical
    assert (cn.street, cn.house_number, cn.postcode, cn.city, cn.country) == \
        ("jianguolu", "88", "100022", "beijing", "CN")
    assert normalise_country("Deutschland") == "DE" and normalise_country("中国") == "CN"
    assert normalise_country("Atlantis") is None


# --- identifiers and legal forms ------------------------------------------------------------------

@FAST
@given(st.integers(10**9, 10**10 - 1))
def test_identifier_checksum_validity_preserved(body: int) -> None:
    """A value is kept only when its checksum is valid, and then it stays valid."""
    for candidate in (str(body) + d for d in "0123456789"):
        value, kind, valid, _canonical = check_identifier(candidate, ("cn.ric", "de.idnr"))
        assert valid == idnr.is_valid(candidate)
        if valid:
            assert idnr.is_valid(value) and kind == "de_idnr"
        else:
            assert value is None and kind is None


def test_cn_resident_id_checked() -> None:
    assert check_identifier("11010519491231002X", ("cn.ric",)) == \
        ("11010519491231002X", "cn_ric", True, True)
    assert check_identifier("110105194912310021", ("cn.ric",)) == (None, None, False, True)
    assert ric.is_valid("11010519491231002X")


@pytest.mark.parametrize("name, norm, code", [
    ("Müller Bau GmbH", "mueller bau", "GMBH"),
    ("Müller Bau Gesellschaft mit beschränkter Haftung", "mueller bau", "GMBH"),
    ("Acme Trading Co., Ltd.", "acme trading", "CO_LTD"),
    ("Acme Trading Company Limited", "acme trading", "CO_LTD"),
    ("北京某某科技有限公司", "beijingmoumou technology", "CO_LTD"),
    ("Siemens AG", "siemens", "AG"),
    ("Siemens Aktiengesellschaft", "siemens", "AG"),
    ("Huber GmbH & Co. KG", "huber", "GMBH_CO_KG"),
    ("Plain Name", "plain name", None),
    # industry words of Chinese company names in English, as the company's English name has them
    ("西安豪佳电子有限公司", "xianhaojia electronics", "CO_LTD"),
    ("Xi'an Haojia Electronics Co., Ltd.", "xian haojia electronics", "CO_LTD"),
    ("南京联软实业服务有限公司", "nanjinglianruan industrial services", "CO_LTD"),
    ("Xian Haojia Dianzi", "xian haojia electronics", None),  # typed in pinyin
    ("深圳趣市食品", "shenzhenqushi food", None),
    # an industry word alone is the whole name, not translated away
    ("电子", "dianzi", None),
])
def test_legal_forms(name: str, norm: str, code) -> None:
    assert split_legal_form(name) == (norm, code)


@FAST
@given(st.text(alphabet=string.ascii_letters + " ", min_size=1, max_size=20),
       st.sampled_from(["GmbH", "AG", "Ltd.", "Inc.", "Co., Ltd."]))
def test_legal_form_stripping_is_stable(stem: str, form: str) -> None:
    assume(fold(stem) is not None)
    norm, code = split_legal_form(f"{stem} {form}")
    assert code is not None and norm is not None and FOLDED.match(norm)


# --- set-based paths agree with the per-value standardizers --------------------------------------

def _table(con, name: str, columns: dict) -> None:
    import pyarrow as pa

    con.register(f"{name}_arrow", pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()}))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_arrow")


STREET_LINES = st.one_of(
    st.builds(lambda s, n, x: f"{s} {n}{x}", st.sampled_from(
        ["Hauptstraße", "Am Markt", "Karl-Marx-Allee", "Goethestr.", "An der Alster", "Königsweg"]),
        st.integers(1, 400), st.sampled_from(["", "a", " b", "-3", "/1"])),
    st.builds(lambda n, s: f"{n} {s}", st.integers(1, 99), st.sampled_from(["Main Street", "High St"])),
    st.sampled_from(["朝阳区建国路88号", "北京市海淀区中关村大街1号", "Postfach", "Hauptstraße"]),
    st.text(max_size=12),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(STREET_LINES, st.sampled_from(["10115", "100022", " 80331 ", None]),
                          st.sampled_from(["Berlin", "北京", "München", None]),
                          st.sampled_from(["DE", "Germany", "中国", None, "Atlantis"])),
                min_size=1, max_size=20))
def test_bulk_addresses_agree_with_standardize_address(rows) -> None:
    import duckdb

    from pipelines.standardize.bulk import address_lookup_table

    with duckdb.connect() as con:
        _table(con, "src", {
            "a_key": [str(i) for i in range(len(rows))],
            "a_street_line": [r[0].strip() or None for r in rows], "a_one_line": [None] * len(rows),
            "a_street": [None] * len(rows), "a_house_number": [None] * len(rows),
            "a_postcode": [r[1].strip() if r[1] else None for r in rows],
            "a_city": [r[2] for r in rows], "a_country": [r[3] for r in rows]})
        address_lookup_table(con, "src", "DE")
        got = dict((k, v) for k, *v in con.execute(
            "SELECT a_key, street, house_number, postcode, city, country FROM address_lookup").fetchall())
    assert len(got) == len(rows)
    for i, (line, postcode, city, country) in enumerate(rows):
        a = standardize_address(street_line=line.strip() or None,
                                postcode=postcode.strip() if postcode else None, city=city,
                                country=country, default_country="DE")
        if " " in line.strip() and "  " not in line:  # SQL does not collapse inner whitespace
            assert got[str(i)] == [a.street, a.house_number, a.postcode, a.city, a.country], line


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.builds(lambda local, domain: f"{local}@{domain}", LOCAL, DOMAIN),
                          st.sampled_from(["a@b.test", "x@localhost", "Ünï@example.de", "a..b@c.de",
                                           "+49 170 1234567", "no-at-sign", "A@B.DE"])),
                min_size=1, max_size=20))
def test_bulk_emails_agree_with_standardize_email(emails) -> None:
    import duckdb

    from pipelines.standardize.bulk import email_lookup_table

    with duckdb.connect() as con:
        _table(con, "src", {"email_raw": emails})
        email_lookup_table(con, "src")
        got = {r[0]: tuple(r[1:]) for r in con.execute("SELECT * FROM email_lookup").fetchall()}
    assert got == {e: standardize_email(e) for e in emails}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(
    st.one_of(st.from_regex(r"\+(49|86|1|44|33|39)[0-9]{6,12}", fullmatch=True),
              st.from_regex(r"0(1[5-7][0-9]|30|89|10|21|755)[0-9]{5,9}", fullmatch=True),
              st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True),
              st.from_regex(r"00(49|86|44)[0-9]{6,11}", fullmatch=True)),
    st.sampled_from(["DE", "CN", "US", "IT", None]), st.sampled_from(["mobile", "landline", None])),
    min_size=1, max_size=40))
def test_bulk_phones_agree_with_phonenumbers(rows) -> None:
    import duckdb

    from pipelines.standardize.phones import phone_lookup_table

    with duckdb.connect() as con:
        _table(con, "phone_rows", {"v_clean": [r[0] for r in rows], "region": [r[1] for r in rows],
                                   "kind": [r[2] for r in rows]})
        phone_lookup_table(con)
        got = con.execute("SELECT v_clean, region, kind, e164, phone_kind FROM phone_lookup").fetchall()
    assert len(got) == len(set(rows))
    for v, region, kind, e164, phone_kind in got:
        assert (e164, phone_kind) == standardize_phone(v, region, kind)[:2], (v, region, kind)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["110105", "310101", "440305", "330100", "999999", "110000"]),
       st.dates(min_value=__import__("datetime").date(1900, 1, 1),
                max_value=__import__("datetime").date(2025, 12, 31)),
       st.integers(0, 999), st.sampled_from(list("0123456789X") + ["?"]))
def test_fast_cn_resident_id_check_equals_stdnum(region: str, birth, seq: int, check: str) -> None:
    body = f"{region}{birth:%Y%m%d}{seq:03d}"
    candidates = [body + check, body + ric.calc_check_digit(body + "0"), body.lower() + "x"]
    for candidate in candidates:
        value, kind, valid, _canonical = check_identifier(candidate, ("cn.ric",))
        assert valid == ric.is_valid(candidate), candidate
        assert value == (ric.compact(candidate) if valid else None)


def test_register_numbers_without_checksum_pass_by_format_only() -> None:
    patterns = (IdPattern("de_hr", r"HR[AB] [0-9]{1,6}(?: [A-Z]{1,2})?"),)
    modules = ("cn.uscc", "de.handelsregisternummer")
    assert check_identifier("hrb  230404", modules, patterns) == ("HRB 230404", "de_hr", True, True)
    assert check_identifier("91110000600037341L", modules, patterns)[1] == "cn_uscc"
    assert check_identifier("91110000600037341A", modules, patterns) == (None, None, False, True)
    assert check_identifier("HRC 1", modules, patterns) == (None, None, False, True)
