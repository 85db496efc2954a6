"""Postal addresses: split into street, house number, postcode, city, country (ISO alpha-2).

Forms seen in the exports: a street line "Hauptstraße 12" beside postcode/city columns, a
nested object, one line "Hauptstraße 12, 10115 Berlin, DE", and Chinese "北京市朝阳区建国路88号,
100022" (city before district and road, house number ending in 号). Called per DISTINCT address.
Patterns run on RE2 (linear time, as in the DuckDB fast path), so no address line, however long,
can make a run slow. Countries come as codes or names in any language CLDR knows (Babel).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache

import re2
import yaml

from pipelines.settings import SCHEMAS_DIR
from pipelines.standardize.text import fold, has_han, nfkc


def _re2(pattern: str):
    options = re2.Options()
    options.log_errors = False
    return re2.compile(pattern, options)


GERMAN_STREET = _re2(
    r"^(?P<street>.*?[^\d\s,][^,]*?)[\s,]+(?P<number>\d+\s*[a-zA-Z]?(?:\s*[-/]\s*\d+\s*[a-zA-Z]?)?)$")
LEADING_NUMBER_STREET = _re2(r"^(?P<number>\d+[a-zA-Z]?(?:-\d+[a-zA-Z]?)?)\s+(?P<street>\D.*)$")
CHINESE_STREET = _re2(r"^(?P<street>.+?)(?P<number>\d+(?:-\d+)?)\s*号(?P<rest>.*)$")
CHINESE_CITY = _re2(r"^(?P<province>[^省]{2,7}省)?(?P<city>[^市区县]{1,7}市)")
CHINESE_DISTRICT = _re2(r"^[^市区县路街道]{1,6}[区县]")
POSTCODE_CITY = _re2(r"^(?P<postcode>(?:[A-Z]{1,2}-)?\d{4,6})\s+(?P<city>\D.*)$")
CITY_POSTCODE = _re2(r"^(?P<city>\D+?)\s+(?P<postcode>\d{4,6})$")
POSTCODE_ONLY = _re2(r"^\d{4,6}$")
STREET_ABBREVIATION = _re2(r"([a-z])str\b|\bstr\b")
WHITESPACE = _re2(r"\s+")
ONE_LINE_PARTS = _re2(r"[,，]")
# Names CLDR gives every country in these languages (and their codes) are recognised.
COUNTRY_NAME_LOCALES = ("en", "de", "fr", "es", "it", "nl", "pt", "pl", "cs", "da", "sv", "nb",
                        "fi", "tr", "ru", "zh", "zh_Hant", "ja", "ko", "ar")


@dataclass(frozen=True)
class Address:
    street: str | None = None
    house_number: str | None = None
    postcode: str | None = None
    city: str | None = None
    country: str | None = None
    street_display: str | None = None
    house_number_display: str | None = None
    city_display: str | None = None
    country_unknown: bool = False        # a country was written but is not one we know

    @property
    def canonical(self) -> tuple:
        return self.street, self.house_number, self.postcode, self.city, self.country


@cache
def country_names() -> dict[str, str]:
    """Country name or code, in comparison form -> ISO alpha-2: CLDR (Babel) names and codes
    (alpha-2, alpha-3, numeric) plus the colloquial names in schemas/reference/countries.yaml."""
    from babel import Locale
    from babel.core import get_global

    lookup: dict[str, str] = {}

    def add(name: str, code: str) -> None:
        for key in _country_keys(name):
            lookup.setdefault(key, code)

    english = Locale.parse("en").territories
    codes = {str(c) for c in english if len(str(c)) == 2 and str(c).isalpha()
             and c not in ("EU", "EZ", "UN", "QO", "XA", "XB", "ZZ")}
    for code in codes:
        add(code, code)
    for locale in COUNTRY_NAME_LOCALES:
        for code, name in Locale.parse(locale).territories.items():
            if str(code) in codes:
                add(str(name), str(code))
    for alias, targets in get_global("territory_aliases").items():
        if len(targets) == 1 and targets[0] in codes and (len(alias) == 3):
            add(alias, targets[0])
    ref = yaml.safe_load((SCHEMAS_DIR / "reference" / "countries.yaml").read_text(encoding="utf-8"))
    for code, names in (ref.get("aliases") or {}).items():
        for name in names:
            for key in _country_keys(name):
                lookup[key] = code
    return lookup


def _country_keys(name: str) -> set[str]:
    """Comparison forms of a country name: folded (Österreich -> oesterreich) and with the
    accents only dropped (osterreich), both without spaces or punctuation."""
    folded = (fold(name) or "").replace(" ", "")
    from anyascii import anyascii

    plain = "".join(c for c in anyascii(nfkc(name) or "").lower() if c.isalnum())
    casefolded = "".join(c for c in (nfkc(name) or "").casefold() if c.isalnum())
    return {k for k in (folded, plain, casefolded) if k}


# A country column holds a handful of distinct values, and each lookup folds and transliterates
# the text three ways: remembered, the million addresses of a night resolve their countries once.
@lru_cache(maxsize=4096)
def normalise_country(text: str | None) -> str | None:
    """ISO 3166-1 alpha-2 for a code or a country name in any of the CLDR languages; None if unknown."""
    text = nfkc(text)
    if text is None:
        return None
    table = country_names()
    for key in _country_keys(text):
        if key in table:
            return table[key]
    return None


def split_street_line(line: str | None) -> tuple[str | None, str | None, str | None]:
    """(street, house number, city found in the line) of "Hauptstraße 12" / "朝阳区建国路88号"."""
    line = nfkc(line)
    if line is None:
        return None, None, None
    if has_han(line):
        compact = line.replace(" ", "")
        city = None
        found = CHINESE_CITY.match(compact)
        if found:
            city, compact = found.group("city"), compact[found.end():]
        # The district (朝阳区) is left out of the street: sources name it or not.
        compact = CHINESE_DISTRICT.sub("", compact, count=1) or compact
        m = CHINESE_STREET.match(compact)
        if m:
            return m.group("street") + m.group("rest"), m.group("number"), city
        return compact or None, None, city
    m = GERMAN_STREET.match(line)
    if m:
        return m.group("street").strip(" ,"), WHITESPACE.sub("", m.group("number")), None
    m = LEADING_NUMBER_STREET.match(line)
    if m:
        return m.group("street").strip(" ,"), m.group("number"), None
    return line, None, None


def parse_one_line(line: str | None) -> Address:
    """Address written in one field, parts separated by commas."""
    line = nfkc(line)
    if line is None:
        return Address()
    parts = [p.strip() for p in ONE_LINE_PARTS.split(line) if p.strip()]
    country = postcode = city = None
    if len(parts) > 1 and normalise_country(parts[-1]):
        country = normalise_country(parts.pop())
    rest = []
    for part in parts[1:]:
        m = POSTCODE_CITY.match(part) or CITY_POSTCODE.match(part)
        if m and postcode is None:
            postcode, city = m.group("postcode"), m.group("city")
        elif POSTCODE_ONLY.match(part) and postcode is None:
            postcode = part
        else:
            rest.append(part)
    if city is None and rest:
        city = rest.pop(0)
    street, number, line_city = split_street_line(parts[0]) if parts else (None, None, None)
    return Address(street, number, postcode, city or line_city, country)


def standardize_address(street_line: str | None = None, one_line: str | None = None,
                        street: str | None = None, house_number: str | None = None,
                        postcode: str | None = None, city: str | None = None,
                        country: str | None = None, default_country: str | None = None) -> Address:
    """Canonical address from whichever parts a source gives; street and city folded."""
    parsed = parse_one_line(one_line) if one_line else Address()
    line_city = None
    if street_line and not street:
        street, number, line_city = split_street_line(street_line)
        house_number = house_number or number
    street = nfkc(street) or parsed.street
    house_number = nfkc(house_number) or parsed.house_number
    city = nfkc(city) or parsed.city or line_city
    postcode = nfkc(postcode) or parsed.postcode
    written_country = nfkc(country)
    resolved_country = normalise_country(written_country) or parsed.country
    if resolved_country is None and any(has_han(p) for p in (street, city, one_line) if p):
        resolved_country = "CN"
    return Address(
        street=fold_street(street),
        house_number=house_number,
        postcode=postcode.replace(" ", "").upper() if postcode else None,
        city=fold_city(city),
        country=resolved_country or default_country,
        street_display=street, house_number_display=house_number, city_display=city,
        country_unknown=written_country is not None and normalise_country(written_country) is None,
    )


def fold_street(street: str | None) -> str | None:
    folded = fold(street)
    if not folded:
        return None
    return STREET_ABBREVIATION.sub(lambda m: (m.group(1) or "") + "strasse", folded)


@lru_cache(maxsize=65536)  # cities repeat across addresses: each is folded once
def fold_city(city: str | None) -> str | None:
    city = nfkc(city)
    if city and has_han(city) and len(city) > 2 and city.endswith("市"):
        city = city[:-1]  # 北京市 and 北京 are the same city
    return fold(city)
